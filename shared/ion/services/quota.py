"""Per-user request limits and daily LLM token budgets, on a shared `QuotaStore`.

- Request limits are fixed one-minute windows (UTC), counted atomically in the store, so
  they hold across any number of instances: of N concurrent requests in one window exactly
  `limit` are admitted. Two buckets: `chat` (POST /v1/chat, the LLM calls) and `api`
  (every authenticated /v1 call, chats included).
- The daily token budget is *reserved* before the LLM is called: the request's estimate
  (`estimate_tokens`: its prompt's characters + its max output tokens) is added to the
  day's counter atomically, and the request is admitted when the counter *before* its own
  reservation was below the budget (else the reservation is given back and the request is
  refused). After the call the reservation is settled to the real usage; a call that
  failed gives it back. Concurrent requests see each other's reservations, so their count
  does not matter: the day's usage ends at most one request's usage above the budget
  (the last admitted one found less than the budget used or reserved), provided no request
  uses more than its reservation (documented in README, "Rate limits and budgets").

A request's counter changes are made in one write (`charge`, then `apply` or a turn's
claim, `ConversationStore.claim_turn(counters=...)`): its rate windows and its reservation.
Its buckets are judged in order (the API limit before the chat limit, then the budget);
one refused gives the reservation back at once. A refused request still counts in every
window it reached, as it did when each was its own write: windows only grow, so one the
API limit refuses can only push later requests, themselves over that limit, over the chat
limit too. Exactly `limit` requests of a window are admitted, however many instances.

Counters are keyed by the pseudonymous user hash, never the raw user id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from ion.domain.events import hash_user_id
from ion.domain.models import LlmRequest, Usage
from ion.errors import BudgetExhausted, IonError, RateLimited
from ion.ports import Clock, CounterChange, QuotaStore

log = logging.getLogger(__name__)

Bucket = Literal["chat", "api"]


@dataclass(frozen=True)
class QuotaLimits:
    """0 disables a limit."""

    chat_per_minute: int = 10
    api_per_minute: int = 120
    daily_tokens: int = 100_000


def estimate_tokens(request: LlmRequest) -> int:
    """What one LLM call may cost at most, reserved before it is made: one token per
    character of the prompt (system prompt, history, message; tokenizers need fewer for
    English and Korean text) plus the answer's `max_output_tokens`."""
    prompt_chars = (
        len(request.system_prompt)
        + sum(len(turn.text) for turn in request.history)
        + len(request.message)
    )
    return prompt_chars + max(request.max_output_tokens, 0)


@dataclass(frozen=True)
class Charge:
    """The counter changes of one request (`QuotaGuard.charge`), to be made in one write."""

    user_id: str
    user_hash: str
    now: datetime
    # The buckets counted, in the order of their changes (before the budget's, if any).
    buckets: tuple[Bucket, ...]
    # Tokens reserved on today's budget (0: checked only); None: the budget is not involved.
    tokens: int | None
    changes: tuple[CounterChange, ...]


@dataclass(frozen=True)
class Reservation:
    """Tokens set aside on one day's counter for one LLM call (see QuotaGuard.reserve)."""

    key: str
    tokens: int
    expires_at: datetime
    user_hash: str


class QuotaGuard:
    def __init__(self, store: QuotaStore, clock: Clock, limits: QuotaLimits) -> None:
        self._store = store
        self._clock = clock
        self.limits = limits

    @property
    def store(self) -> QuotaStore:
        """Where the counters live (a guard with other limits can share them)."""
        return self._store

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC)

    def forget(self, user_id: str) -> int:
        """Erase every counter of the user (rate windows and token budgets); how many."""
        user_hash = hash_user_id(user_id)
        prefixes = [f"rate:{bucket}:{user_hash}:" for bucket in get_args(Bucket)]
        prefixes.append(f"tokens:{user_hash}:")
        return sum(self._store.delete_counters_with_prefix(prefix) for prefix in prefixes)

    def _per_minute(self, bucket: Bucket) -> int:
        return self.limits.chat_per_minute if bucket == "chat" else self.limits.api_per_minute

    def admit(self, user_id: str, bucket: Bucket) -> None:
        """Count one request in the current minute; RateLimited when over the limit."""
        self.apply(self.charge(user_id, [bucket]))

    def charge(self, user_id: str, buckets: Sequence[Bucket], tokens: int | None = None) -> Charge:
        """What one request adds to the user's counters, made in one write (`apply`, or a
        turn claim): one request in each bucket's current minute and, with `tokens`, a
        reservation on today's budget (0: a check only, for an answer without an LLM call).
        Limits turned off (0) add nothing."""
        now = self._now()
        user_hash = hash_user_id(user_id)
        window = now.replace(second=0, microsecond=0)
        limited = tuple(b for b in buckets if self._per_minute(b) > 0)
        changes = [
            CounterChange(
                key=f"rate:{b}:{user_hash}:{window:%Y%m%d%H%M}",
                amount=1,
                expires_at=window + timedelta(minutes=2),
            )
            for b in limited
        ]
        if tokens is not None and self.limits.daily_tokens > 0:
            changes.append(
                CounterChange(
                    key=self._budget_key(user_id, now),
                    amount=max(tokens, 0),
                    expires_at=now + timedelta(seconds=_seconds_to_next_day(now) + 86_400),
                )
            )
        else:
            tokens = None
        return Charge(user_id, user_hash, now, limited, tokens, tuple(changes))

    def apply(self, charge: Charge) -> Reservation | None:
        """Make `charge` in one write and `admit_charge` it."""
        if not charge.changes:
            return None
        return self.admit_charge(charge, self._store.increment_many(charge.changes))

    def admit_charge(self, charge: Charge, values: Sequence[int]) -> Reservation | None:
        """Judge a charge made, from its counters' new values: RateLimited (first bucket over
        its limit) or BudgetExhausted (the budget was used up or reserved by others before
        this reservation), after giving the reservation back; else the reservation."""
        reservation = None
        if charge.tokens is not None and charge.tokens > 0:
            key, expires_at = charge.changes[-1].key, charge.changes[-1].expires_at
            reservation = Reservation(key, charge.tokens, expires_at, charge.user_hash)
        for bucket, count in zip(charge.buckets, values, strict=False):
            limit = self._per_minute(bucket)
            if count > limit:
                self.release(reservation)
                raise self._limited(charge, bucket, limit)
        if charge.tokens is not None and values[-1] - charge.tokens >= self.limits.daily_tokens:
            self.release(reservation)
            raise self._exhausted(charge.user_id, charge.now)
        return reservation

    def _limited(self, charge: Charge, bucket: Bucket, limit: int) -> RateLimited:
        window = charge.now.replace(second=0, microsecond=0)
        retry_after = max(
            1, math.ceil((window + timedelta(minutes=1) - charge.now).total_seconds())
        )
        log.warning(
            "rate limited",
            extra={"user_hash": charge.user_hash, "bucket": bucket, "limit": limit},
        )
        return RateLimited(
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

    def _exhausted(self, user_id: str, now: datetime) -> BudgetExhausted:
        log.warning("token budget exhausted", extra={"user_hash": hash_user_id(user_id)})
        return BudgetExhausted(
            f"the daily budget of {self.limits.daily_tokens} LLM tokens is used up; "
            "it renews at 00:00 UTC",
            retry_after_s=_seconds_to_next_day(now),
        )

    def reserve(self, user_id: str, tokens: int) -> Reservation | None:
        """Set `tokens` aside on today's budget before an LLM call; BudgetExhausted when the
        budget was already used up or reserved by others (then nothing stays reserved).

        `tokens` = 0 (a cached answer, no LLM call) only checks. None when nothing is
        reserved. Settle the reservation after the call, or release it when it failed.
        """
        budget = self.limits.daily_tokens
        if budget <= 0:
            return None
        now = self._now()
        key = self._budget_key(user_id, now)
        if tokens <= 0:
            if self._store.counter(key) >= budget:
                raise self._exhausted(user_id, now)
            return None
        expires_at = now + timedelta(seconds=_seconds_to_next_day(now)) + timedelta(days=1)
        total = self._store.increment(key, tokens, expires_at=expires_at)
        reservation = Reservation(key, tokens, expires_at, hash_user_id(user_id))
        if total - tokens >= budget:
            self.release(reservation)
            raise self._exhausted(user_id, now)
        return reservation

    def settle(self, reservation: Reservation | None, usage: Usage) -> None:
        """Replace the reservation by the call's real usage (same day's counter).

        Called once the model has answered: a store failure here is logged, never turned
        into a failed request (the tokens are spent, the learner gets the answer)."""
        if reservation is None:
            return
        spent = max(usage.input_tokens, 0) + max(usage.output_tokens, 0)
        self._adjust(reservation, spent - reservation.tokens, "settling")

    def release(self, reservation: Reservation | None) -> None:
        """Give a reservation back (the call failed or was never made). Logged on failure."""
        if reservation is None:
            return
        self._adjust(reservation, -reservation.tokens, "releasing")

    def _adjust(self, reservation: Reservation, delta: int, what: str) -> None:
        if delta == 0:
            return
        try:
            self._store.increment(reservation.key, delta, expires_at=reservation.expires_at)
        except Exception as exc:  # never turn the learner's answer into an error
            log.error(
                "%s a token reservation failed: %s",
                what,
                exc.code if isinstance(exc, IonError) else type(exc).__name__,
                extra={"user_hash": reservation.user_hash},
            )

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
