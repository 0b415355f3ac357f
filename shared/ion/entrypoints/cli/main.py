"""The `ion` command: serve, chat, route, token, eval, train, outbox, routing, backup.

Each command group lives in its own module (serve, chat, learning, operations, backup);
this one parses the command line, sets up logging and maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ion.bootstrap import setup_logging
from ion.entrypoints.cli.backup import add_backup_parser
from ion.entrypoints.cli.chat import add_chat_parser
from ion.entrypoints.cli.learning import add_eval_parser, add_route_parser, add_train_parser
from ion.entrypoints.cli.operations import add_outbox_parser, add_routing_parser, add_token_parser
from ion.entrypoints.cli.serve import add_serve_parser
from ion.errors import IonError


def _configure(args: argparse.Namespace) -> None:
    # Flags win over the environment; settings are read from ION_* when the app is built.
    if getattr(args, "backend", None):
        os.environ["ION_BACKEND"] = args.backend
    if getattr(args, "data_dir", None):
        os.environ["ION_DATA_DIR"] = str(args.data_dir)
    level = os.environ.get("ION_LOG_LEVEL", "WARNING" if args.command != "serve" else "INFO")
    terse = args.command != "serve" and level.upper() != "DEBUG"
    # The same redacting setup as the functions: under `ion serve` werkzeug writes an
    # access line per request, with the query string (tokens) and the decoded path.
    setup_logging(level, "terminal" if terse else "text", root_level=level)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ion", description="ION Mentoring command line")
    parser.add_argument("--data-dir", type=Path, help="overrides ION_DATA_DIR")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_chat_parser(sub)
    add_route_parser(sub)
    add_token_parser(sub)
    add_eval_parser(sub)
    add_train_parser(sub)
    add_outbox_parser(sub)
    add_routing_parser(sub)
    add_backup_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure(args)
    try:
        code: int = args.func(args)
    except IonError as exc:
        print(f"ion: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"ion: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
