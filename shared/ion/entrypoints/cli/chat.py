"""`ion chat`: chat with the mentor from a terminal (one message, or a session)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ion.entrypoints.cli.common import check_store, cli_app
from ion.errors import IonError, LlmError

if TYPE_CHECKING:
    from ion.bootstrap import App
    from ion.services.turn_preparation import PreparedTurn


CHAT_HELP = """Commands:
  /new    start a new conversation
  /help   show this help
  /quit   leave (also /exit or Ctrl-D)
Anything else is sent to your mentor."""


def cmd_chat(args: argparse.Namespace) -> int:
    from ion.domain.text import clean_text

    app = cli_app()
    check_store(app)
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


def add_chat_parser(sub: Any) -> None:
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
