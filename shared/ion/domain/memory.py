"""The deterministic, extractive conversation summary (the offline provider's memory).

What the learner said about themselves and their work is what later turns need (name,
project, stack, deadlines, numbers), so sentences of learner messages are scored:
first-person statements, digits and a useful length score higher; greetings and thanks
score nothing. The summary keeps the best sentences within a character budget, in the
order they were said, and rolls: the previous summary's lines compete with the new ones.
Same input, same summary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["SUMMARY_LINE_PREFIX", "extractive_summary"]

SUMMARY_LINE_PREFIX = "- "
_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？]*")
_FIRST_PERSON = re.compile(
    r"(?i)\b(?:i|i'm|im|i've|ive|i'd|my|me|mine|we|our|us)\b|저는|제가|저의|제\s|나는|내가|내\s|저희|우리"
)
_DIGIT = re.compile(r"\d")
_MIN_CHARS, _MAX_SENTENCE_CHARS = 12, 240


def _score(sentence: str) -> float:
    score = 0.0
    if _FIRST_PERSON.search(sentence):
        score += 2.0
    if _DIGIT.search(sentence):
        score += 1.0
    if len(sentence) >= 30:
        score += 0.5
    return score


def _sentences(text: str) -> list[str]:
    found = []
    for match in _SENTENCE.finditer(text):
        sentence = " ".join(match.group(0).split())
        if len(sentence) >= _MIN_CHARS:
            found.append(sentence[:_MAX_SENTENCE_CHARS])
    return found


def extractive_summary(previous: str, learner_texts: Sequence[str], *, max_chars: int) -> str:
    """The rolling summary: `previous` (its lines) and the sentences of `learner_texts`
    (oldest first), the best-scoring kept within `max_chars`, in their original order."""
    candidates: list[str] = [
        line[len(SUMMARY_LINE_PREFIX) :]
        for line in previous.splitlines()
        if line.startswith(SUMMARY_LINE_PREFIX)
    ]
    for text in learner_texts:
        candidates.extend(_sentences(text))
    seen: set[str] = set()
    unique = []
    for sentence in candidates:
        if sentence.casefold() not in seen:
            seen.add(sentence.casefold())
            unique.append(sentence)
    # Best first; among equals the earlier one (what was said first sets the context).
    ranked = sorted(range(len(unique)), key=lambda i: (-_score(unique[i]), i))
    kept: set[int] = set()
    used = 0
    for index in ranked:
        if _score(unique[index]) <= 0:
            break
        cost = len(SUMMARY_LINE_PREFIX) + len(unique[index]) + 1
        if used + cost > max_chars:
            continue
        kept.add(index)
        used += cost
    return "\n".join(SUMMARY_LINE_PREFIX + unique[i] for i in sorted(kept))
