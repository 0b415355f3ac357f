"""Conversation and outbox storage on Cloud Firestore (native mode), the `gcp` backend.

Only this module imports `google.cloud.firestore`; the composition root imports it lazily,
so the embedded backend never pays for the Google client at cold start.

Data model (see docs/data-model.md):
    conversations/{conversation_id}                  summary fields
    conversations/{conversation_id}/messages/{seq}   one document per message, id = %08d seq
    outbox/{entry_id}                                 events waiting to be published
    response_cache/{sha256 key}                       first-turn answers (TTL: expires_at)
    idempotency_keys/{sha256(user, key)}              Idempotency-Key claims (TTL: expires_at)

A turn on an existing conversation costs four RPCs: get the conversation and claim its
turn lease (a write preconditioned on the read's update time), query the recent messages
(seq desc + limit), and one batch commit that updates the summary (releasing the lease,
preconditioned on the claim's update time), and creates the messages.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ion.adapters.firestore.rpc import (
    UNAVAILABLE,
    call,
    delete_matching,
    rpc_options,
    unavailable_errors,
)
from ion.adapters.store_rules import (
    TurnConflict,
    check_outbox_id,
    check_turn,
    check_updated,
    conversation_page,
    decode_cursor,
    payload_json,
    to_utc,
    valid_id,
)
from ion.domain.models import Conversation, Message
from ion.errors import ConfigurationError, DependencyUnavailable
from ion.ports import (
    CachedAnswer,
    ConversationMemory,
    ConversationPage,
    IdempotencyRecord,
    OutboxEntry,
    TurnClaim,
)

CONVERSATIONS = "conversations"
MESSAGES = "messages"
OUTBOX = "outbox"
RESPONSE_CACHE = "response_cache"
IDEMPOTENCY_KEYS = "idempotency_keys"
# Firestore's historical per-batch write limit; still a sensible size for deletes.
BATCH_LIMIT = 500

_MESSAGE_FIELDS = frozenset(Message.model_fields) - {"conversation_id"}
# The turn lease on conversations/{id}: who holds it and until when.
LEASE = "turn_lease"
LEASE_UNTIL = "turn_lease_until"
_RELEASED = {LEASE: firestore.DELETE_FIELD, LEASE_UNTIL: firestore.DELETE_FIELD}


MEMORY_FIELD = "memory"


def seq_id(seq: int) -> str:
    """The message document id: zero-padded so ids sort like the sequence numbers."""
    return f"{seq:08d}"


class FirestoreStore:
    """`ConversationStore`, `OutboxStore`, `ResponseCache` and `IdempotencyStore` on
    Firestore."""

    def __init__(self, client: firestore.Client, *, timeout_s: float = 10.0) -> None:
        self._client = client
        self._rpc = rpc_options(timeout_s)  # writes are safe to repeat: see save_turn
        self._conversations = client.collection(CONVERSATIONS)
        self._outbox = client.collection(OUTBOX)
        self._cache = client.collection(RESPONSE_CACHE)
        self._idempotency = client.collection(IDEMPOTENCY_KEYS)

    @classmethod
    def from_settings(
        cls, project: str | None, database: str = "(default)", *, timeout_s: float = 10.0
    ) -> FirestoreStore:
        """A store on a new client; honours FIRESTORE_EMULATOR_HOST like every Google client."""
        try:
            client = firestore.Client(project=project, database=database)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"Firestore needs Application Default Credentials and a project: {exc}"
            ) from exc
        return cls(client, timeout_s=timeout_s)

    @property
    def client(self) -> firestore.Client:
        return self._client

    _call = staticmethod(call)

    # --- ConversationStore -----------------------------------------------------------

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        if not valid_id(conversation_id):
            return None  # could never have been stored (and must not address another path)
        ref = self._conversations.document(conversation_id)
        snap = self._call(lambda: ref.get(**self._rpc))
        if not snap.exists:
            return None
        return _conversation(snap.id, snap.to_dict() or {})

    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        if limit <= 0 or not valid_id(conversation_id):
            return []
        query = (
            self._messages(conversation_id)
            .order_by("seq", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        return [_message(conversation_id, s.to_dict() or {}) for s in reversed(snaps)]

    def list_messages(self, conversation_id: str) -> list[Message]:
        if not valid_id(conversation_id):
            return []
        query = self._messages(conversation_id).order_by("seq")
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        return [_message(conversation_id, s.to_dict() or {}) for s in snaps]

    def list_conversations(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> ConversationPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        # Needs the composite index user_id ASC, updated_at DESC, __name__ DESC.
        query = (
            self._conversations.where(filter=FieldFilter("user_id", "==", user_id))
            .order_by("updated_at", direction=firestore.Query.DESCENDING)
            .order_by("__name__", direction=firestore.Query.DESCENDING)
        )
        if cursor is not None:
            after_updated, after_id = decode_cursor(cursor)
            query = query.start_after({"updated_at": after_updated, "__name__": after_id})
        query = query.limit(limit + 1)  # one extra document tells whether another page exists
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        return conversation_page([_conversation(s.id, s.to_dict() or {}) for s in snaps], limit)

    def save_turn(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        updated: Sequence[Message] = (),
        *,
        lease: str | None = None,
    ) -> None:
        first_seq = check_turn(conversation, messages)
        check_updated(conversation, updated)
        c = conversation
        claimed_at = None if lease is None else _lease_time(lease)
        conv_ref = self._conversations.document(c.id)
        # Updated messages are found by id first (one query each; only a retried turn has
        # any), then overwritten in the same batch as the rest of the turn.
        targets = [(self._find_message(c.id, m.id), m) for m in updated]
        batch = self._client.batch()
        summary = {
            "user_id": c.user_id,
            "created_at": to_utc(c.created_at),
            "updated_at": to_utc(c.updated_at),
            "title": c.title,
            "current_persona": c.current_persona,
            "message_count": c.message_count,
        }
        if claimed_at is None:
            # merge: a turn lease someone holds on the document stays.
            batch.set(conv_ref, summary, merge=True)
        else:
            # Only while the document is exactly as our claim left it (the lease is still
            # ours): releases the lease in the same write as the turn.
            option = self._client.write_option(last_update_time=claimed_at)
            batch.update(conv_ref, {**summary, **_RELEASED}, option=option)
        messages_col = conv_ref.collection(MESSAGES)
        for i, message in enumerate(messages):
            # create(), not set(): a second turn computed from the same stale message_count
            # makes the whole batch fail with AlreadyExists instead of overwriting history.
            batch.create(
                messages_col.document(seq_id(first_seq + i)), _message_doc(message, first_seq + i)
            )
        for (ref, seq), message in targets:
            # update(), not set(): fails the whole batch if the message was deleted meanwhile.
            batch.update(ref, _message_doc(message, seq))
        try:
            batch.commit(**self._rpc)
        except gexc.NotFound as exc:
            if lease is not None:
                raise TurnConflict(f"conversation {c.id} was deleted during the turn") from exc
            raise ValueError(f"save_turn: an updated message of {c.id!r} no longer exists") from exc
        except gexc.AlreadyExists as exc:
            # A retried commit whose first attempt did land also ends here: same ids = done.
            if self._already_saved(c.id, first_seq, messages):
                return
            raise TurnConflict(
                f"conversation {c.id} already has messages at seq "
                f"{first_seq}..{first_seq + len(messages) - 1} (concurrent turn?)"
            ) from exc
        except gexc.FailedPrecondition as exc:
            if lease is None:
                raise DependencyUnavailable(f"firestore unavailable: {exc}") from exc
            # The summary changed since our claim: a retried commit of ours that landed,
            # or the lease expired and another turn took it (or the conversation is gone).
            if messages and self._already_saved(c.id, first_seq, messages):
                return
            raise TurnConflict(
                f"conversation {c.id}: this turn no longer holds the conversation "
                "(its lease expired and another turn took it, or the conversation was deleted)"
            ) from exc
        except UNAVAILABLE as exc:
            raise DependencyUnavailable(f"firestore unavailable: {exc}") from exc

    def claim_turn(
        self, conversation_id: str, user_id: str, *, now: datetime, until: datetime
    ) -> TurnClaim:
        if not valid_id(conversation_id):
            return TurnClaim()
        ref = self._conversations.document(conversation_id)
        now = to_utc(now)
        for _ in range(5):
            snap = self._call(lambda: ref.get(**self._rpc))
            data = (snap.to_dict() or {}) if snap.exists else {}
            if not snap.exists or data.get("user_id") != user_id:
                return TurnClaim()
            conversation = _conversation(snap.id, data)
            held_until = data.get(LEASE_UNTIL)
            if data.get(LEASE) is not None and held_until and to_utc(held_until) > now:
                return TurnClaim(conversation=conversation, busy_until=to_utc(held_until))
            holder = uuid.uuid4().hex
            # Not a transaction: a write preconditioned on the update time we read, so of
            # concurrent claims exactly one lands and the others read the new lease.
            option = self._client.write_option(last_update_time=snap.update_time)
            try:
                result = ref.update(
                    {LEASE: holder, LEASE_UNTIL: to_utc(until)}, option=option, **self._rpc
                )
            except gexc.FailedPrecondition:
                continue  # someone else wrote it first: read again
            except gexc.NotFound:
                return TurnClaim()  # deleted meanwhile
            except UNAVAILABLE as exc:
                raise DependencyUnavailable(f"firestore unavailable: {exc}") from exc
            # The token carries the claim's update time: save_turn and release_turn write
            # only while the document is still as the claim left it (a fencing token).
            return TurnClaim(
                conversation=conversation,
                lease=f"{holder}@{_rfc3339(result.update_time)}",
            )
        raise DependencyUnavailable("firestore: the turn claim kept racing; try again")

    def release_turn(self, conversation_id: str, lease: str) -> None:
        if not valid_id(conversation_id):
            return
        ref = self._conversations.document(conversation_id)
        option = self._client.write_option(last_update_time=_lease_time(lease))
        try:
            ref.update(_RELEASED, option=option, **self._rpc)
        except (gexc.FailedPrecondition, gexc.NotFound):
            return  # saved, taken over or deleted meanwhile: not ours to release
        except UNAVAILABLE as exc:
            raise DependencyUnavailable(f"firestore unavailable: {exc}") from exc

    def _find_message(self, conversation_id: str, message_id: str) -> tuple[Any, int]:
        query = (
            self._messages(conversation_id)
            .where(filter=FieldFilter("id", "==", message_id))
            .limit(1)
        )
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        if not snaps:
            raise ValueError(
                f"save_turn: message {message_id!r} of conversation {conversation_id!r} "
                "does not exist, so it cannot be updated"
            )
        return snaps[0].reference, int((snaps[0].to_dict() or {})["seq"])

    def _already_saved(
        self, conversation_id: str, first_seq: int, messages: Sequence[Message]
    ) -> bool:
        col = self._messages(conversation_id)
        refs = [col.document(seq_id(first_seq + i)) for i in range(len(messages))]
        snaps = self._call(lambda: list(self._client.get_all(refs, **self._rpc)))
        stored = {s.id: (s.to_dict() or {}).get("id") for s in snaps if s.exists}
        return all(stored.get(ref.id) == m.id for ref, m in zip(refs, messages, strict=True))

    def delete_conversation(self, conversation_id: str) -> bool:
        if not valid_id(conversation_id):
            return False
        conv_ref = self._conversations.document(conversation_id)
        existed = self._call(lambda: conv_ref.get(**self._rpc)).exists
        # Messages first, the summary last: an interrupted delete stays visible and retryable.
        page_query = conv_ref.collection(MESSAGES).select([]).limit(BATCH_LIMIT)
        with unavailable_errors():
            while True:
                refs = [snap.reference for snap in page_query.stream(**self._rpc)]
                batch = self._client.batch()
                for ref in refs:
                    batch.delete(ref)
                last_page = len(refs) < BATCH_LIMIT
                if last_page:
                    batch.delete(conv_ref)  # rides along with the last page: one RPC less
                batch.commit(**self._rpc)
                if last_page:
                    return bool(existed)

    # --- MemoryStore ---------------------------------------------------------------
    # A field of the conversation's document (save_turn merges its own fields only), so
    # deleting the conversation deletes it.

    def get_memory(self, conversation_id: str) -> ConversationMemory | None:
        if not valid_id(conversation_id):
            return None
        ref = self._conversations.document(conversation_id)
        snap = self._call(lambda: ref.get([MEMORY_FIELD], **self._rpc))
        data = (snap.to_dict() or {}).get(MEMORY_FIELD) if snap.exists else None
        if not data:
            return None
        return ConversationMemory(
            summary=data["summary"],
            through=data["through"],
            updated_at=to_utc(data["updated_at"]),
        )

    def put_memory(self, conversation_id: str, memory: ConversationMemory) -> bool:
        if not valid_id(conversation_id):
            return False
        current = self.get_memory(conversation_id)
        if current is not None and current.through >= memory.through:
            return self.get_conversation(conversation_id) is not None
        ref = self._conversations.document(conversation_id)
        doc = {
            "summary": memory.summary,
            "through": memory.through,
            "updated_at": to_utc(memory.updated_at),
        }
        try:
            # update() fails on a missing document: a deleted conversation stays deleted.
            self._call(lambda: ref.update({MEMORY_FIELD: doc}, **self._rpc))
        except gexc.NotFound:
            return False
        return True

    def ping(self) -> None:
        query = self._conversations.select([]).limit(1)
        self._call(lambda: list(query.stream(**self._rpc)))

    def _messages(self, conversation_id: str) -> Any:
        return self._conversations.document(conversation_id).collection(MESSAGES)

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


# --- document mapping --------------------------------------------------------------


def _conversation(conversation_id: str, data: dict[str, Any]) -> Conversation:
    return Conversation(
        id=conversation_id,
        user_id=data["user_id"],
        created_at=to_utc(data["created_at"]),
        updated_at=to_utc(data["updated_at"]),
        title=data.get("title", ""),
        current_persona=data.get("current_persona"),
        message_count=data.get("message_count", 0),
    )


# Nanosecond-exact text form of a Firestore update time (a precondition must match exactly).
_rfc3339: Callable[[Any], str] = DatetimeWithNanoseconds.rfc3339
_from_rfc3339: Callable[[str], datetime] = DatetimeWithNanoseconds.from_rfc3339


def _lease_time(lease: str) -> datetime:
    """The update time of the claim that made `lease` (see claim_turn)."""
    _, _, stamp = lease.partition("@")
    try:
        return _from_rfc3339(stamp)
    except ValueError as exc:
        raise ValueError(f"{lease!r} is not a turn lease of this store") from exc


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


def _message_doc(message: Message, seq: int) -> dict[str, Any]:
    doc = message.model_dump(mode="json", exclude={"conversation_id", "created_at"})
    doc["created_at"] = to_utc(message.created_at)
    doc["seq"] = seq
    return doc


def _message(conversation_id: str, data: dict[str, Any]) -> Message:
    # Unknown fields are dropped so a document written by a newer release still reads.
    fields = {k: v for k, v in data.items() if k in _MESSAGE_FIELDS}
    fields["conversation_id"] = conversation_id
    fields["created_at"] = to_utc(data["created_at"])
    return Message.model_validate(fields)
