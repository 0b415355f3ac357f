"""The `persona_route` function's HTTP API: routing decisions and the persona catalog."""

from __future__ import annotations

from typing import Any

from flask import Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from ion.domain.routing import RouteResult
from ion.http.api import Call, clean_text, dispatch, json_response, route
from ion.http.health import health, ready

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


def post_route(call: Call) -> Response:
    call.user()
    body = call.json_body(RouteBody)
    limit = call.app.settings.max_message_chars
    message = clean_text(body.message, field_name="message", max_chars=limit)
    history = [
        clean_text(item, field_name=f"history.{index}", max_chars=limit)
        for index, item in enumerate(body.history)
    ]
    result = call.app.router.route(message, history=history)
    persona = call.app.catalog.require(result.decision.primary)
    return json_response(route_json(result, persona.name))


def list_personas(call: Call) -> Response:
    call.user()
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


ROUTES = (
    route("GET", "/health", health),
    route("GET", "/ready", ready),
    route("POST", "/v1/route", post_route),
    route("GET", "/v1/personas", list_personas),
)


def handle(request: Request) -> Response:
    return dispatch(ROUTES, request)
