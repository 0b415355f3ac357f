"""POST /v1/conversations/{conversation_id}/messages/{message_id}/feedback (chat function).

Body `{"rating": "up"|"down", "comment"?: str}` (comment ≤ 1000 characters, cleaned like
messages). The message must be an assistant message of the caller's conversation (404
otherwise, also for someone else's conversation). Rating a message again replaces the
earlier rating and comment: 201 for the first rating, 200 for a replacement.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Response
from pydantic import BaseModel, ConfigDict, StrictStr

from ion.bootstrap import App
from ion.domain.text import clean_text
from ion.entrypoints.http.api import Call, json_response
from ion.ports import Feedback
from ion.services.feedback import MAX_COMMENT_CHARS


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"]
    comment: StrictStr | None = None


def feedback_json(feedback: Feedback) -> dict[str, Any]:
    return {
        "conversation_id": feedback.conversation_id,
        "message_id": feedback.message_id,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "persona": feedback.persona or None,
        "created_at": feedback.created_at.isoformat(),
        "updated_at": feedback.updated_at.isoformat(),
    }


def post_feedback(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")  # every authenticated call counts
    conversation_id = call.path_id("conversation_id")
    message_id = call.path_id("message_id")
    body = call.json_body(FeedbackBody)
    comment = None
    if body.comment is not None:
        comment = clean_text(body.comment, field_name="comment", max_chars=MAX_COMMENT_CHARS)
    result = call.app.feedback.rate(user, conversation_id, message_id, body.rating, comment)
    return json_response(feedback_json(result.feedback), 201 if result.created else 200)
