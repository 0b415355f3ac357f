"""Cloud Function `persona_route`: routing decisions and the persona catalog (HTTP), and
`persona_events` (Pub/Sub CloudEvent): routing statistics from chat and feedback events.
All logic lives in `ion`."""

from typing import Any

import functions_framework
from flask import Request, Response

from ion import consumers
from ion.http import api, route_api

# Answers Flask or gunicorn give by themselves are the JSON error envelope too.
api.install_json_errors()


@functions_framework.http
def persona_route(request: Request) -> Response:
    return route_api.handle(request)


@functions_framework.cloud_event
def persona_events(cloud_event: Any) -> None:
    consumers.persona_events(cloud_event)
