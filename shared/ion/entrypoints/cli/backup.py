"""`ion backup ...`: export, restore, verify (portable logical backups), run, list."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def cmd_export(args: argparse.Namespace) -> int:
    from ion.bootstrap import backup_key, build_worker

    worker = build_worker()
    manifest = worker.backend.export(Path(args.directory), backup_key(worker.settings))
    _print(
        {"directory": str(args.directory), "backend": manifest.backend, "counts": manifest.counts}
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from ion.bootstrap import backup_key, build_worker

    worker = build_worker()
    directory = Path(args.directory)
    manifest = worker.backend.restore(directory, backup_key(worker.settings), args.force)
    _print({"restored": str(directory), "backend": manifest.backend, "counts": manifest.counts})
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ion.adapters.backup_format import verify_backup
    from ion.bootstrap import backup_key
    from ion.settings import Settings

    manifest = verify_backup(Path(args.directory), key=backup_key(Settings()))
    _print({"ok": True, "backend": manifest.backend, "counts": manifest.counts})
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ion.bootstrap import build_backup_runner, build_worker

    result = build_backup_runner(build_worker()).run(None)
    _print(result.as_json())
    started = result.started
    return 1 if started is not None and started.status == "failed" else 0


def cmd_list(args: argparse.Namespace) -> int:
    from ion.bootstrap import build_worker

    records = build_worker().records.list_backups(limit=args.limit)
    _print([r.model_dump(mode="json") for r in records])
    return 0


def add_backup_parser(sub: Any) -> None:
    backup = sub.add_parser("backup", help="backups: export, restore, verify, run, list")
    actions = backup.add_subparsers(dest="action", required=True)

    def backend(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--backend", choices=["embedded", "gcp"])

    export = actions.add_parser("export", help="write every table/collection as NDJSON to DIR")
    export.add_argument(
        "directory", help="a new directory (created 0700), or an empty one; never a non-empty one"
    )
    backend(export)
    export.set_defaults(func=cmd_export)

    restore = actions.add_parser("restore", help="restore a logical backup into an empty store")
    restore.add_argument("directory")
    restore.add_argument(
        "--force", action="store_true", help="replace the contents of a non-empty store"
    )
    backend(restore)
    restore.set_defaults(func=cmd_restore)

    verify = actions.add_parser(
        "verify", help="check a logical backup's signature and files against its manifest"
    )
    verify.add_argument("directory")
    backend(verify)
    verify.set_defaults(func=cmd_verify)

    run = actions.add_parser("run", help="one scheduled backup run now (what the function does)")
    backend(run)
    run.set_defaults(func=cmd_run)

    listing = actions.add_parser("list", help="the backup catalog, newest first")
    listing.add_argument("--limit", type=int, default=20)
    backend(listing)
    listing.set_defaults(func=cmd_list)
