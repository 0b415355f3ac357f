"""The learner profile (chat function): GET/PUT /v1/me/profile and the mentor's suggestions.

PUT replaces the whole profile (`goals` ≤ 5 × 200 characters, `level`, `stack` ≤ 20 × 40,
`preferred_language`, `notes` ≤ 1000; unknown fields are 422). The mentor's suggestions,
proposed from what the learner says in chat, are only applied when the learner accepts
one (POST .../accept); DELETE dismisses it.
"""

from __future__ import annotations

from typing import Any

from flask import Response

from ion.bootstrap import App
from ion.domain.profile import MAX_NOTES_CHARS, LearnerProfile
from ion.domain.text import clean_text
from ion.entrypoints.http.api import Call, json_response
from ion.ports import LearnerRecord


def profile_json(record: LearnerRecord) -> dict[str, Any]:
    return {
        "profile": record.profile.model_dump(mode="json"),
        "suggestions": [
            {
                "suggestion_id": s.id,
                "field": s.field,
                "value": s.value,
                "conversation_id": s.conversation_id,
                "created_at": s.created_at.isoformat(),
            }
            for s in record.suggestions
        ],
        "updated_at": record.updated_at.isoformat() if record.updated_at else None,
    }


def _cleaned(profile: LearnerProfile) -> dict[str, Any]:
    """The profile's text checked like messages (no control characters, NFC)."""
    data = profile.model_dump()
    data["goals"] = [clean_text(g, field_name="goals", max_chars=200) for g in profile.goals]
    data["stack"] = [clean_text(t, field_name="stack", max_chars=40) for t in profile.stack]
    if profile.notes.strip():
        data["notes"] = clean_text(profile.notes, field_name="notes", max_chars=MAX_NOTES_CHARS)
    return data


def get_profile(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")  # every authenticated call counts
    return json_response(profile_json(call.app.profiles.record(user)))


def put_profile(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")
    body = call.json_body(LearnerProfile)
    return json_response(profile_json(call.app.profiles.replace(user, _cleaned(body))))


def accept_suggestion(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")
    record = call.app.profiles.accept(user, call.path_id("suggestion_id"))
    return json_response(profile_json(record))


def dismiss_suggestion(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")
    record = call.app.profiles.dismiss(user, call.path_id("suggestion_id"))
    return json_response(profile_json(record))
