"""Operators' commands: `ion token`, `ion outbox drain`, `ion routing disagreements`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ion.entrypoints.cli.common import check_store, cli_app
from ion.errors import ValidationFailed


def cmd_token(args: argparse.Namespace) -> int:
    from ion.bootstrap import build_app

    app = build_app()
    role = f", role {app.settings.operator_role}" if args.operator else ""
    print(
        f"# dev token for user '{args.user}'{role}, valid {app.settings.dev_token_ttl_s}s",
        file=sys.stderr,
    )
    print(app.dev_token(args.user, operator=args.operator))
    return 0


def cmd_outbox_drain(args: argparse.Namespace) -> int:
    app = cli_app()
    check_store(app)
    result = app.events.drain(limit=args.limit)
    for failure in result.failures:
        # Id, type and the transport's error only: payloads stay out of terminals and logs.
        print(
            f"failed: {failure.entry_id} ({failure.event_type}, attempt {failure.attempts}):"
            f" {failure.error}",
            file=sys.stderr,
        )
    print(
        json.dumps(
            {"published": result.published, "failed": result.failed, "remaining": result.remaining}
        )
    )
    return 0 if result.failed == 0 else 1


def cmd_routing_disagreements(args: argparse.Namespace) -> int:
    """Judge-vs-local disagreements, newest first, one JSON object per line (they hold the
    learners' message text: operators only, see docs/routing.md)."""
    from ion.bootstrap import build_worker

    if args.limit < 1:
        raise ValidationFailed("--limit must be at least 1")
    worker = build_worker()
    rows = worker.records.list_disagreements(limit=args.limit, now=worker.clock.now())
    for row in rows:
        print(json.dumps(row.model_dump(mode="json"), ensure_ascii=False), flush=True)
    return 0


def add_token_parser(sub: Any) -> None:
    token = sub.add_parser("token", help="print a dev JWT for a user")
    token.add_argument("--user", required=True)
    token.add_argument(
        "--operator",
        action="store_true",
        help="with the operator role (ION_OPERATOR_CLAIM = ION_OPERATOR_ROLE)",
    )
    token.set_defaults(func=cmd_token)


def add_outbox_parser(sub: Any) -> None:
    outbox = sub.add_parser("outbox", help="the durable event outbox")
    outbox_sub = outbox.add_subparsers(dest="action", required=True)
    drain = outbox_sub.add_parser("drain", help="publish pending outbox events now")
    drain.add_argument("--limit", type=int, default=500)
    drain.add_argument("--backend", choices=["embedded", "gcp"])
    drain.set_defaults(func=cmd_outbox_drain)


def add_routing_parser(sub: Any) -> None:
    routing_cmd = sub.add_parser("routing", help="routing review data")
    routing_sub = routing_cmd.add_subparsers(dest="action", required=True)
    disagreements = routing_sub.add_parser(
        "disagreements",
        help="print the routing judge's disagreements with the local router as JSON lines",
    )
    disagreements.add_argument("--limit", type=int, default=50, help="newest N (default 50)")
    disagreements.add_argument("--backend", choices=["embedded", "gcp"])
    disagreements.set_defaults(func=cmd_routing_disagreements)
