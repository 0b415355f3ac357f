"""The `ion` command: serve, chat, route, token, eval, train, outbox, routing, backup."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ion.adapters.logging import one_line
from ion.bootstrap import setup_logging
from ion.errors import DependencyUnavailable, IonError, LlmError, ValidationFailed

if TYPE_CHECKING:
    from ion.bootstrap import App
    from ion.domain.semantic import HeadArtifact
    from ion.services.chat import PreparedTurn


if TYPE_CHECKING:
    from ion.domain.routing import Router


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


# Commands run by a person at a terminal: a store that does not answer fails within this
# many seconds (the servers keep ION_STORE_TIMEOUT_S).
CLI_STORE_TIMEOUT_S = 3.0


def _cli_app() -> App:
    from ion.bootstrap import build_app
    from ion.settings import Settings

    settings = Settings()
    timeout = min(settings.store_timeout_s, CLI_STORE_TIMEOUT_S)
    return build_app(settings.model_copy(update={"store_timeout_s": timeout}))


def _check_store(app: App) -> None:
    """Fail fast, in one line, when the store cannot be reached."""
    try:
        app.store.ping()
    except IonError as exc:
        raise DependencyUnavailable(
            f"the {app.settings.backend} store cannot be reached: {one_line(exc)}"
        ) from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def cmd_serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from ion.bootstrap import build_app, set_app
    from ion.entrypoints.http.local import (
        JsonErrorRequestHandler,
        create_local_app,
        default_web_dir,
    )

    app = build_app()
    set_app(app)
    for done in app.backend.prepare_emulators():
        print(done, file=sys.stderr)
    # Bind before printing anything: a busy port is one clear line, not a banner and a token.
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        reason = (
            "the address is already in use (another server on that port? try --port)"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc))
        )
        print(f"ion: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 2
    web_dir = app.settings.web_dir or default_web_dir()
    # The page gets dev tokens only from a loopback address: anyone who can reach the
    # server could otherwise take them.
    dev_tokens = app.jwt_secret is not None and _is_loopback(args.host)
    try:
        server = make_server(
            args.host,
            args.port,
            create_local_app(web_dir=web_dir, dev_user=args.user if dev_tokens else None),
            threaded=True,
            request_handler=JsonErrorRequestHandler,
            fd=sock.fileno(),
        )
    finally:
        sock.close()  # the server holds its own duplicate of the socket
    port = server.socket.getsockname()[1]
    url = f"http://{args.host}:{port}"
    print(
        f"ION Mentoring serving on {url}  (backend={app.settings.backend}, "
        f"llm={app.settings.llm_provider}, data={app.settings.data_dir})"
    )
    if app.jwt_secret is None:
        print(
            "Tokens come from your identity provider (ION_JWKS_URL is set; no dev tokens):"
            f" send them as Authorization: Bearer <token>, e.g. curl -s {url}/v1/conversations"
            " -H 'Authorization: Bearer $TOKEN'",
            flush=True,
        )
    else:
        token = app.dev_token(args.user)
        print(f"Dev token for user '{args.user}' (valid {app.settings.dev_token_ttl_s}s):")
        print(token)
        print(
            f"Try: curl -s {url}/v1/chat -H 'Authorization: Bearer {token}' "
            "-H 'Content-Type: application/json' -d '{\"message\": \"hello\"}'",
            flush=True,
        )
    if (web_dir / "index.html").is_file():
        signed_in = "signed in with a dev token" if dev_tokens else "sign-in from config.json"
        print(f"Web chat: {url}/  (operator page: {url}/operator; {signed_in})", flush=True)
    else:
        print(f"No web app at {web_dir} (ION_WEB_DIR): serving the API only", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


CHAT_HELP = """Commands:
  /new    start a new conversation
  /help   show this help
  /quit   leave (also /exit or Ctrl-D)
Anything else is sent to your mentor."""


def cmd_chat(args: argparse.Namespace) -> int:
    from ion.domain.text import clean_text

    app = _cli_app()
    _check_store(app)
    conversation_id: str | None = args.conversation
    if conversation_id is not None:
        app.chat.owned_conversation(args.user, conversation_id)  # 404 before any typing

    # The quick replies of the last clarifying question: a number picks one.
    offered: tuple[str, ...] = ()

    def one(text: str) -> None:
        nonlocal conversation_id, offered
        if offered and text.isdigit() and 1 <= int(text) <= len(offered):
            text = offered[int(text) - 1]
            print(f"(you chose: {text})")
        offered = ()
        text = clean_text(text, field_name="message", max_chars=app.settings.max_message_chars)
        turn = app.chat.prepare(args.user, text, conversation_id)
        key = turn.resonance_key
        print(
            f"[{_turn_voices(app, turn)} · {key.as_string()} · "
            f"confidence {turn.routing.confidence:.2f}]",
            flush=True,
        )
        shown = False
        try:
            for chunk in app.chat.stream(turn):
                if chunk.final is not None:
                    if turn.cached is not None:
                        source = "cached answer"
                    else:
                        source = f"{chunk.final.usage.output_tokens} tokens"
                    print(f"\n[model {chunk.final.model} · {source}]")
                else:
                    shown = shown or bool(chunk.text)
                    print(chunk.text, end="", flush=True)
        except LlmError:
            # The message was kept (unanswered/incomplete): sending it again completes it.
            conversation_id = turn.conversation.id
            if shown:
                print(flush=True)
            raise
        except IonError:
            if shown:
                # The text above was streamed before it could be stored: say so plainly.
                print("\n[this answer was NOT saved]", flush=True)
            raise
        # Only a stored turn moves the session on to its conversation.
        conversation_id = turn.conversation.id
        if turn.plan.quick_replies:
            offered = turn.plan.quick_replies
            print(f"(answer with a number 1-{len(offered)} or in your own words)", flush=True)

    if args.message:
        one(" ".join(args.message))
        print(f"conversation: {conversation_id}")
        return 0
    print("ION Mentoring chat. Type a message; /help lists the commands.")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if text in {"/quit", "/exit"}:
            return 0
        if text == "/help":
            print(CHAT_HELP)
            continue
        if text == "/new":
            conversation_id = None
            print("(new conversation: your next message starts it)")
            continue
        if text.startswith("/") and " " not in text:
            print(f"unknown command {text[:40]}; /help lists the commands")
            continue
        if not text:
            continue
        try:
            one(text)
        except IonError as exc:
            print(f"error ({exc.code}): {exc.message}", file=sys.stderr)


def _turn_voices(app: App, turn: PreparedTurn) -> str:
    """Who answers: one persona, a duo ("Nana (나나) + Lua (루아)") or a question."""
    if turn.plan.mode == "clarify":
        return "a clarifying question"
    names = []
    for persona_id in turn.plan.personas or (turn.persona.id,):
        persona = app.catalog.require(persona_id)
        names.append(f"{persona.name} ({persona.name_ko})")
    return " + ".join(names)


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
    role = f", role {app.settings.operator_role}" if args.operator else ""
    print(
        f"# dev token for user '{args.user}'{role}, valid {app.settings.dev_token_ttl_s}s",
        file=sys.stderr,
    )
    print(app.dev_token(args.user, operator=args.operator))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ion.services.evaluation import evaluate, load_labelled_set

    items = load_labelled_set(Path(args.file))
    report = evaluate(_local_router(), items)
    print(report.render(show_errors=args.errors))
    return 0


DEFAULT_ROUTING_CORPUS = "data/routing/train/*.jsonl"


def cmd_train_routing(args: argparse.Namespace) -> int:
    from ion.adapters.embeddings import UseEmbedder
    from ion.domain.personas import load_catalog
    from ion.services.training import CorpusError, train_routing

    paths = _corpus_paths(args.corpus or [DEFAULT_ROUTING_CORPUS])
    try:
        report = train_routing(paths, UseEmbedder(), load_catalog())
    except CorpusError as exc:
        raise ValidationFailed(str(exc)) from exc
    return _write_trained(report.lines, report.artifact, args.output)


def _write_trained(lines: Sequence[str], artifact: HeadArtifact, output: str | None) -> int:
    from ion.domain.semantic import artifact_path

    for line in lines:
        print(line)
    path = Path(output) if output else artifact_path(artifact.task)
    artifact.write(path)
    print(f"wrote {path}")
    return 0


DEFAULT_SAFETY_CORPUS = "data/safety/crisis_*.jsonl"


def cmd_train_safety(args: argparse.Namespace) -> int:
    from ion.adapters.embeddings import UseEmbedder
    from ion.domain.safety import load_rules
    from ion.services.training import CorpusError, train_safety

    paths = _corpus_paths(args.corpus or [DEFAULT_SAFETY_CORPUS])
    try:
        everyday = _corpus_paths(args.everyday or [DEFAULT_ROUTING_CORPUS])
        report = train_safety(paths, UseEmbedder(), load_rules(), everyday)
    except CorpusError as exc:
        raise ValidationFailed(str(exc)) from exc
    return _write_trained(report.lines, report.artifact, args.output)


def cmd_eval_safety(args: argparse.Namespace) -> int:
    from ion.bootstrap import build_detector, load_embedder
    from ion.services.evaluation import evaluate_safety, load_safety_set

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
    app = _cli_app()
    _check_store(app)
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
    chat.add_argument(
        "--user",
        default="local",
        help="whose conversations (default: local); use the token's user to continue an API"
        " conversation",
    )
    chat.add_argument("--conversation", help="continue this conversation id (of --user)")
    chat.add_argument("--backend", choices=["embedded", "gcp"])
    chat.set_defaults(func=cmd_chat)

    route = sub.add_parser("route", help="print the routing decision for a message as JSON")
    route.add_argument("text")
    route.add_argument("--history", action="append", help="an earlier message (repeatable)")
    route.set_defaults(func=cmd_route)

    token = sub.add_parser("token", help="print a dev JWT for a user")
    token.add_argument("--user", required=True)
    token.add_argument(
        "--operator",
        action="store_true",
        help="with the operator role (ION_OPERATOR_CLAIM = ION_OPERATOR_ROLE)",
    )
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
    train_safety.add_argument(
        "--everyday",
        action="append",
        help=f"ordinary learner messages, all calm (default {DEFAULT_ROUTING_CORPUS})",
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

    from ion.entrypoints.cli.backup import add_backup_parser

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
