"""Cloud Function `chat` (HTTP): chat and conversations. All logic lives in `ion`."""

import functions_framework
from flask import Request, Response

from ion.http import chat_api


@functions_framework.http
def chat(request: Request) -> Response:
    return chat_api.handle(request)
