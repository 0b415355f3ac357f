"""Learner profiles on Firestore: `learner_profiles/{sha256(user id)}` holds the profile and
the pending suggestions (a user id may hold characters a document id may not)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from google.cloud import firestore

from ion.adapters.firestore.rpc import call, rpc_options
from ion.adapters.store_rules import to_utc
from ion.domain.profile import LearnerProfile, ProfileSuggestion
from ion.ports import LearnerRecord

LEARNER_PROFILES = "learner_profiles"


def profile_doc_id(user_id: str) -> str:
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


class FirestoreProfileStore:
    """`ProfileStore` on Firestore (merge writes: the profile and the suggestions are
    written independently of each other)."""

    def __init__(self, client: firestore.Client, *, timeout_s: float = 10.0) -> None:
        self._collection = client.collection(LEARNER_PROFILES)
        self._rpc = rpc_options(timeout_s)

    def _ref(self, user_id: str) -> Any:
        return self._collection.document(profile_doc_id(user_id))

    def get_learner(self, user_id: str) -> LearnerRecord | None:
        ref = self._ref(user_id)
        snap = call(lambda: ref.get(**self._rpc))
        if not snap.exists:
            return None
        data = snap.to_dict() or {}
        updated_at = data.get("updated_at")
        return LearnerRecord(
            profile=LearnerProfile.model_validate(data.get("profile") or {}),
            suggestions=[
                ProfileSuggestion.model_validate({**s, "created_at": to_utc(s["created_at"])})
                for s in data.get("suggestions") or []
            ],
            updated_at=None if updated_at is None else to_utc(updated_at),
        )

    def put_profile(self, user_id: str, profile: LearnerProfile, *, updated_at: datetime) -> None:
        ref = self._ref(user_id)
        doc = {"profile": profile.model_dump(mode="json"), "updated_at": to_utc(updated_at)}
        call(lambda: ref.set(doc, merge=True, **self._rpc))

    def put_suggestions(self, user_id: str, suggestions: Sequence[ProfileSuggestion]) -> None:
        ref = self._ref(user_id)
        items = [
            {**s.model_dump(mode="json"), "created_at": to_utc(s.created_at)} for s in suggestions
        ]
        call(lambda: ref.set({"suggestions": items}, merge=True, **self._rpc))

    def delete_learner(self, user_id: str) -> bool:
        ref = self._ref(user_id)
        existed = bool(call(lambda: ref.get(**self._rpc)).exists)
        call(lambda: ref.delete(**self._rpc))
        return existed
