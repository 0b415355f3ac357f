"""The `ion` command: serve, chat, route, token, eval, train, outbox, routing, backup."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ion.errors import IonError, ValidationFailed

if TYPE_CHECKING:
    from ion.domain.routing import Router


def _configure(args: argparse.Namespace) -> None:
    # Flags win over the environment; settings are read from ION_* when the app is built.
    if getattr(args, "backend", None):
        os.environ["ION_BACKEND"] = args.backend
    if getattr(args, "data_dir", None):
        os.environ["ION_DATA_DIR"] = str(args.data_dir)
    logging.basicConfig(
        level=os.environ.get("ION_LOG_LEVEL", "WARNING" if args.command != "serve" else "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from ion.bootstrap import build_app, set_app
    from ion.http.local import create_local_app

    app = build_app()
    set_app(app)
    if app.settings.backend == "gcp" and os.environ.get("PUBSUB_EMULATOR_HOST"):
        from ion.adapters.pubsub import PubSubTransport

        topic = PubSubTransport(app.settings.gcp_project or "", app.settings.events_topic)
        if topic.ensure_topic():
            print(f"created topic {topic.topic_path} on the Pub/Sub emulator", file=sys.stderr)
    token = app.dev_token(args.user)
    url = f"http://{args.host}:{args.port}"
    print(
        f"ION Mentoring serving on {url}  (backend={app.settings.backend}, "
        f"llm={app.settings.llm_provider}, data={app.settings.data_dir})"
    )
    print(f"Dev token for user '{args.user}' (valid {app.settings.dev_token_ttl_s}s):")
    print(token)
    print(
        f"Try: curl -s {url}/v1/chat -H 'Authorization: Bearer {token}' "
        "-H 'Content-Type: application/json' -d '{\"message\": \"hello\"}'",
        flush=True,
    )
    run_simple(args.host, args.port, create_local_app(), threaded=True, use_reloader=False)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from ion.bootstrap import build_app

    app = build_app()
    conversation_id: str | None = args.conversation

    def one(text: str) -> None:
        nonlocal conversation_id
        turn = app.chat.prepare(args.user, text, conversation_id)
        conversation_id = turn.conversation.id
        key = turn.resonance_key
        print(
            f"[{turn.persona.name} ({turn.persona.name_ko}) · {key.as_string()} · "
            f"confidence {turn.routing.confidence:.2f}]",
            flush=True,
        )
        for chunk in app.chat.stream(turn):
            if chunk.final is not None:
                source = "cached answer" if turn.cached is not None else "tokens"
                print(f"\n[model {chunk.final.model} · {chunk.final.usage.output_tokens} {source}]")
            else:
                print(chunk.text, end="", flush=True)

    if args.message:
        one(" ".join(args.message))
        print(f"conversation: {conversation_id}")
        return 0
    print("ION Mentoring chat. Type a message; /new starts a new conversation, /quit exits.")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if text in {"/quit", "/exit"}:
            return 0
        if text == "/new":
            conversation_id = None
            continue
        if not text:
            continue
        try:
            one(text)
        except IonError as exc:
            print(f"error ({exc.code}): {exc.message}", file=sys.stderr)


def _local_router() -> Router:
    """Exactly the router chat uses (lexicons + semantic head), minus feedback and judge."""
    from ion.bootstrap import build_router, load_embedder
    from ion.domain.personas import load_catalog

    embedder, _ = load_embedder()
    router, status = build_router(load_catalog(), embedder)
    if not status.ok:
        print(f"ion: warning: lexicon router only ({status.detail})", file=sys.stderr)
    return router


def cmd_route(args: argparse.Namespace) -> int:
    if not args.text.strip():
        raise ValidationFailed("the text to route must not be empty")
    router = _local_router()
    result = router.route(args.text, history=args.history or ())
    decision = result.decision
    print(
        json.dumps(
            {
                "persona": decision.primary,
                "secondary": decision.secondary,
                "confidence": decision.confidence,
                "scores": decision.scores,
                "resonance_key": result.analysis.key.model_dump(mode="json"),
                "reason": decision.reason,
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from ion.bootstrap import build_app

    app = build_app()
    print(
        f"# dev token for user '{args.user}', valid {app.settings.dev_token_ttl_s}s",
        file=sys.stderr,
    )
    print(app.dev_token(args.user))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ion.domain.evaluation import evaluate, load_labelled_set

    items = load_labelled_set(Path(args.file))
    report = evaluate(_local_router(), items)
    print(report.render(show_errors=args.errors))
    return 0


DEFAULT_ROUTING_CORPUS = "data/routing/train/*.jsonl"


def cmd_train_routing(args: argparse.Namespace) -> int:
    from ion.adapters.embeddings import UseEmbedder
    from ion.domain.personas import load_catalog
    from ion.domain.semantic import artifact_path
    from ion.domain.training import CorpusError, train_routing

    paths = _corpus_paths(args.corpus or [DEFAULT_ROUTING_CORPUS])
    try:
        report = train_routing(paths, UseEmbedder(), load_catalog())
    except CorpusError as exc:
        raise ValidationFailed(str(exc)) from exc
    for line in report.lines:
        print(line)
    output = Path(args.output) if args.output else artifact_path("routing")
    report.artifact.write(output)
    print(f"wrote {output}")
    return 0


DEFAULT_SAFETY_CORPUS = "data/safety/crisis_*.jsonl"


def cmd_train_safety(args: argparse.Namespace) -> int:
    from ion.adapters.embeddings import UseEmbedder
    from ion.domain.safety import load_rules
    from ion.domain.semantic import artifact_path
    from ion.domain.training import CorpusError, train_safety

    paths = _corpus_paths(args.corpus or [DEFAULT_SAFETY_CORPUS])
    try:
        report = train_safety(paths, UseEmbedder(), load_rules())
    except CorpusError as exc:
        raise ValidationFailed(str(exc)) from exc
    for line in report.lines:
        print(line)
    output = Path(args.output) if args.output else artifact_path("safety")
    report.artifact.write(output)
    print(f"wrote {output}")
    return 0


def cmd_eval_safety(args: argparse.Namespace) -> int:
    from ion.bootstrap import build_detector, load_embedder
    from ion.domain.evaluation import evaluate_safety, load_safety_set

    items = load_safety_set(Path(args.file))
    embedder, _ = load_embedder()
    detector, status = build_detector(embedder)
    if not status.ok:
        print(f"ion: warning: crisis rules only ({status.detail})", file=sys.stderr)
    print(evaluate_safety(detector, items).render(show_errors=args.errors))
    return 0


def _corpus_paths(patterns: Sequence[str]) -> list[Path]:
    import glob

    paths: list[Path] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            raise ValidationFailed(f"no corpus files match {pattern!r} (run from the repo root)")
        paths.extend(Path(p) for p in found)
    return paths


def cmd_outbox_drain(args: argparse.Namespace) -> int:
    from ion.adapters.outbox import ReliablePublisher
    from ion.bootstrap import build_app

    app = build_app()
    if not isinstance(app.events, ReliablePublisher):
        print("ion: this configuration has no outbox", file=sys.stderr)
        return 2
    result = app.events.drain(limit=args.limit)
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
    rows = worker.learning.list_disagreements(limit=args.limit, now=worker.clock.now())
    for row in rows:
        print(json.dumps(row.model_dump(mode="json"), ensure_ascii=False), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ion", description="ION Mentoring command line")
    parser.add_argument("--data-dir", type=Path, help="overrides ION_DATA_DIR")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run chat + persona_route on one local port")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--backend", choices=["embedded", "gcp"])
    serve.add_argument("--user", default="dev", help="user id of the printed dev token")
    serve.set_defaults(func=cmd_serve)

    chat = sub.add_parser("chat", help="chat from the terminal (one message or interactive)")
    chat.add_argument("message", nargs="*", help="the message; omit for an interactive session")
    chat.add_argument("--user", default="local")
    chat.add_argument("--conversation", help="continue this conversation id")
    chat.add_argument("--backend", choices=["embedded", "gcp"])
    chat.set_defaults(func=cmd_chat)

    route = sub.add_parser("route", help="print the routing decision for a message as JSON")
    route.add_argument("text")
    route.add_argument("--history", action="append", help="an earlier message (repeatable)")
    route.set_defaults(func=cmd_route)

    token = sub.add_parser("token", help="print a dev JWT for a user")
    token.add_argument("--user", required=True)
    token.set_defaults(func=cmd_token)

    evaluate = sub.add_parser("eval", help="evaluate a component on a labelled set")
    eval_sub = evaluate.add_subparsers(dest="target", required=True)
    routing = eval_sub.add_parser("routing", help="routing accuracy on a JSONL set")
    routing.add_argument("file")
    routing.add_argument("--errors", action="store_true", help="list every misrouted item")
    routing.set_defaults(func=cmd_eval)

    safety = eval_sub.add_parser("safety", help="crisis recall and false positives on a JSONL set")
    safety.add_argument("file")
    safety.add_argument("--errors", action="store_true", help="list misses and false alarms")
    safety.set_defaults(func=cmd_eval_safety)

    train = sub.add_parser("train", help="rebuild a learned head from its labelled corpus")
    train_sub = train.add_subparsers(dest="target", required=True)
    train_routing = train_sub.add_parser("routing", help="the routing head (ion/domain/data)")
    train_routing.add_argument(
        "--corpus", action="append", help=f"corpus file or glob (default {DEFAULT_ROUTING_CORPUS})"
    )
    train_routing.add_argument("--output", help="artifact path (default: the packaged one)")
    train_routing.set_defaults(func=cmd_train_routing)
    train_safety = train_sub.add_parser("safety", help="the crisis head (ion/domain/data)")
    train_safety.add_argument(
        "--corpus", action="append", help=f"corpus file or glob (default {DEFAULT_SAFETY_CORPUS})"
    )
    train_safety.add_argument("--output", help="artifact path (default: the packaged one)")
    train_safety.set_defaults(func=cmd_train_safety)

    outbox = sub.add_parser("outbox", help="the durable event outbox")
    outbox_sub = outbox.add_subparsers(dest="action", required=True)
    drain = outbox_sub.add_parser("drain", help="publish pending outbox events now")
    drain.add_argument("--limit", type=int, default=500)
    drain.add_argument("--backend", choices=["embedded", "gcp"])
    drain.set_defaults(func=cmd_outbox_drain)

    routing_cmd = sub.add_parser("routing", help="routing review data")
    routing_sub = routing_cmd.add_subparsers(dest="action", required=True)
    disagreements = routing_sub.add_parser(
        "disagreements",
        help="print the routing judge's disagreements with the local router as JSON lines",
    )
    disagreements.add_argument("--limit", type=int, default=50, help="newest N (default 50)")
    disagreements.add_argument("--backend", choices=["embedded", "gcp"])
    disagreements.set_defaults(func=cmd_routing_disagreements)

    from ion.backup_cli import add_backup_parser

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
