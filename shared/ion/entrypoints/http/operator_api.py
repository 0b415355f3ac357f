"""Operator endpoints of the `persona_route` function (the operator page reads them).

Every handler starts with `call.operator()`: a token without the operator role
(ION_OPERATOR_CLAIM holding ION_OPERATOR_ROLE) gets 403 `operator_only` before anything is
read. Time ranges are UTC days, `from`..`to` inclusive (at most 92 days, default the last
28); lists are cursor-paginated.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

from flask import Response

from ion.bootstrap import RouteApp
from ion.entrypoints.http.api import Call, json_response
from ion.errors import BadRequest
from ion.services.operator import DayRange, day_range


def _days(call: Call[RouteApp]) -> DayRange:
    args = call.request.args
    return day_range(args.get("from"), args.get("to"), today=call.app.operator.today())


def _range_json(days: DayRange) -> dict[str, Any]:
    return {"from": days.first.isoformat(), "to": days.last.isoformat()}


def daily_activity(call: Call[RouteApp]) -> Response:
    """Per UTC day: turns and net ups/downs per persona, and crisis detections (counts)."""
    call.app.quota.admit(call.operator(), "api")
    series = call.app.operator.daily(_days(call))
    return json_response(
        {
            **_range_json(series.range),
            "days": [day.isoformat() for day in series.range.days],
            "turns": series.turns,
            "ups": series.ups,
            "downs": series.downs,
            "crises": series.crises,
        }
    )


def list_disagreements(call: Call[RouteApp]) -> Response:
    """The routing judge's disagreements with the local router, newest first."""
    call.app.quota.admit(call.operator(), "api")
    days = _days(call)
    limit = call.query_int("limit", 50, low=1, high=200)
    after = _decode_cursor(call.request.args.get("cursor"))
    page = call.app.operator.disagreements(days, limit=limit, after=after)
    return json_response(
        {
            **_range_json(days),
            "disagreements": [
                {
                    "created_at": d.created_at.isoformat(),
                    "message": d.message,
                    "local_persona": d.local_persona,
                    "judge_persona": d.judge_persona,
                    "judge_secondary": d.judge_secondary,
                    "confidence": round(d.confidence, 4),
                    "main_need": d.main_need,
                }
                for d in page.items
            ],
            "next_cursor": None if page.next_after is None else _encode_cursor(*page.next_after),
        }
    )


_HASH = re.compile(r"^[0-9a-f]{64}$")


def _encode_cursor(created_at: datetime, message_hash: str) -> str:
    raw = f"{created_at.isoformat()}|{message_hash}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> tuple[datetime, str] | None:
    """The (created_at, message_hash) a next_cursor stands for; 400 for anything else."""
    if not raw:
        return None
    invalid = BadRequest("invalid cursor: pass next_cursor from the previous page")
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        stamp, _, message_hash = text.partition("|")
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    if created_at.tzinfo is None or not _HASH.match(message_hash):
        raise invalid
    return created_at, message_hash
