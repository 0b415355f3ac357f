"""The `persona_route` function's HTTP API: routing decisions and the persona catalog."""

from __future__ import annotations

import logging
from typing import Any

from flask import Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from ion.bootstrap import RouteApp, get_route_app
from ion.domain.models import Safety
from ion.domain.routing import RouteResult
from ion.domain.text import clean_text
from ion.entrypoints.http import operator_api
from ion.entrypoints.http.api import Call, dispatch, json_response, route
from ion.entrypoints.http.chat_api import safety_json
from ion.entrypoints.http.health import health, ready
from ion.services.judge import without_judge

log = logging.getLogger(__name__)

MAX_HISTORY = 20


class RouteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: StrictStr
    history: list[StrictStr] = Field(default_factory=list, max_length=MAX_HISTORY)


def route_json(result: RouteResult, persona_name: str) -> dict[str, Any]:
    return {
        "persona": {"id": result.decision.primary, "name": persona_name},
        "routing": result.decision.model_dump(mode="json"),
        "resonance_key": result.analysis.key.model_dump(mode="json"),
        "language": result.analysis.language,
        "evidence": list(result.analysis.evidence),
    }


def post_route(call: Call[RouteApp]) -> Response:
    call.app.quota.admit(call.user(), "api")  # every authenticated call counts
    body = call.json_body(RouteBody)
    limit = call.app.settings.max_message_chars
    message = clean_text(body.message, field_name="message", max_chars=limit)
    history = [
        clean_text(item, field_name=f"history.{index}", max_chars=limit)
        for index, item in enumerate(body.history)
    ]
    app = call.app
    assessment = app.detector.assess(message, history)
    router = without_judge(app.router) if assessment.crisis else app.router
    result = router.route(message, history=history)
    safety = Safety()
    if assessment.crisis:
        policy = app.crisis_policy
        crisis_persona = app.catalog.require(policy.persona)
        decision = policy.override(result.decision, crisis_persona.name)
        result = RouteResult(decision=decision, analysis=result.analysis)
        safety = Safety(crisis=True, resources=policy.resources_for(result.analysis.language))
        log.warning(
            "crisis detected on /v1/route: language=%s score=%.2f reasons=%s",
            result.analysis.language,
            assessment.score,
            ",".join(assessment.reasons),
        )
    persona = app.catalog.require(result.decision.primary)
    answer = route_json(result, persona.name)
    answer["safety"] = safety_json(safety)
    return json_response(answer)


def list_personas(call: Call[RouteApp]) -> Response:
    call.app.quota.admit(call.user(), "api")  # every authenticated call counts
    return json_response(
        {
            "personas": [
                {
                    "id": p.id,
                    "name": p.name,
                    "name_ko": p.name_ko,
                    "role": p.role,
                    "style": p.style,
                }
                for p in call.app.catalog.all()
            ]
        }
    )


def routing_stats(call: Call[RouteApp]) -> Response:
    """The feedback statistics and the nudges they give now (read fresh from the store);
    operators only."""
    call.app.quota.admit(call.operator(), "api")  # every authenticated call counts
    report = call.app.statistics.report()
    return json_response(
        {
            "bound": report.bound,
            "min_votes": report.min_votes,
            "totals": report.totals,
            "stats": [
                {
                    "persona": s.persona,
                    "resonance_key": s.resonance_key.model_dump(mode="json"),
                    "turns": s.turns,
                    "ups": s.ups,
                    "downs": s.downs,
                    "adjustment": round(adjustment, 6),
                }
                for s, adjustment in report.rows
            ],
        }
    )


ROUTES = (
    route("GET", "/health", health),
    route("GET", "/ready", ready),
    route("POST", "/v1/route", post_route),
    route("GET", "/v1/personas", list_personas),
    route("GET", "/v1/routing/stats", routing_stats),
    route("GET", "/v1/operator/daily", operator_api.daily_activity),
    route("GET", "/v1/operator/disagreements", operator_api.list_disagreements),
)


def handle(request: Request) -> Response:
    return dispatch(ROUTES, request, get_route_app)
