"""Time the crisis rules on ordinary messages and on the longest, most repetitive ones.

A regular expression whose repeated group can split the same words in many ways (for
example `(\\S+\\s*){0,12}`) backtracks exponentially when its first words match and its
last do not; the safety rules run on every learner message before anything else, so one
such pattern lets a single 4,000-character message hold a worker for minutes. This prints:
1. the rules' reading time per message on the crisis set's own texts (mean, p99, max);
2. the worst reading time over adversarial messages of the longest accepted length
   (`max_message_chars`): each sampled text with long runs of one word, of spaces, of
   syllables without spaces or of a repeated signal put before, inside and after it;
3. the patterns that were slowest on those messages.

    .venv/bin/python bench/crisis_rules_bench.py [--rules shared/ion/domain/safety.yaml] [--texts 60]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))

from ion.domain.safety import _fold, load_rules  # noqa: E402
from ion.settings import Settings  # noqa: E402

FILLS = (
    "가나다라마바사" * 600,
    "a" * 4000,
    "가 " * 2000,
    "ab " * 1400,
    " " * 4000,
    "ㅋ" * 4000,
    "죽고 싶다 " * 700,
    "적이 있" * 900,
    "I want to die " * 300,
    "팔을 " * 1400,
    "수면제약" * 1000,
    "죽고싶다" * 1000,
)


def seconds(call: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=None)
    parser.add_argument("--texts", type=int, default=60, help="texts sampled for (2) and (3)")
    args = parser.parse_args()
    rules = load_rules(args.rules)
    limit = Settings().max_message_chars
    texts = [
        json.loads(line)["text"]
        for path in sorted((ROOT / "data" / "safety").glob("crisis_s*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    random.seed(7)
    ordinary = [seconds(rules.read, text) for text in random.sample(texts, 2000)]
    print(f"rules: {args.rules or 'default'}; {len(rules.named())} patterns")
    print(
        f"ordinary messages (2000 of the crisis set): mean {statistics.mean(ordinary) * 1e6:.0f} µs,"
        f" p99 {statistics.quantiles(ordinary, n=100)[98] * 1e6:.0f} µs,"
        f" max {max(ordinary) * 1e3:.1f} ms"
    )
    messages = [
        placed[:limit]
        for text in random.sample(texts, args.texts)
        for fill in FILLS
        for placed in (
            f"{text} {fill}",
            f"{fill} {text}",
            f"{text[: len(text) // 2]}{fill}{text[len(text) // 2 :]}",
        )
    ]
    worst_read = max((seconds(rules.read, m), m[:40]) for m in messages)
    print(
        f"adversarial messages ({len(messages)}, up to {limit} characters):"
        f" worst reading {worst_read[0] * 1e3:.1f} ms (begins {worst_read[1]!r})"
    )
    folded = [_fold(m) for m in messages]  # the spelling the rules read
    slowest = sorted(
        (
            # The regex without its literal pre-check: the cost when its words are there.
            (max(seconds(gate.pattern.search, m) for m in folded), name, gate.pattern.pattern[:70])
            for name, gate in rules.named()
        ),
        reverse=True,
    )
    print("slowest patterns on those messages (worst single search):")
    for worst, name, source in slowest[:8]:
        print(f"  {worst * 1e3:8.2f} ms  {name:28} {source}")


if __name__ == "__main__":
    main()
