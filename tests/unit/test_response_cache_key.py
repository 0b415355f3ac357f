"""The response-cache key: what counts as "the same first message"."""

from __future__ import annotations

import unicodedata
from typing import TypedDict, cast

import pytest

from ion.domain.models import Intent, Language, Pace, ResonanceKey, Tone
from ion.services import response_cache as cache_module
from ion.services.response_cache import normalise_for_cache, response_cache_key

KEY = ResonanceKey(tone=Tone.CURIOUS, pace=Pace.MEDIUM, intent=Intent.INQUIRY)


class KeyParts(TypedDict):
    user_id: str
    message: str
    persona_id: str
    model: str
    language: Language
    resonance_key: ResonanceKey


BASE: KeyParts = {
    "user_id": "alice",
    "message": "How do decorators work?",
    "persona_id": "elro",
    "model": "gemini-2.5-flash",
    "language": "en",
    "resonance_key": KEY,
}


def test_normalisation_nfc_casefold_whitespace() -> None:
    assert normalise_for_cache("  How DO\tdecorators\n\n work?\u3000") == "how do decorators work?"
    assert normalise_for_cache("Straße") == normalise_for_cache("STRASSE")
    decomposed = unicodedata.normalize("NFD", "면접이 떨려요")
    assert decomposed != "면접이 떨려요"
    assert normalise_for_cache(decomposed) == normalise_for_cache("면접이 떨려요")


def test_equivalent_messages_share_a_key() -> None:
    spaced: KeyParts = {**BASE, "message": " how do  DECORATORS work? "}
    same = response_cache_key(**spaced)
    assert same == response_cache_key(**BASE)
    assert len(same) == 64 and int(same, 16) >= 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", "bob"),
        ("message", "How do generators work?"),
        ("persona_id", "riri"),
        ("model", "gemini-2.5-pro"),
        ("language", "ko"),
        ("resonance_key", KEY.model_copy(update={"tone": Tone.ANXIOUS})),
    ],
)
def test_each_part_changes_the_key(field: str, value: object) -> None:
    changed = cast(KeyParts, {**BASE, field: value})  # one part, named by the parameter
    assert response_cache_key(**changed) != response_cache_key(**BASE)


def test_prompt_version_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = response_cache_key(**BASE)
    monkeypatch.setattr(cache_module, "PROMPT_VERSION", "999")
    assert response_cache_key(**BASE) != before
