"""The learner profile use cases: read and replace it, the mentor's suggestions for it (never
applied silently: the learner accepts or dismisses each), and its note in prompts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ion.domain.models import Language
from ion.domain.profile import (
    MAX_SUGGESTIONS,
    LearnerProfile,
    ProfileSuggestion,
    apply_suggestion,
    open_suggestions,
    prompt_note,
    propose_updates,
)
from ion.errors import IonError, NotFound, ValidationFailed
from ion.ports import Clock, LearnerRecord, ProfileStore

log = logging.getLogger(__name__)


def _new_id() -> str:
    return uuid.uuid4().hex


class ProfileService:
    def __init__(
        self, store: ProfileStore, clock: Clock, id_factory: Callable[[], str] = _new_id
    ) -> None:
        self._store = store
        self._clock = clock
        self._new_id = id_factory

    def record(self, user_id: str) -> LearnerRecord:
        return self._store.get_learner(user_id) or LearnerRecord()

    def replace(self, user_id: str, payload: Any) -> LearnerRecord:
        """Validate `payload` (a JSON object) as the whole profile and store it."""
        try:
            profile = LearnerProfile.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise ValidationFailed(f"{where}: {first['msg']}") from None
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        self._store.put_profile(user_id, profile, updated_at=self._clock.now())
        record = self.record(user_id)
        still_open = open_suggestions(profile, record.suggestions)
        if len(still_open) != len(record.suggestions):
            self._store.put_suggestions(user_id, still_open)
            record = record.model_copy(update={"suggestions": still_open})
        return record

    def accept(self, user_id: str, suggestion_id: str) -> LearnerRecord:
        record = self.record(user_id)
        suggestion = self._pending(record, suggestion_id)
        try:
            profile = apply_suggestion(record.profile, suggestion)
        except ValidationError as exc:
            raise ValidationFailed(
                f"the suggestion does not fit the profile: {exc.errors()[0]['msg']}"
            ) from None
        self._store.put_profile(user_id, profile, updated_at=self._clock.now())
        self._store.put_suggestions(
            user_id, [s for s in record.suggestions if s.id != suggestion_id]
        )
        return self.record(user_id)

    def dismiss(self, user_id: str, suggestion_id: str) -> LearnerRecord:
        record = self.record(user_id)
        self._pending(record, suggestion_id)
        self._store.put_suggestions(
            user_id, [s for s in record.suggestions if s.id != suggestion_id]
        )
        return self.record(user_id)

    def for_turn(self, user_id: str) -> LearnerRecord | None:
        """The learner's record as a turn reads it once (empty when they have none); None
        when it cannot be read: the turn goes on without it and proposes nothing."""
        try:
            return self.record(user_id)
        except IonError:
            log.exception("reading the learner profile failed")
            return None

    def prompt_note(self, record: LearnerRecord | None, language: Language) -> str:
        """The profile's note for a prompt ('' without one)."""
        return prompt_note(record.profile if record else None, language)

    def propose(
        self, user_id: str, text: str, conversation_id: str, record: LearnerRecord | None
    ) -> None:
        """Record the updates a learner message supports as pending suggestions, next to
        those of `record` (the turn's read; a suggestion settled in between may come back
        once). Best effort: never fails the turn; nothing when the record is unknown."""
        if record is None:
            return
        try:
            fresh = propose_updates(text, record.profile, record.suggestions)
            if not fresh:
                return
            now = self._clock.now()
            added = [
                ProfileSuggestion(
                    id=self._new_id(),
                    field=field_name,
                    value=value,
                    conversation_id=conversation_id,
                    created_at=now,
                )
                for field_name, value in fresh
            ]
            # The newest are kept when there are too many.
            kept = [*record.suggestions, *added][-MAX_SUGGESTIONS:]
            self._store.put_suggestions(user_id, kept)
        except Exception:
            log.exception("recording profile suggestions failed")

    @staticmethod
    def _pending(record: LearnerRecord, suggestion_id: str) -> ProfileSuggestion:
        for suggestion in record.suggestions:
            if suggestion.id == suggestion_id:
                return suggestion
        raise NotFound(f"suggestion {suggestion_id} not found")
