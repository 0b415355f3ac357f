"""The caller's own data (chat function): GET /v1/me/export and DELETE /v1/me.

Export: everything stored about the caller as one JSON document (conversations with their
messages, summaries and feedback; the profile and its pending suggestions). Delete: erases
all of it, derived copies included (services/learner_data), and says how many of each
kind went; calling it again is safe and erases nothing more.
"""

from __future__ import annotations

from flask import Response

from ion.bootstrap import App
from ion.entrypoints.http.api import Call, json_response


def export_me(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")  # every authenticated call counts
    body = call.app.learner_data.export(user)
    response = json_response(body)
    response.headers["Content-Disposition"] = 'attachment; filename="ion-export.json"'
    return response


def delete_me(call: Call[App]) -> Response:
    user = call.user()
    # Not charged to the API limit: erasure is never refused for being busy, and its own
    # counters are among what it erases.
    return json_response(call.app.learner_data.erase(user))
