"""Learner text: validation, the same for every way in (HTTP API, `ion chat`), and the
joining of short pieces when a message is read in parts."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from ion.errors import ValidationFailed

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
