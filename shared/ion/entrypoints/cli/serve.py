"""`ion serve`: the chat and persona_route APIs and the web chat on one local port."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
from typing import Any


def is_loopback(host: str) -> bool:
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
    dev_tokens = app.jwt_secret is not None and is_loopback(args.host)
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


def add_serve_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run chat + persona_route on one local port")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--backend", choices=["embedded", "gcp"])
    serve.add_argument("--user", default="dev", help="user id of the printed dev token")
    serve.set_defaults(func=cmd_serve)
