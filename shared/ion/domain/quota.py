"""Per-user request limits and daily LLM token budgets, on a shared `QuotaStore`.

- Request limits are fixed one-minute windows (UTC), counted atomically in the store, so
  they hold across any number of instances: of N concurrent requests in one window exactly
  `limit` are admitted. Two buckets: `chat` (POST /v1/chat, the LLM calls) and `api`
  (every authenticated /v1 call, chats included).
- The token budget is checked before the LLM is called (exhausted → refused) and actual
  usage is added after the answer, so a budget can be overshot by the answers already in
  flight when it ran out (at most one for a client that waits for each answer).

Counters are keyed by the pseudonymous user hash, never the raw user id.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from ion.errors import BudgetExhausted, IonError, RateLimited
from ion.events import hash_user_id
from ion.models import Usage
from ion.ports import Clock, QuotaStore

log = logging.getLogger(__name__)

Bucket = Literal["chat", "api"]


@dataclass(frozen=True)
class QuotaLimits:
    """0 disables a limit."""

    chat_per_minute: int = 10
    api_per_minute: int = 120
    daily_tokens: int = 100_000


class QuotaGuard:
    def __init__(self, store: QuotaStore, clock: Clock, limits: QuotaLimits) -> None:
        self._store = store
        self._clock = clock
        self.limits = limits

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC)

    def _per_minute(self, bucket: Bucket) -> int:
        return self.limits.chat_per_minute if bucket == "chat" else self.limits.api_per_minute

    def admit(self, user_id: str, bucket: Bucket) -> None:
        """Count one request in the current minute; RateLimited when over the limit."""
        limit = self._per_minute(bucket)
        if limit <= 0:
            return
        now = self._now()
        window = now.replace(second=0, microsecond=0)
        user_hash = hash_user_id(user_id)
        key = f"rate:{bucket}:{user_hash}:{window:%Y%m%d%H%M}"
        count = self._store.increment(key, 1, expires_at=window + timedelta(minutes=2))
        if count > limit:
            retry_after = max(1, math.ceil((window + timedelta(minutes=1) - now).total_seconds()))
            log.warning(
                "rate limited",
                extra={"user_hash": user_hash, "bucket": bucket, "limit": limit},
            )
            raise RateLimited(
                f"too many requests: the limit is {limit} per minute"
                + (" for chat messages" if bucket == "chat" else ""),
                retry_after_s=retry_after,
            )

    def _budget_key(self, user_id: str, now: datetime) -> str:
        return f"tokens:{hash_user_id(user_id)}:{now:%Y%m%d}"

    def tokens_used(self, user_id: str) -> int:
        return self._store.counter(self._budget_key(user_id, self._now()))

    def check_budget(self, user_id: str) -> None:
        """BudgetExhausted when today's (UTC) token budget is used up."""
        budget = self.limits.daily_tokens
        if budget <= 0:
            return
        now = self._now()
        if self._store.counter(self._budget_key(user_id, now)) >= budget:
            log.warning("token budget exhausted", extra={"user_hash": hash_user_id(user_id)})
            raise BudgetExhausted(
                f"the daily budget of {budget} LLM tokens is used up; it renews at 00:00 UTC",
                retry_after_s=_seconds_to_next_day(now),
            )

    def before_chat(self, user_id: str) -> None:
        """Everything checked before a chat may call the LLM."""
        self.admit(user_id, "chat")
        self.check_budget(user_id)

    def record_usage(self, user_id: str, usage: Usage, *, cached: bool = False) -> None:
        """Add an answer's actual token usage to today's budget (cached answers are free).

        Called after the answer exists: a store failure here is logged, never turned into
        a failed request (the learner already has the answer).
        """
        if self.limits.daily_tokens <= 0 or cached:
            return
        spent = usage.input_tokens + usage.output_tokens
        if spent <= 0:
            return
        now = self._now()
        next_day = now + timedelta(seconds=_seconds_to_next_day(now))
        try:
            self._store.increment(
                self._budget_key(user_id, now), spent, expires_at=next_day + timedelta(days=1)
            )
        except Exception as exc:  # the answer is stored and sent: never fail it now
            log.error(
                "recording token usage failed: %s",
                exc.code if isinstance(exc, IonError) else type(exc).__name__,
                extra={"user_hash": hash_user_id(user_id)},
            )


def _seconds_to_next_day(now: datetime) -> int:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return max(1, math.ceil((midnight - now).total_seconds()))
