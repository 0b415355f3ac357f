"""Conversation and outbox storage on Cloud Firestore (native mode), the `gcp` backend.

Only this package imports `google.cloud.firestore`; the composition root imports it lazily,
so the embedded backend never pays for the Google client at cold start. The response cache,
Idempotency-Key records and the outbox are in request_records.py.

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

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ion.adapters.firestore.quota import QUOTA, add_counter_change, counter_values
from ion.adapters.firestore.request_records import (
    BATCH_LIMIT,
    IDEMPOTENCY_KEYS,
    OUTBOX,
    RESPONSE_CACHE,
    FirestoreRequestRecords,
)
from ion.adapters.firestore.rpc import (
    UNAVAILABLE,
    call,
    rpc_options,
    unavailable_errors,
)
from ion.adapters.store_rules import (
    TurnConflict,
    check_turn,
    check_updated,
    conversation_page,
    decode_cursor,
    to_utc,
    valid_id,
)
from ion.domain.models import Conversation, Message
from ion.errors import ConfigurationError, DependencyUnavailable
from ion.ports import (
    ConversationMemory,
    ConversationPage,
    CounterChange,
    StoreAccess,
    TurnClaim,
    TurnSnapshot,
)
from ion.services.store_access import SerialAccess

CONVERSATIONS = "conversations"
MESSAGES = "messages"

_MESSAGE_FIELDS = frozenset(Message.model_fields) - {"conversation_id"}
# The turn lease on conversations/{id}: who holds it and until when.
LEASE = "turn_lease"
LEASE_UNTIL = "turn_lease_until"
_RELEASED = {LEASE: firestore.DELETE_FIELD, LEASE_UNTIL: firestore.DELETE_FIELD}


MEMORY_FIELD = "memory"


def seq_id(seq: int) -> str:
    """The message document id: zero-padded so ids sort like the sequence numbers."""
    return f"{seq:08d}"


class FirestoreStore(FirestoreRequestRecords):
    """`ConversationStore`, `OutboxStore`, `ResponseCache` and `IdempotencyStore` on
    Firestore (the last three in request_records.py)."""

    def __init__(
        self,
        client: firestore.Client,
        *,
        timeout_s: float = 10.0,
        access: StoreAccess | None = None,
    ) -> None:
        self._client = client
        # How read_turn reads the conversation and its history window at the same time.
        self._access = access or SerialAccess()
        self._rpc = rpc_options(timeout_s)  # writes are safe to repeat: see save_turn
        self._conversations = client.collection(CONVERSATIONS)
        self._outbox = client.collection(OUTBOX)
        self._cache = client.collection(RESPONSE_CACHE)
        self._idempotency = client.collection(IDEMPOTENCY_KEYS)
        # A turn claim charges the request's rate limits and token budget in its commit.
        self._quota = client.collection(QUOTA)

    @classmethod
    def from_settings(
        cls,
        project: str | None,
        database: str = "(default)",
        *,
        timeout_s: float = 10.0,
        access: StoreAccess | None = None,
    ) -> FirestoreStore:
        """A store on a new client; honours FIRESTORE_EMULATOR_HOST like every Google client."""
        try:
            client = firestore.Client(project=project, database=database)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ConfigurationError(
                f"Firestore needs Application Default Credentials and a project: {exc}"
            ) from exc
        return cls(client, timeout_s=timeout_s, access=access)

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
        window = self._window(conversation_id, limit)
        return [_message(conversation_id, s.to_dict() or {}) for s in reversed(window)]

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

    def read_turn(
        self, conversation_id: str, user_id: str, *, now: datetime, history: int
    ) -> TurnSnapshot:
        if not valid_id(conversation_id):
            return TurnSnapshot()
        ref = self._conversations.document(conversation_id)
        snap, window = self._access.at_once(
            lambda: self._call(lambda: ref.get(**self._rpc)),
            lambda: self._window(conversation_id, history),
        )
        data = (snap.to_dict() or {}) if snap.exists else {}
        if not snap.exists or data.get("user_id") != user_id:
            return TurnSnapshot()
        conversation = _conversation(snap.id, data)
        busy_until = _busy_until(data, to_utc(now))
        if busy_until is not None:
            return TurnSnapshot(conversation=conversation, busy_until=busy_until)
        if history > 0 and not _window_reflects(window, snap.update_time, data):
            # The window was read before the conversation's last write: read it again. A
            # turn saved after that changes the conversation, so the claim preconditioned
            # on `version` fails and the turn reads again.
            window = self._window(conversation_id, history)
        return TurnSnapshot(
            conversation=conversation,
            history=[_message(conversation_id, d.to_dict() or {}) for d in reversed(window)],
            memory=_memory(data.get(MEMORY_FIELD)),
            # Whose read it was travels with it: a claim by anybody else is refused.
            version=f"{_rfc3339(snap.update_time)}@{user_id}",
        )

    def _window(self, conversation_id: str, limit: int) -> list[Any]:
        """The last `limit` message documents, newest first."""
        if limit <= 0:
            return []
        query = (
            self._messages(conversation_id)
            .order_by("seq", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return self._call(lambda: list(query.stream(**self._rpc)))

    def claim_turn(
        self,
        conversation_id: str,
        user_id: str,
        *,
        now: datetime,
        until: datetime,
        expected: str | None = None,
        counters: Sequence[CounterChange] = (),
    ) -> TurnClaim:
        if not valid_id(conversation_id):
            return TurnClaim(changed=expected is not None)
        ref = self._conversations.document(conversation_id)
        if expected is not None:
            read_at, _, reader = expected.partition("@")
            if reader != user_id:
                return TurnClaim()  # another learner's read: never theirs to claim
            # The snapshot showed it the user's and free; unchanged since, it still is.
            taken = self._take(ref, _from_rfc3339(read_at), until, counters)
            if taken is None:
                return TurnClaim(changed=True)
            return TurnClaim(lease=taken[0], counters=taken[1])
        now = to_utc(now)
        for _ in range(5):
            snap = self._call(lambda: ref.get(**self._rpc))
            data = (snap.to_dict() or {}) if snap.exists else {}
            if not snap.exists or data.get("user_id") != user_id:
                return TurnClaim()
            conversation = _conversation(snap.id, data)
            busy_until = _busy_until(data, now)
            if busy_until is not None:
                return TurnClaim(conversation=conversation, busy_until=busy_until)
            taken = self._take(ref, snap.update_time, until, counters)
            if taken is None:
                continue  # someone else wrote it first (or deleted it): read again
            return TurnClaim(conversation=conversation, lease=taken[0], counters=taken[1])
        raise DependencyUnavailable("firestore: the turn claim kept racing; try again")

    def _take(
        self, ref: Any, read_at: datetime, until: datetime, counters: Sequence[CounterChange]
    ) -> tuple[str, tuple[int, ...]] | None:
        """The lease and the counters' values, or None when the document changed since
        `read_at` (or is gone). Not a transaction: a write preconditioned on the update time
        read, so of concurrent claims exactly one lands; the counters change in the same
        commit, only with the lease."""
        holder = uuid.uuid4().hex
        batch = self._client.batch()
        option = self._client.write_option(last_update_time=read_at)
        batch.update(ref, {LEASE: holder, LEASE_UNTIL: to_utc(until)}, option=option)
        for change in counters:
            add_counter_change(self._quota, batch, change)
        try:
            results = batch.commit(**self._rpc)
        except (gexc.FailedPrecondition, gexc.NotFound):
            return None
        except UNAVAILABLE as exc:
            raise DependencyUnavailable(f"firestore unavailable: {exc}") from exc
        # The token carries the claim's update time: save_turn and release_turn write
        # only while the document is still as the claim left it (a fencing token).
        return f"{holder}@{_rfc3339(results[0].update_time)}", tuple(counter_values(results[1:]))

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
        return _memory((snap.to_dict() or {}).get(MEMORY_FIELD) if snap.exists else None)

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


def _window_reflects(window: list[Any], updated: datetime, data: dict[str, Any]) -> bool:
    """Whether a history window read at the same time as the conversation document shows
    every message of the document's version: it was read at or after the document's last
    write (every turn is saved in one commit with its conversation document)."""
    if not window:
        return int(data.get("message_count") or 0) == 0
    read_at = window[0].read_time
    return read_at is not None and read_at >= updated


def _busy_until(data: dict[str, Any], now: datetime) -> datetime | None:
    """When the live lease on a conversation document expires (None: no live lease)."""
    held_until = data.get(LEASE_UNTIL)
    if data.get(LEASE) is not None and held_until and to_utc(held_until) > now:
        return to_utc(held_until)
    return None


def _memory(data: dict[str, Any] | None) -> ConversationMemory | None:
    if not data:
        return None
    return ConversationMemory(
        summary=data["summary"], through=data["through"], updated_at=to_utc(data["updated_at"])
    )


def _lease_time(lease: str) -> datetime:
    """The update time of the claim that made `lease` (see claim_turn)."""
    _, _, stamp = lease.partition("@")
    try:
        return _from_rfc3339(stamp)
    except ValueError as exc:
        raise ValueError(f"{lease!r} is not a turn lease of this store") from exc


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
