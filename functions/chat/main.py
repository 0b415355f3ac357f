"""Cloud Function `chat` (HTTP): chat and conversations. All logic lives in `ion`."""

import functions_framework
from flask import Request, Response

from ion import bootstrap
from ion.entrypoints.http import api, chat_api

# Answers Flask or gunicorn give by themselves are the JSON error envelope too.
api.install_json_errors()
# Logging as configured (Cloud Logging's JSON when deployed) from the first line on.
bootstrap.setup_instance_logging()
# The embedding model loads once, at instance start, never on a learner's request.
bootstrap.load_embedder()


@functions_framework.http
def chat(request: Request) -> Response:
    return chat_api.handle(request)
