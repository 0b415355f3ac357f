"""A tiny routing and error-mapping layer over Flask requests (what functions-framework gives).

Every answer is JSON; every error is `{"error": {"code", "message"}, "request_id"}` with the
status of the `IonError` raised. Unexpected exceptions become a logged 500 that leaks nothing.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flask import Flask, Request, Response, has_app_context, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from ion.adapters.logging import bind_request, clean
from ion.bootstrap import App, RouteApp, setup_instance_logging
from ion.entrypoints.http.request_log import log_request
from ion.errors import (
    BadRequest,
    InvalidJson,
    IonError,
    MethodNotAllowed,
    NotFound,
    OperatorOnly,
    OriginNotAllowed,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
)

log = logging.getLogger("ion.http")

T = TypeVar("T", bound=BaseModel)
# What a function serves: the chat function's App, or persona_route's RouteApp.
AppT = TypeVar("AppT", App, RouteApp)
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")

# On every response, errors and streams included. The API serves JSON only, so the
# content security policy forbids everything a browser could load or frame.
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Every answer's headers unless its handler set them.
_DEFAULT_HEADERS = (*SECURITY_HEADERS.items(), ("Cache-Control", "no-store"))
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept, Idempotency-Key, X-Request-Id"
CORS_EXPOSE_HEADERS = "Retry-After, X-Request-Id, WWW-Authenticate, Idempotent-Replayed"
CORS_MAX_AGE_S = 600


@dataclass
class Call(Generic[AppT]):
    """One HTTP call being served."""

    request: Request
    request_id: str
    # The function's app, built on first use (so /health never builds it).
    load_app: Callable[[], AppT]
    params: dict[str, str] = field(default_factory=dict)
    _app: AppT | None = None
    user_id: str | None = None  # set once authenticated (logged only as a hash)
    started: float = field(default_factory=time.perf_counter)  # when serving began
    roles: frozenset[str] = frozenset()

    @property
    def app(self) -> AppT:
        if self._app is None:
            self._app = self.load_app()
        return self._app

    def user(self) -> str:
        """The authenticated user (authentication only: handlers charge the rate limit)."""
        if self.user_id is None:
            principal = self.app.verifier.principal_from_header(
                self.request.headers.get("Authorization")
            )
            self.user_id, self.roles = principal.user_id, principal.roles
        return self.user_id

    def operator(self) -> str:
        """The authenticated user when the token holds the operator role; 403 otherwise.

        Checked here, on the server, for every operator endpoint: the web page hiding its
        operator link is only a convenience."""
        user = self.user()
        settings = self.app.settings
        if settings.operator_role not in self.roles:
            raise OperatorOnly(
                f"this endpoint is for operators: the token's '{settings.operator_claim}'"
                f" claim must hold '{settings.operator_role}'"
            )
        return user

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
            # UTF-8 only (RFC 8259 8.1), without a byte order mark: json.loads(bytes) would
            # also guess UTF-16/32 and skip a BOM, accepting what the API promises to refuse.
            if raw.startswith(b"\xef\xbb\xbf"):
                raise InvalidJson("request body must be UTF-8 JSON without a byte order mark")
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJson("request body is not valid UTF-8") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidJson(f"request body is not valid JSON: {exc}") from None
        except (ValueError, RecursionError):
            # Nesting deeper than the parser's stack, or an integer longer than Python's
            # digit limit: malformed input, never a 500.
            raise InvalidJson("request body is not valid JSON (encoding, depth or size)") from None
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


# `ion serve` serves the route handlers with the whole App, which has every RouteApp field.
Handler = Callable[[Call[Any]], Response]


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


# What a client reads for a server-side failure: a stable code and a human message. The
# detail (gRPC targets, timeouts, setting names...) goes to the server log only.
PUBLIC_503_MESSAGES = {
    "llm_unavailable": "The mentor cannot answer right now; your message was kept."
    " Please try again shortly.",
    "dependency_unavailable": "The service is temporarily unavailable. Please try again shortly.",
}
INTERNAL_MESSAGE = "internal error; quote the request id"
DEFAULT_RETRY_AFTER_S = 5


def public_error(error: IonError, request_id: str) -> tuple[str, str]:
    """The (code, message) a client may see for `error`; server errors are logged with
    their detail and the request id, and answered with a fixed message."""
    if error.status < 500:
        return error.code, error.message
    if error.status == 503:
        code = error.code if error.code in PUBLIC_503_MESSAGES else "dependency_unavailable"
        public = PUBLIC_503_MESSAGES[code]
    else:
        code, public = "internal", INTERNAL_MESSAGE
    if error.message != public and error.message != INTERNAL_MESSAGE:
        log.log(
            logging.WARNING if error.status == 503 else logging.ERROR,
            "%s (%s) [request %s]: %s",
            code,
            type(error).__name__,
            request_id,
            error.message,
            extra={"request_id": request_id, "error_code": error.code},
        )
    return code, public


def error_body(error: IonError, request_id: str) -> dict[str, Any]:
    code, message = public_error(error, request_id)
    return {"error": {"code": code, "message": message}, "request_id": request_id}


def error_response(error: IonError, request_id: str) -> Response:
    response = json_response(error_body(error, request_id), error.status)
    if isinstance(error, Unauthenticated):
        response.headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{error.code}"'
        )
    if isinstance(error, MethodNotAllowed) and error.allowed:
        response.headers["Allow"] = ", ".join(error.allowed)
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    elif error.status == 503:
        response.headers["Retry-After"] = str(DEFAULT_RETRY_AFTER_S)
    return response


def dispatch(routes: Iterable[Route], request: Request, load_app: Callable[[], AppT]) -> Response:
    """Answer `request` with the matching route; `load_app` gives the function's app."""
    started = time.perf_counter()
    setup_instance_logging()
    request_id = _request_id(request)
    bind_request(request_id)
    call: Call[AppT] = Call(
        request=request, request_id=request_id, load_app=load_app, started=started
    )
    origin = request.headers.get("Origin")
    allowed_origin: str | None = None
    try:
        if origin is not None:
            allowed_origin = _check_origin(call, origin)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = _preflight(routes, call, allowed_origin)
        else:
            response = _match(routes, call)(call)
    except IonError as exc:
        response = error_response(exc, request_id)
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, clean(request.path))
        response = error_response(IonError(INTERNAL_MESSAGE), request_id)
    _secure(response, allowed_origin)
    response.headers["X-Request-Id"] = request_id
    log_request(
        request,
        response,
        request_id=request_id,
        latency_s=time.perf_counter() - started,
        user_id=call.user_id,
    )
    return response


class HttpError(IonError):
    """An error Flask/werkzeug raised before our router ran (its status, our envelope)."""

    def __init__(self, status: int) -> None:
        from ion.entrypoints.http.raw_errors import error_code, error_message

        super().__init__(error_message(status))
        self.status = status
        self.code = error_code(status)


def _http_exception(exc: HTTPException) -> Response:
    started = time.perf_counter()
    setup_instance_logging()
    request_id = _request_id(request)
    bind_request(request_id)
    status = exc.code or 500
    response = error_response(HttpError(status), request_id)
    allowed = getattr(exc, "valid_methods", None)
    if status == 405 and allowed:
        response.headers["Allow"] = ", ".join(allowed)
    _secure(response, None)
    response.headers["X-Request-Id"] = request_id
    log_request(
        request,
        response,
        request_id=request_id,
        latency_s=time.perf_counter() - started,
        note=" (rejected before routing)",
    )
    return response


def install_json_errors(app: Flask | None = None) -> None:
    """Answers Flask gives by itself (a path no URL rule matches, e.g. with a newline in
    it; a method it does not route) become the JSON envelope with the security headers;
    so do the errors the WSGI server (gunicorn) writes before any app code runs.

    With no `app`, the Flask app being set up (functions-framework imports a function's
    main.py inside its app context) is used; outside one, only the server hook is set."""
    from flask import current_app

    from ion.entrypoints.http.raw_errors import install_gunicorn_error_pages

    install_gunicorn_error_pages()
    if app is None:
        if not has_app_context():
            return
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    app.register_error_handler(HTTPException, _http_exception)


def _check_origin(call: Call[Any], origin: str) -> str | None:
    """The origin when it is on ION_CORS_ORIGINS; None for a same-origin request (a page
    served by this very host, as `ion serve` serves the web chat: no CORS involved);
    OriginNotAllowed (403) otherwise."""
    normalised = origin.rstrip("/").lower()
    if normalised == call.request.host_url.rstrip("/").lower():
        return None
    if normalised not in call.app.settings.cors_origins:
        raise OriginNotAllowed(f"origin {origin[:100]!r} is not allowed to call this API")
    return origin


def _preflight(routes: Iterable[Route], call: Call[Any], origin: str | None) -> Response:
    """Answer a CORS preflight: 204 with what the path allows (origin already checked)."""
    if origin is None:
        raise BadRequest("a CORS preflight needs an Origin header")
    path = call.request.path.rstrip("/") or "/"
    methods = [r.method for r in routes if r.pattern.match(path)]
    if not methods:
        raise NotFound(f"no such endpoint: {path}")
    wanted = call.request.headers.get("Access-Control-Request-Method", "").upper()
    if wanted not in methods:
        raise MethodNotAllowed(f"{wanted[:20]} is not allowed on {path}", allowed=tuple(methods))
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = ", ".join([*methods, "OPTIONS"])
    response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
    return response


def _secure(response: Response, allowed_origin: str | None) -> None:
    """Security headers, no-store by default, and CORS headers for an allowed origin.

    Never `Access-Control-Allow-Credentials`: the API authenticates with a bearer header,
    not cookies, so no credentialed cross-origin request is ever needed.
    """
    headers = response.headers
    # One pass over what the handler set (werkzeug's setdefault scans them per header).
    present = {name.lower() for name, _value in headers.items()}
    for name, value in _DEFAULT_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    if "vary" in present:
        response.vary.add("Origin")
    else:
        headers.add("Vary", "Origin")
    if allowed_origin is not None:
        response.headers["Access-Control-Allow-Origin"] = allowed_origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS


def _match(routes: Iterable[Route], call: Call[Any]) -> Handler:
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
