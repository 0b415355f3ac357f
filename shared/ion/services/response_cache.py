"""The first-turn response cache's key and entries (see `ion.services.chat`).

Exact match on the user + normalised message + persona (and the language and resonance key
that shape its prompt) + model + PROMPT_VERSION. The user is part of the key so that a hit
never tells one learner what another one asked.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata

from ion.domain.models import Language, LlmResponse, ResonanceKey, Usage
from ion.domain.prompts import PROMPT_VERSION
from ion.ports import CachedAnswer

# Only answers that ended normally are worth replaying to someone else.
CACHEABLE_FINISH = frozenset({"STOP"})


def normalise_for_cache(text: str) -> str:
    """NFC, casefold, whitespace runs collapsed to one space, stripped."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    return " ".join(folded.split())


def response_cache_key(
    *,
    user_id: str,
    message: str,
    persona_id: str,
    model: str,
    language: Language,
    resonance_key: ResonanceKey,
) -> str:
    """sha256 hex of everything that shapes a first-turn answer (see the module docstring)."""
    material = json.dumps(
        [
            PROMPT_VERSION,
            user_id,
            model,
            persona_id,
            language,
            resonance_key.as_string(),
            normalise_for_cache(message),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def profile_digest(system_prompt: str) -> str:
    """A short digest of the turn's system prompt (the learner's profile shapes it)."""
    return "#" + hashlib.sha256(system_prompt.encode("utf-8")).hexdigest()[:16]


def cached_response(entry: CachedAnswer) -> LlmResponse:
    # No LLM call was made for this answer, so it consumed no tokens.
    return LlmResponse(
        text=entry.text, model=entry.model, usage=Usage(), finish_reason=entry.finish_reason
    )
