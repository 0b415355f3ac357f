"""Idempotency-Key rules for POST /v1/chat: claim, lease, replay, complete or release.

The first request with a key claims (user, key) with a hash of its message and
conversation_id; when it succeeds its reply is stored, and a retry with the same key, user
and body gets that reply again without another LLM call. The same key with another body is
`IdempotencyKeyReused`; a retry while the first is still running is `Conflict` with a
Retry-After. A failed request releases the key, so retrying with it runs again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import timedelta
from typing import Any

from ion.errors import Conflict, IdempotencyKeyReused
from ion.ports import Clock, ConversationStore, IdempotencyRecord, IdempotencyStore

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
IN_FLIGHT_RETRY_AFTER_S = 2
# A claim's lease is short and renewed every IDEMPOTENCY_HEARTBEAT_S while its request
# runs; when the instance dies, the key is free again within one lease.
IDEMPOTENCY_LEASE_S = 20
IDEMPOTENCY_HEARTBEAT_S = 5.0


def request_hash(text: str, conversation_id: str | None) -> str:
    """What a retry must repeat to be a replay: the message and its conversation (the
    `stream` flag is not part of it: a replay answers in the form the retry asks for)."""
    return hashlib.sha256(
        json.dumps(
            {"message": text, "conversation_id": conversation_id},
            ensure_ascii=False,
            sort_keys=True,
        ).encode("utf-8")
    ).hexdigest()


class IdempotencyClaim:
    """One claimed (user, Idempotency-Key) for the request being served."""

    def __init__(
        self,
        store: IdempotencyStore,
        user: str,
        key: str,
        replay: dict[str, Any] | None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.user = user
        self.key = key
        self.replay = replay  # set when the key was already completed: answer with this
        self._stop = threading.Event()
        if replay is None and clock is not None:
            # We own a pending claim: keep its lease alive while the request runs.
            threading.Thread(
                target=self._heartbeat, args=(clock,), name="idempotency-lease", daemon=True
            ).start()

    def _heartbeat(self, clock: Clock) -> None:
        while not self._stop.wait(IDEMPOTENCY_HEARTBEAT_S):
            try:
                until = clock.now() + timedelta(seconds=IDEMPOTENCY_LEASE_S)
                self.store.renew_idempotency(self.user, self.key, until)
            except Exception as exc:  # the next beat tries again; the lease bounds the harm
                log.warning("renewing an Idempotency-Key lease failed: %s", type(exc).__name__)

    def complete(self, reply: dict[str, Any]) -> None:
        self._stop.set()
        self.store.complete_idempotency(
            self.user,
            self.key,
            json.dumps(reply, ensure_ascii=False, separators=(",", ":")),
            conversation_id=str(reply["conversation_id"]),
        )

    def release(self) -> None:
        self._stop.set()
        self.store.release_idempotency(self.user, self.key)


class IdempotencyService:
    def __init__(
        self,
        store: IdempotencyStore,
        conversations: ConversationStore,
        clock: Clock,
        *,
        ttl_s: int,
    ) -> None:
        self.store = store
        self._conversations = conversations
        self._clock = clock
        self._ttl_s = ttl_s

    def claim(
        self, user: str, key: str, text: str, conversation_id: str | None
    ) -> IdempotencyClaim:
        """Claim `key` for this request, or the stored reply to replay (`claim.replay`)."""
        now = self._clock.now()
        digest = request_hash(text, conversation_id)
        record = IdempotencyRecord(
            user_id=user,
            key=key,
            request_hash=digest,
            state="pending",
            created_at=now,
            expires_at=now + timedelta(seconds=self._ttl_s),
            # Renewed while the request runs (heartbeat): a claim whose lease ran out was
            # abandoned (its instance died).
            locked_until=now + timedelta(seconds=IDEMPOTENCY_LEASE_S),
        )
        existing = self.store.claim_idempotency(record, now)
        if existing is None:
            return IdempotencyClaim(self.store, user, key, None, self._clock)
        if existing.request_hash != digest:
            raise IdempotencyKeyReused(
                f"this {IDEMPOTENCY_HEADER} was already used for a different request; "
                "use a new key for a new message"
            )
        if existing.state != "done" or existing.response is None:
            raise Conflict(
                f"a request with this {IDEMPOTENCY_HEADER} is still being answered; retry shortly",
                retry_after_s=IN_FLIGHT_RETRY_AFTER_S,
            )
        stored: dict[str, Any] = json.loads(existing.response)
        if self._conversations.get_conversation(str(stored.get("conversation_id"))) is None:
            # The learner erased that conversation since: never replay erased text. The
            # request runs as if it were new and its reply replaces the stored one.
            return IdempotencyClaim(self.store, user, key, None, self._clock)
        return IdempotencyClaim(self.store, user, key, stored)
