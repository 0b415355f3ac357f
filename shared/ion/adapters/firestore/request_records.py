"""The per-request records of the Firestore conversation store: the first-turn response
cache, Idempotency-Key records and the durable event outbox. `FirestoreStore` is one of
these, on the same client.

    outbox/{entry_id}                                 events waiting to be published
    response_cache/{sha256 key}                       first-turn answers (TTL: expires_at)
    idempotency_keys/{sha256(user, key)}              Idempotency-Key claims (TTL: expires_at)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ion.adapters.firestore.rpc import UNAVAILABLE, delete_matching
from ion.adapters.store_rules import check_outbox_id, payload_json, to_utc, valid_id
from ion.errors import DependencyUnavailable
from ion.ports import CachedAnswer, IdempotencyRecord, OutboxEntry

OUTBOX = "outbox"
RESPONSE_CACHE = "response_cache"
IDEMPOTENCY_KEYS = "idempotency_keys"
# Firestore's historical per-batch write limit; still a sensible size for deletes.
BATCH_LIMIT = 500


class FirestoreRequestRecords:
    """`ResponseCache`, `IdempotencyStore` and `OutboxStore` on Firestore."""

    _client: firestore.Client
    _rpc: dict[str, Any]
    _outbox: Any
    _cache: Any
    _idempotency: Any
    _call: Callable[..., Any]

    # --- ResponseCache -------------------------------------------------------------

    def get_cached_answer(self, key: str, now: datetime) -> CachedAnswer | None:
        if not valid_id(key):
            return None
        ref = self._cache.document(key)
        snap = self._call(lambda: ref.get(**self._rpc))
        if not snap.exists:
            return None
        data = snap.to_dict() or {}
        expires_at = to_utc(data["expires_at"])
        # TTL deletion is asynchronous (up to a day late): expiry is checked on read.
        if expires_at <= to_utc(now):
            return None
        return CachedAnswer(
            text=data["text"],
            model=data["model"],
            finish_reason=data.get("finish_reason"),
            created_at=to_utc(data["created_at"]),
            expires_at=expires_at,
            conversation_id=data.get("conversation_id"),
        )

    def put_cached_answer(self, key: str, answer: CachedAnswer) -> None:
        if not valid_id(key):
            raise ValueError(f"{key!r} is not a valid cache key")
        doc = {
            "text": answer.text,
            "model": answer.model,
            "finish_reason": answer.finish_reason,
            "created_at": to_utc(answer.created_at),
            "expires_at": to_utc(answer.expires_at),  # the TTL policy's field
            "conversation_id": answer.conversation_id,  # erased with the conversation
        }
        ref = self._cache.document(key)
        self._call(lambda: ref.set(doc, **self._rpc))

    def delete_cached_answers_for_conversation(self, conversation_id: str) -> int:
        return self._delete_where(self._cache, "conversation_id", conversation_id)

    def _delete_where(self, collection: Any, field: str, value: str) -> int:
        """Delete every document of `collection` whose `field` equals `value` (batched;
        a key-only query per batch, on the automatic single-field index)."""
        query = (
            collection.where(filter=FieldFilter(field, "==", value)).select([]).limit(BATCH_LIMIT)
        )
        return delete_matching(self._client, query, self._rpc, BATCH_LIMIT)

    # --- IdempotencyStore ----------------------------------------------------------

    def _idempotency_ref(self, user_id: str, key: str) -> Any:
        # Hashed: the key is client-chosen text and may contain '/' or other characters
        # that a document id cannot hold; the NUL separator keeps (user, key) unambiguous.
        digest = hashlib.sha256(f"{user_id}\0{key}".encode()).hexdigest()
        return self._idempotency.document(digest)

    def claim_idempotency(
        self, record: IdempotencyRecord, now: datetime
    ) -> IdempotencyRecord | None:
        ref = self._idempotency_ref(record.user_id, record.key)
        doc = _idempotency_doc(record)
        now = to_utc(now)
        for _ in range(5):
            try:
                self._call(lambda: ref.create(doc, **self._rpc))
                return None
            except gexc.AlreadyExists:
                pass
            snap = self._call(lambda: ref.get(**self._rpc))
            if not snap.exists:
                continue  # released or swept meanwhile: try to create again
            # (Should a retried create whose first attempt landed end here, our own claim
            # reads as taken: a 409 until the lease ends, never two requests let through.)
            existing = _idempotency(snap.to_dict() or {})
            live = existing.expires_at > now and (
                existing.state == "done" or existing.locked_until > now
            )
            if live:
                return existing
            # Expired or abandoned: delete it only if nobody changed it since we read it.
            option = self._client.write_option(last_update_time=snap.update_time)
            try:
                ref.delete(option=option, **self._rpc)
            except gexc.FailedPrecondition:
                continue  # someone else replaced it first: read again
            except UNAVAILABLE as exc:
                raise DependencyUnavailable(f"firestore unavailable: {exc}") from exc
            except gexc.NotFound:
                continue
        raise DependencyUnavailable("firestore: idempotency claim kept racing; try again")

    def complete_idempotency(
        self, user_id: str, key: str, response: str, *, conversation_id: str
    ) -> None:
        ref = self._idempotency_ref(user_id, key)
        update = {"state": "done", "response": response, "conversation_id": conversation_id}
        try:
            self._call(lambda: ref.update(update, **self._rpc))
        except gexc.NotFound:
            return  # expired and swept meanwhile: nothing to replay

    def delete_idempotency_for_conversation(self, conversation_id: str) -> int:
        return self._delete_where(self._idempotency, "conversation_id", conversation_id)

    def delete_idempotency_for_user(self, user_id: str) -> int:
        return self._delete_where(self._idempotency, "user_id", user_id)

    def release_idempotency(self, user_id: str, key: str) -> None:
        ref = self._idempotency_ref(user_id, key)
        snap = self._call(lambda: ref.get(**self._rpc))
        if not snap.exists or (snap.to_dict() or {}).get("state") != "pending":
            return
        option = self._client.write_option(last_update_time=snap.update_time)
        try:
            ref.delete(option=option, **self._rpc)
        except (gexc.FailedPrecondition, gexc.NotFound):
            return  # changed meanwhile (completed or re-claimed): leave it alone
        except UNAVAILABLE as exc:
            raise DependencyUnavailable(f"firestore unavailable: {exc}") from exc

    def renew_idempotency(self, user_id: str, key: str, locked_until: datetime) -> None:
        # A lease on a done claim is ignored by readers, so no read-modify-write is needed.
        ref = self._idempotency_ref(user_id, key)
        try:
            self._call(lambda: ref.update({"locked_until": to_utc(locked_until)}, **self._rpc))
        except gexc.NotFound:
            return  # released or swept meanwhile

    # --- OutboxStore -----------------------------------------------------------------

    def add_outbox(self, entry: OutboxEntry) -> None:
        """Insert, or replace an entry with the same id."""
        check_outbox_id(entry.id)
        doc = {
            "event_type": entry.event_type,
            # JSON text, not a map: Firestore rejects nested arrays and would coerce types.
            "payload": payload_json(entry.payload),
            "created_at": to_utc(entry.created_at),
            "attempts": entry.attempts,
            "last_error": entry.last_error,
        }
        ref = self._outbox.document(entry.id)
        self._call(lambda: ref.set(doc, **self._rpc))

    def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        query = self._outbox.order_by("created_at").limit(limit)
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        entries = []
        for snap in snaps:
            data = snap.to_dict() or {}
            entries.append(
                OutboxEntry(
                    id=snap.id,
                    event_type=data["event_type"],
                    payload=json.loads(data["payload"]),
                    created_at=to_utc(data["created_at"]),
                    attempts=data.get("attempts", 0),
                    last_error=data.get("last_error"),
                )
            )
        return entries

    def remove_outbox(self, entry_id: str) -> None:
        """Idempotent: removing an absent entry is not an error."""
        if not valid_id(entry_id):
            return
        ref = self._outbox.document(entry_id)
        self._call(lambda: ref.delete(**self._rpc))

    def record_outbox_failure(self, entry_id: str, error: str) -> None:
        """No-op for an absent entry (it was published and removed meanwhile)."""
        if not valid_id(entry_id):
            return
        ref = self._outbox.document(entry_id)
        update = {"attempts": firestore.Increment(1), "last_error": error}
        try:
            self._call(lambda: ref.update(update, **self._rpc))
        except gexc.NotFound:
            return


def _idempotency_doc(record: IdempotencyRecord) -> dict[str, Any]:
    return {
        "user_id": record.user_id,
        "key": record.key,
        "request_hash": record.request_hash,
        "state": record.state,
        "created_at": to_utc(record.created_at),
        "expires_at": to_utc(record.expires_at),  # the TTL policy's field
        "locked_until": to_utc(record.locked_until),
        "response": record.response,
        "conversation_id": record.conversation_id,
    }


def _idempotency(data: dict[str, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        user_id=data["user_id"],
        key=data["key"],
        request_hash=data["request_hash"],
        state=data["state"],
        created_at=to_utc(data["created_at"]),
        expires_at=to_utc(data["expires_at"]),
        locked_until=to_utc(data["locked_until"]),
        response=data.get("response"),
        conversation_id=data.get("conversation_id"),
    )
