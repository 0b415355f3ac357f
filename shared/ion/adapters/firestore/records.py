"""Feedback, routing statistics, consumed-event dedupe and the backup catalog on Firestore.

Takes the app's `google.cloud.firestore.Client` (`FirestoreStore.client`). Collections:

    feedback/{conversation_id}:{message_id}          one rating per assistant message
    routing_stats/{persona}.{tone}.{pace}.{intent}   counters (turns, ups, downs)
    daily_counts/{day}:{name}                        per-day counters (operator charts)
    processed_events/{event_id}                      dedupe marks; TTL on `expires_at`
    backups/{backup_id}                              the backup catalog
    routing_disagreements/{message_hash}             judge-vs-local disagreements (with
                                                     the message text); TTL on `expires_at`

`apply_event_once` is ONE batch commit: `create` the dedupe mark (fails with AlreadyExists
when the event was applied before, which aborts the whole batch) plus server-side
`Increment`s of the counters (daily ones included), so it is atomic and concurrent consumers never contend.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ion.adapters.firestore.rpc import call, rpc_options, unavailable_errors
from ion.adapters.store_rules import to_utc, valid_id
from ion.domain.models import ResonanceKey
from ion.ports import (
    BackupRecord,
    DailyCount,
    Feedback,
    RoutingDisagreement,
    RoutingStat,
    StatsDelta,
    text_hash,
)

FEEDBACK = "feedback"
ROUTING_STATS = "routing_stats"
DAILY_COUNTS = "daily_counts"
PROCESSED_EVENTS = "processed_events"
BACKUPS = "backups"
ROUTING_DISAGREEMENTS = "routing_disagreements"
BATCH_LIMIT = 500


def _stats_id(persona: str, key: ResonanceKey) -> str:
    return f"{persona}.{key.tone.value}.{key.pace.value}.{key.intent.value}"


class FirestoreLearningAndBackupStore:
    """`FeedbackStore`, `RoutingStatsStore`, `BackupCatalog` and `DisagreementStore` on
    Firestore."""

    def __init__(
        self, client: firestore.Client, *, timeout_s: float = 10.0, dedupe_days: int = 30
    ) -> None:
        self._client = client
        self._rpc = rpc_options(timeout_s)
        self._dedupe = timedelta(days=dedupe_days)
        self._feedback = client.collection(FEEDBACK)
        self._stats = client.collection(ROUTING_STATS)
        self._daily = client.collection(DAILY_COUNTS)
        self._processed = client.collection(PROCESSED_EVENTS)
        self._backups = client.collection(BACKUPS)
        self._disagreements = client.collection(ROUTING_DISAGREEMENTS)

    @property
    def client(self) -> firestore.Client:
        return self._client

    _call = staticmethod(call)

    # --- FeedbackStore ---------------------------------------------------------------

    def put_feedback(self, feedback: Feedback) -> Feedback | None:
        if not (valid_id(feedback.conversation_id) and valid_id(feedback.message_id)):
            raise ValueError("feedback ids must be valid document ids")
        ref = self._feedback.document(f"{feedback.conversation_id}:{feedback.message_id}")
        rpc = self._rpc

        @firestore.transactional
        def swap(transaction: Any) -> Feedback | None:
            snap = ref.get(transaction=transaction, timeout=rpc["timeout"])
            previous = _feedback(snap.to_dict() or {}) if snap.exists else None
            created_at = feedback.created_at if previous is None else previous.created_at
            transaction.set(ref, _feedback_doc(feedback, created_at))
            return previous

        result: Feedback | None = self._call(lambda: swap(self._client.transaction()))
        return result

    def get_feedback(self, conversation_id: str, message_id: str) -> Feedback | None:
        if not (valid_id(conversation_id) and valid_id(message_id)):
            return None
        ref = self._feedback.document(f"{conversation_id}:{message_id}")
        snap = self._call(lambda: ref.get(**self._rpc))
        return _feedback(snap.to_dict() or {}) if snap.exists else None

    def delete_feedback_for_conversation(self, conversation_id: str) -> int:
        if not valid_id(conversation_id):
            return 0
        query = self._feedback.where(
            filter=FieldFilter("conversation_id", "==", conversation_id)
        ).select([])
        deleted = 0
        with unavailable_errors():
            refs = [snap.reference for snap in query.stream(**self._rpc)]
            for start in range(0, len(refs), BATCH_LIMIT):
                batch = self._client.batch()
                for ref in refs[start : start + BATCH_LIMIT]:
                    batch.delete(ref)
                batch.commit(**self._rpc)
                deleted += len(refs[start : start + BATCH_LIMIT])
        return deleted

    # --- RoutingStatsStore -----------------------------------------------------------

    def apply_event_once(
        self,
        event_id: str,
        deltas: Sequence[StatsDelta],
        *,
        processed_at: datetime,
        daily: Sequence[DailyCount] = (),
    ) -> bool:
        if not valid_id(event_id):
            raise ValueError(f"{event_id!r} is not a valid event id")
        batch = self._client.batch()
        batch.create(self._processed.document(event_id), self._mark_doc(processed_at))
        for d in deltas:
            key = d.resonance_key
            doc: dict[str, Any] = {
                "persona": d.persona,
                "tone": key.tone.value,
                "pace": key.pace.value,
                "intent": key.intent.value,
                "updated_at": to_utc(processed_at),
            }
            for name in ("turns", "ups", "downs"):
                doc[name] = firestore.Increment(getattr(d, name))
            batch.set(self._stats.document(_stats_id(d.persona, key)), doc, merge=True)
        for c in daily:
            day = c.day.isoformat()
            batch.set(
                self._daily.document(f"{day}:{c.name}"),
                {"day": day, "name": c.name, "count": firestore.Increment(c.count)},
                merge=True,
            )
        try:
            self._call(lambda: batch.commit(**self._rpc))
        except gexc.AlreadyExists:
            return False
        return True

    def daily_counts(self, first: date, last: date) -> list[DailyCount]:
        query = self._daily.where(filter=FieldFilter("day", ">=", first.isoformat())).where(
            filter=FieldFilter("day", "<=", last.isoformat())
        )
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        counts = []
        for snap in snaps:
            data = snap.to_dict() or {}
            counts.append(
                DailyCount(
                    day=date.fromisoformat(data["day"]), name=data["name"], count=data["count"]
                )
            )
        counts.sort(key=lambda c: (c.day, c.name))
        return counts

    def routing_stats(self) -> list[RoutingStat]:
        snaps = self._call(lambda: list(self._stats.stream(**self._rpc)))
        stats = []
        for snap in snaps:
            data = snap.to_dict() or {}
            stats.append(
                RoutingStat(
                    persona=data["persona"],
                    resonance_key=ResonanceKey.model_validate(
                        {"tone": data["tone"], "pace": data["pace"], "intent": data["intent"]}
                    ),
                    turns=data.get("turns", 0),
                    ups=data.get("ups", 0),
                    downs=data.get("downs", 0),
                )
            )
        stats.sort(key=lambda s: (s.persona, s.resonance_key.as_string()))
        return stats

    def is_processed(self, event_id: str) -> bool:
        if not valid_id(event_id):
            return False
        ref = self._processed.document(event_id)
        return bool(self._call(lambda: ref.get(**self._rpc)).exists)

    def mark_processed(self, event_id: str, *, processed_at: datetime) -> bool:
        if not valid_id(event_id):
            raise ValueError(f"{event_id!r} is not a valid event id")
        ref = self._processed.document(event_id)
        try:
            self._call(lambda: ref.create(self._mark_doc(processed_at), **self._rpc))
        except gexc.AlreadyExists:
            return False
        return True

    def _mark_doc(self, processed_at: datetime) -> dict[str, Any]:
        return {
            "processed_at": to_utc(processed_at),
            # TTL policy on this field deletes old marks (docs/operations.md).
            "expires_at": to_utc(processed_at + self._dedupe),
        }

    # --- BackupCatalog ---------------------------------------------------------------

    def put_backup(self, record: BackupRecord) -> None:
        if not valid_id(record.id):
            raise ValueError(f"{record.id!r} is not a valid backup id")
        doc = record.model_dump(mode="python", exclude={"id"})
        doc["started_at"] = to_utc(record.started_at)
        if record.finished_at is not None:
            doc["finished_at"] = to_utc(record.finished_at)
        ref = self._backups.document(record.id)
        self._call(lambda: ref.set(doc, **self._rpc))

    def list_backups(self, limit: int = 100) -> list[BackupRecord]:
        if limit <= 0:
            return []
        query = self._backups.order_by("started_at", direction=firestore.Query.DESCENDING).limit(
            limit
        )
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        return [_backup(s.id, s.to_dict() or {}) for s in snaps]

    def running_backups(self) -> list[BackupRecord]:
        query = self._backups.where(filter=FieldFilter("status", "==", "running"))
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        records = [_backup(s.id, s.to_dict() or {}) for s in snaps]
        return sorted(records, key=lambda r: (r.started_at, r.id))

    # --- DisagreementStore -----------------------------------------------------------

    def put_disagreement(self, disagreement: RoutingDisagreement) -> None:
        doc = disagreement.model_dump(mode="python", exclude={"message_hash"})
        doc["created_at"] = to_utc(disagreement.created_at)
        # TTL policy on this field deletes the document (docs/data-model.md).
        doc["expires_at"] = to_utc(disagreement.expires_at)
        doc["text_hash"] = disagreement.text_hash
        ref = self._disagreements.document(disagreement.message_hash)
        self._call(lambda: ref.set(doc, **self._rpc))

    def delete_disagreements_for_texts(self, texts: Sequence[str]) -> int:
        hashes = sorted({text_hash(t) for t in texts})
        deleted = 0
        # `in` takes at most 30 values per query.
        for start in range(0, len(hashes), 30):
            query = self._disagreements.where(
                filter=FieldFilter("text_hash", "in", hashes[start : start + 30])
            )
            snaps = self._call(partial(_stream, query, self._rpc))
            for snap in snaps:
                self._call(partial(snap.reference.delete, **self._rpc))
            deleted += len(snaps)
        return deleted

    def list_disagreements(
        self,
        *,
        limit: int,
        now: datetime,
        after: tuple[datetime, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[RoutingDisagreement]:
        if limit <= 0:
            return []
        # Newest first, ties by document id (the hash) descending, on the automatic
        # single-field index; expired documents (TTL deletion lags by up to a day) are
        # skipped here, so a page may be short by those.
        query: Any = self._disagreements
        if since is not None:
            query = query.where(filter=FieldFilter("created_at", ">=", to_utc(since)))
        if until is not None:
            query = query.where(filter=FieldFilter("created_at", "<", to_utc(until)))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
            "__name__", direction=firestore.Query.DESCENDING
        )
        if after is not None:
            query = query.start_after(
                {"created_at": to_utc(after[0]), "__name__": self._disagreements.document(after[1])}
            )
        query = query.limit(limit)
        snaps = self._call(lambda: list(query.stream(**self._rpc)))
        found = [_disagreement(s.id, s.to_dict() or {}) for s in snaps]
        live = [d for d in found if d.expires_at > to_utc(now)]
        return sorted(live, key=lambda d: (d.created_at, d.message_hash), reverse=True)


def _stream(query: Any, rpc: dict[str, Any]) -> list[Any]:
    return list(query.stream(**rpc))


def _feedback_doc(feedback: Feedback, created_at: datetime) -> dict[str, Any]:
    return {
        "conversation_id": feedback.conversation_id,
        "message_id": feedback.message_id,
        "user_id": feedback.user_id,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "persona": feedback.persona,
        "resonance_key": None
        if feedback.resonance_key is None
        else feedback.resonance_key.model_dump(mode="json"),
        "created_at": to_utc(created_at),
        "updated_at": to_utc(feedback.updated_at),
    }


def _feedback(data: dict[str, Any]) -> Feedback:
    return Feedback(
        conversation_id=data["conversation_id"],
        message_id=data["message_id"],
        user_id=data["user_id"],
        rating=data["rating"],
        comment=data.get("comment"),
        persona=data["persona"],
        resonance_key=data.get("resonance_key"),
        created_at=to_utc(data["created_at"]),
        updated_at=to_utc(data["updated_at"]),
    )


def _backup(backup_id: str, data: dict[str, Any]) -> BackupRecord:
    fields = dict(data)
    fields["id"] = backup_id
    fields["started_at"] = to_utc(data["started_at"])
    if data.get("finished_at") is not None:
        fields["finished_at"] = to_utc(data["finished_at"])
    known = set(BackupRecord.model_fields)
    return BackupRecord.model_validate({k: v for k, v in fields.items() if k in known})


def _disagreement(message_hash: str, data: dict[str, Any]) -> RoutingDisagreement:
    fields = {k: v for k, v in data.items() if k in RoutingDisagreement.model_fields}
    fields["message_hash"] = message_hash
    fields["created_at"] = to_utc(data["created_at"])
    fields["expires_at"] = to_utc(data["expires_at"])
    return RoutingDisagreement.model_validate(fields)
