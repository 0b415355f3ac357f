"""A tiny routing and error-mapping layer over Flask requests (what functions-framework gives).

Every answer is JSON; every error is `{"error": {"code", "message"}, "request_id"}` with the
status of the `IonError` raised. Unexpected exceptions become a logged 500 that leaks nothing.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Request, Response
from pydantic import BaseModel, ValidationError

from ion.bootstrap import App, get_app
from ion.errors import (
    BadRequest,
    InvalidJson,
    IonError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
)

log = logging.getLogger("ion.http")

T = TypeVar("T", bound=BaseModel)
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
# C0/C1 control characters except tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(value: str, *, field_name: str, max_chars: int) -> str:
    """NFC-normalise and reject control characters (rejected, not stripped: no silent edits)."""
    value = unicodedata.normalize("NFC", value)
    if _CONTROL.search(value):
        raise ValidationFailed(
            f"{field_name} contains control characters (only tab and newline are allowed)"
        )
    if not value.strip():
        raise ValidationFailed(f"{field_name} must not be empty")
    if len(value) > max_chars:
        raise ValidationFailed(f"{field_name} is longer than the limit of {max_chars} characters")
    return value


@dataclass
class Call:
    """One HTTP call being served."""

    request: Request
    request_id: str
    params: dict[str, str] = field(default_factory=dict)
    _app: App | None = None

    @property
    def app(self) -> App:
        if self._app is None:
            self._app = get_app()
        return self._app

    def user(self) -> str:
        return self.app.verifier.user_from_header(self.request.headers.get("Authorization"))

    def path_id(self, name: str) -> str:
        value = self.params[name]
        if not ID_PATTERN.match(value):
            raise BadRequest(f"invalid {name.replace('_', ' ')}: {value[:80]!r}")
        return value

    def json_body(self, model: type[T]) -> T:
        limit = self.app.settings.max_body_bytes
        length = self.request.content_length
        if length is not None and length > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        mimetype = (self.request.mimetype or "").lower()
        if mimetype != "application/json":
            raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
        raw = self.request.stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidJson(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValidationFailed("request body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed(_describe(exc)) from None

    def query_int(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.request.args.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ValidationFailed(
                f"query parameter {name} must be an integer from {low} to {high}"
            )
        return int(raw)


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, path: str, handler: Handler) -> Route:
    """`path` like /v1/conversations/{conversation_id}; placeholders match one segment."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(f"^{regex}$"), handler)


def json_response(body: Mapping[str, Any], status: int = 200, *, private: bool = True) -> Response:
    response = Response(
        json.dumps(body, ensure_ascii=False, default=_json_default),
        status=status,
        mimetype="application/json",
    )
    if private:
        response.headers["Cache-Control"] = "no-store"
    return response


def error_response(error: IonError, request_id: str) -> Response:
    response = json_response(
        {"error": {"code": error.code, "message": error.message}, "request_id": request_id},
        error.status,
    )
    if isinstance(error, Unauthenticated):
        response.headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{error.code}"'
        )
    if isinstance(error, MethodNotAllowed) and error.allowed:
        response.headers["Allow"] = ", ".join(error.allowed)
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


def dispatch(routes: Iterable[Route], request: Request) -> Response:
    request_id = _request_id(request)
    started = time.perf_counter()
    call = Call(request=request, request_id=request_id)
    try:
        response = _match(routes, call)(call)
    except IonError as exc:
        response = error_response(exc, request_id)
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        response = error_response(IonError("internal error; quote the request id"), request_id)
    response.headers["X-Request-Id"] = request_id
    log.info(
        "%s %s -> %s in %.1f ms",
        request.method,
        request.path,
        response.status_code,
        (time.perf_counter() - started) * 1000,
        extra={"request_id": request_id},
    )
    return response


def _match(routes: Iterable[Route], call: Call) -> Handler:
    path = call.request.path.rstrip("/") or "/"
    allowed: list[str] = []
    for candidate in routes:
        found = candidate.pattern.match(path)
        if found is None:
            continue
        if candidate.method == call.request.method:
            call.params = found.groupdict()
            return candidate.handler
        allowed.append(candidate.method)
    if allowed:
        raise MethodNotAllowed(
            f"{call.request.method} is not allowed on {path}", allowed=tuple(allowed)
        )
    raise NotFound(f"no such endpoint: {path}")


def _request_id(request: Request) -> str:
    supplied = request.headers.get("X-Request-Id", "")
    return supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
