"""A per-word reading is kept for short words only, and for a bounded number of them."""

from __future__ import annotations

from ion.domain.text import KEPT_WORD_CHARS, KEPT_WORDS, PerWord


def test_short_words_are_read_once_and_long_ones_every_time() -> None:
    reads: list[str] = []

    def read(word: str) -> int:
        reads.append(word)
        return len(word)

    per_word = PerWord(read)
    short, long = "a" * KEPT_WORD_CHARS, "b" * (KEPT_WORD_CHARS + 1)
    assert [per_word(short), per_word(short), per_word(long), per_word(long)] == [
        KEPT_WORD_CHARS,
        KEPT_WORD_CHARS,
        KEPT_WORD_CHARS + 1,
        KEPT_WORD_CHARS + 1,
    ]
    assert reads == [short, long, long]
    assert per_word.kept == 1


def test_no_more_than_the_bound_is_kept() -> None:
    per_word = PerWord(len)
    for n in range(KEPT_WORDS + 100):
        per_word(f"w{n}")
    assert per_word.kept == KEPT_WORDS
