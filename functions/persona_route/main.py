"""Cloud Function `persona_route` (HTTP): routing decisions and the persona catalog."""

import functions_framework
from flask import Request, Response

from ion.http import route_api


@functions_framework.http
def persona_route(request: Request) -> Response:
    return route_api.handle(request)
