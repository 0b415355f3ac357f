"""`/health` (process alive) and `/ready` (dependencies usable), shared by every function.

`/ready` names what is wrong in words an operator can act on (a configuration message, or
which dependency is unreachable); exception detail such as network targets goes to the
server log with the request id, never into the body.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response

from ion.bootstrap import App
from ion.entrypoints.http.api import Call, json_response
from ion.errors import ConfigurationError

log = logging.getLogger("ion.http")


def health(call: Call[Any]) -> Response:
    # Deliberately builds nothing: liveness must not depend on Firestore or the LLM.
    return json_response({"status": "ok"}, private=False)


def ready(call: Call[Any]) -> Response:
    checks: dict[str, dict[str, object]] = {}
    try:
        app = call.app
    except Exception as exc:  # a broken configuration is exactly what /ready must report
        if isinstance(exc, ConfigurationError):
            detail = exc.message  # written for operators; never holds a secret value
            log.error("not ready [request %s]: %s", call.request_id, exc.message)
        else:
            detail = f"the app could not be built ({type(exc).__name__}); see the server log"
            log.exception("not ready [request %s]: building the app failed", call.request_id)
        return json_response(
            {"status": "unavailable", "checks": {"app": {"ok": False, "detail": detail}}}, 503
        )
    try:
        app.store.ping()
        checks["store"] = {"ok": True, "detail": app.settings.backend}
    except Exception as exc:
        log.warning(
            "not ready [request %s]: store ping failed: %s: %s",
            call.request_id,
            type(exc).__name__,
            exc,
        )
        checks["store"] = {
            "ok": False,
            "detail": f"{app.settings.backend} store unreachable; see the server log",
        }
    if isinstance(app, App):  # persona_route's RouteApp has no language model to check
        llm_ok, llm_detail = app.llm.readiness()
        checks["llm"] = {"ok": llm_ok, "detail": llm_detail, "provider": app.settings.llm_provider}
    checks["auth"] = {"ok": True, "detail": app.verifier.describe()}
    # Degraded, not down: without the model, routing uses the lexicons and learners still
    # get answers, so this check is reported but does not fail readiness.
    routing = app.routing_status
    checks["routing"] = {"ok": True, "degraded": not routing.ok, "detail": routing.detail}
    safety = app.safety_status
    checks["safety"] = {"ok": True, "degraded": not safety.ok, "detail": safety.detail}
    ok = all(bool(check["ok"]) for check in checks.values())
    degraded = not routing.ok or not safety.ok
    status = "unavailable" if not ok else "degraded" if degraded else "ready"
    return json_response({"status": status, "checks": checks}, 200 if ok else 503)
