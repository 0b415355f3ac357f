"""Cloud Function `persona_route`: routing decisions and the persona catalog (HTTP), and
`persona_events` (Pub/Sub CloudEvent): routing statistics from chat and feedback events.
All logic lives in `ion`."""

import os
from typing import Any

import functions_framework
from flask import Request, Response

from ion import bootstrap
from ion.entrypoints import events
from ion.entrypoints.http import api, route_api

# Answers Flask or gunicorn give by themselves are the JSON error envelope too.
api.install_json_errors()
# Logging as configured (Cloud Logging's JSON when deployed) from the first line on.
bootstrap.setup_instance_logging()
# The routing model loads once, at instance start; persona_events (same source) needs none.
if os.environ.get("FUNCTION_TARGET") == "persona_route":
    bootstrap.load_embedder()


@functions_framework.http
def persona_route(request: Request) -> Response:
    return route_api.handle(request)


@functions_framework.cloud_event
def persona_events(cloud_event: Any) -> None:
    events.persona_events(cloud_event, bootstrap.get_worker())
