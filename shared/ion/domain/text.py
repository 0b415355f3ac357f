"""Learner text: validation, the same for every way in (HTTP API, `ion chat`), the
joining of short pieces when a message is read in parts, and what is kept per word."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Generic, TypeVar

from ion.errors import ValidationFailed

T = TypeVar("T")

# C0/C1 control characters except tab, newline and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(value: str, *, field_name: str, max_chars: int) -> str:
    """NFC-normalise, unify line endings (CRLF/CR → LF), and REJECT (never strip) other
    control characters and lone surrogates; the length limit counts code points after that.
    """
    if _SURROGATE.search(value):
        raise ValidationFailed(f"{field_name} contains unpaired UTF-16 surrogates")
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    if _CONTROL.search(value):
        raise ValidationFailed(
            f"{field_name} contains control characters (only tab and newline are allowed)"
        )
    if not any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in value):
        raise ValidationFailed(f"{field_name} must not be empty (or only invisible characters)")
    if len(value) > max_chars:
        raise ValidationFailed(f"{field_name} is longer than the limit of {max_chars} characters")
    return value


def join_short_pieces(pieces: Iterable[str], min_chars: int) -> list[str]:
    """Non-empty `pieces` (stripped), each shorter than `min_chars` joined to the next one
    and a short last one to the one before: "Anyway." or "솔직히" says nothing alone."""
    joined: list[str] = []
    pending = ""
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        pending = f"{pending} {piece}" if pending else piece
        if len(pending) >= min_chars:
            joined.append(pending)
            pending = ""
    if pending:
        if joined:
            joined[-1] = f"{joined[-1]} {pending}"
        else:
            joined.append(pending)
    return joined


#: How many words a per-word cache keeps, and the longest word it keeps: an entry grows
#: with its word, and a message may be one word of thousands of characters.
KEPT_WORDS = 2048
KEPT_WORD_CHARS = 24


class PerWord(Generic[T]):
    """A reading of single words, kept for the last `KEPT_WORDS` words of up to
    `KEPT_WORD_CHARS` characters (learners' words repeat from message to message, and a
    message's parts repeat its words); a longer word is read each time."""

    __slots__ = ("_kept", "_read")

    def __init__(self, read: Callable[[str], T]) -> None:
        self._read = read
        self._kept = lru_cache(maxsize=KEPT_WORDS)(read)

    def __call__(self, word: str) -> T:
        return self._kept(word) if len(word) <= KEPT_WORD_CHARS else self._read(word)

    @property
    def kept(self) -> int:
        """How many words are kept now."""
        return self._kept.cache_info().currsize
