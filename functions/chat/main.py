"""Cloud Function `chat` (HTTP): chat and conversations. All logic lives in `ion`."""

import functions_framework
from flask import Request, Response

from ion import bootstrap
from ion.entrypoints.http import api, chat_api

# Answers Flask or gunicorn give by themselves are the JSON error envelope too.
api.install_json_errors()
# The embedding model loads once, at instance start, never on a learner's request.
bootstrap.load_embedder()


@functions_framework.http
def chat(request: Request) -> Response:
    return chat_api.handle(request)
