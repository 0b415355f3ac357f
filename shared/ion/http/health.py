"""`/health` (process alive) and `/ready` (dependencies usable), shared by every function."""

from __future__ import annotations

from flask import Response

from ion.http.api import Call, json_response


def health(call: Call) -> Response:
    # Deliberately builds nothing: liveness must not depend on Firestore or the LLM.
    return json_response({"status": "ok"}, private=False)


def ready(call: Call) -> Response:
    checks: dict[str, dict[str, object]] = {}
    try:
        app = call.app
    except Exception as exc:  # a broken configuration is exactly what /ready must report
        return json_response(
            {"status": "unavailable", "checks": {"app": {"ok": False, "detail": str(exc)}}}, 503
        )
    try:
        app.store.ping()
        checks["store"] = {"ok": True, "detail": app.settings.backend}
    except Exception as exc:
        checks["store"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:200]}
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
