"""One error hierarchy for the whole package; the HTTP layer maps `status` and `code`."""

from __future__ import annotations


class IonError(Exception):
    """Base of every error that should reach a caller with a clear answer."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class BadRequest(IonError):
    status = 400
    code = "bad_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class Unauthenticated(IonError):
    status = 401
    code = "unauthenticated"


class NotFound(IonError):
    status = 404
    code = "not_found"


class MethodNotAllowed(IonError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class Conflict(IonError):
    """The write lost a race with another writer (e.g. two turns on one conversation)."""

    status = 409
    code = "conflict"


class TurnInProgress(Conflict):
    """Another turn of the same conversation holds its lease (no LLM call was made)."""


class PayloadTooLarge(IonError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(IonError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(IonError):
    status = 422
    code = "validation_failed"


class IdempotencyKeyReused(ValidationFailed):
    """The Idempotency-Key was already used by this user for a different request body."""

    code = "idempotency_key_reused"


class Forbidden(IonError):
    status = 403
    code = "forbidden"


class OperatorOnly(Forbidden):
    """A learner's token on an operator endpoint."""

    code = "operator_only"


class OriginNotAllowed(Forbidden):
    """A browser origin that is not on ION_CORS_ORIGINS."""

    code = "origin_not_allowed"


class RateLimited(IonError):
    status = 429
    code = "rate_limited"


class BudgetExhausted(RateLimited):
    """The user's daily LLM token budget is used up (until the next UTC day)."""

    code = "budget_exhausted"


class LlmError(IonError):
    """The language model could not produce an answer (after retries)."""

    status = 503
    code = "llm_unavailable"


class LlmTransientError(LlmError):
    """A failure worth retrying (429, 5xx, timeout)."""


class LlmBlocked(LlmError):
    """The model refused for safety reasons; retrying will not help."""

    status = 422
    code = "blocked"


class DependencyUnavailable(IonError):
    status = 503
    code = "dependency_unavailable"


class SecretNotFound(IonError):
    status = 500
    code = "secret_not_found"


class SecretAccessDenied(IonError):
    status = 500
    code = "secret_access_denied"


class ConfigurationError(IonError):
    status = 500
    code = "configuration_error"
