"""Resonance analysis: language, tone, pace, intent, intensity, evidence; odd input."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ion.domain.models import Intent, Pace, Tone
from ion.domain.resonance import (
    FALSE_FRIENDS,
    FEATURE_NAMES,
    HEDGE_FACTOR,
    MENTION_FACTOR,
    Lexicon,
    LexiconSet,
    analyze,
    analyze_detailed,
    cue_context_factor,
    drop_false_friends,
    normalize,
    spelling_variants,
)
from ion.domain.resonance.reading_lexicons import (
    LexiconFileError,
    default_lexicons_path,
    load_reading_lexicons,
    reading_lexicons_from_yaml,
)
from ion.errors import ConfigurationError
from tests.support.paths import REPO


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("코딩 공부 하다가 번아웃 온 것 같아요", "ko"),
        ("git rebase랑 merge 차이 ㄹㅇ 모르겟음", "ko"),  # Korean with English terms
        ("JPA에서 N+1 문제가 왜 생겨?", "ko"),
        ("why does my python list change?", "en"),
        ("I love 김치 but my code is broken", "en"),  # English with one Korean word
        ("ㅠㅠ", "ko"),
        ("🎉🎉", "en"),
        ("", "en"),
    ],
)
def test_language(text: str, lang: str) -> None:
    assert analyze(text).language == lang


@pytest.mark.parametrize(
    ("text", "tone"),
    [
        ("이 버그 진짜 짜증나네 ㅡㅡ 왜 안 돼", Tone.FRUSTRATED),
        ("ugh I'm so frustrated, stuck on this for hours", Tone.FRUSTRATED),
        ("면접 내일인데 너무 불안하고 무서워요", Tone.ANXIOUS),
        ("I'm nervous and scared about my first review", Tone.ANXIOUS),
        ("I wonder how the event loop works, curious", Tone.CURIOUS),
        ("p95 latency is 1.2s vs 180ms p50, compare the metrics", Tone.ANALYTICAL),
        ("prod is down, urgent, need help asap", Tone.URGENT),
        ("헷갈려요 이해가 안 돼요", Tone.CONFUSED),
        ("ㅋㅋㅋㅋ 개발 밈 웃겨", Tone.PLAYFUL),
        ("our team and my teammates want to collaborate together", Tone.COLLABORATIVE),
        ("I wrote a function today.", Tone.CALM),
    ],
)
def test_tone(text: str, tone: Tone) -> None:
    assert analyze(text).key.tone == tone


@pytest.mark.parametrize(
    ("text", "pace"),
    [
        ("ㅋㅋㅋㅋ 드디어 첫 PR 머지됨!!!! 🎉🎉", Pace.BURST),
        ("GOT THE OFFER!!!", Pace.BURST),
        ("왜요?", Pace.BURST),
        (
            "So today I had my first 1:1 with my lead and she was nice about it but she "
            "mentioned my tickets take longer than expected and now I keep replaying it and "
            "thinking maybe they regret hiring me, and I try to work faster",
            Pace.CONTEMPLATIVE,
        ),
        (
            "ok so context: second year CS student, I know Java from classes, did a bit of "
            "React over summer, and I have an internship deadline in 3 weeks plus midterms, "
            "and I can't tell what to focus on",
            Pace.FLOWING,
        ),
        ("how do I structure folders in an Express app?", Pace.MEDIUM),
    ],
)
def test_pace(text: str, pace: Pace) -> None:
    assert analyze(text).key.pace == pace


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("need a weekly study plan for AWS, exam in 5 weeks", Intent.PLANNING),
        ("우선순위를 어떻게 정해야 할지 계획 좀", Intent.PLANNING),
        ("should I learn Docker? any advice?", Intent.SEEKING_ADVICE),
        ("can someone explain dependency injection like I'm five", Intent.LEARNING),
        ("클로저 개념 설명해주세요", Intent.LEARNING),
        ("is 800ms slow?", Intent.INQUIRY),
        ("I want to cry, I feel hopeless and worthless", Intent.EXPRESSIVE),
        ("I pushed a commit.", Intent.STATEMENT),
    ],
)
def test_intent(text: str, intent: Intent) -> None:
    assert analyze(text).key.intent == intent


def test_emotion_intensity_orders_messages() -> None:
    calm = analyze("how do I read a CSV file in pandas?").emotion_intensity
    mild = analyze("kinda annoyed, why does my list change?").emotion_intensity
    strong = analyze("I've been stuck for 6 hours, I want to quit, I feel worthless ㅠㅠ")
    assert calm == 0.0
    assert 0.0 < mild < 0.5
    assert strong.emotion_intensity > 0.8
    assert any("want to quit" in e for e in strong.evidence)


def test_evidence_explains_the_reading() -> None:
    a = analyze("API 평균 응답시간이 800ms인데 느린 편인가요?")
    assert any("tone" in e for e in a.evidence)
    assert any("pace" in e for e in a.evidence)
    assert any("intent" in e for e in a.evidence)
    assert any("measured value" in e for e in a.evidence)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\n\t  ",
        "🎉",
        "😭😭😭",
        "ㅠㅠ",
        "ㄹㅇ",
        "ㅋ",
        "?",
        "!!!!!!",
        "\x00\u200b",
        "a" * 100_000,
        "왜 " * 5_000,
        "`" * 50,
        "((((",
        "한" * 3000,
        "ＡＢＣ",
        "e\u0301",
    ],
)
def test_odd_input_never_crashes(text: str) -> None:
    a = analyze(text)
    assert 0.0 <= a.emotion_intensity <= 1.0
    assert a.language in ("ko", "en")
    assert a.key.as_string().count("-") == 2


def test_deterministic() -> None:
    text = "배포 직후 결제 페이지 500 에러!!! 롤백부터 해요 아니면 공지부터 해요??"
    assert analyze(text) == analyze(text)


def test_features_are_bounded_and_complete() -> None:
    _, feats = analyze_detailed("p95 1.2s vs p50 180ms, 62% coverage in 3 weeks `x()` ㅋㅋ 🎉!!")
    assert set(feats.values) == set(FEATURE_NAMES)
    assert all(0.0 <= v <= 1.0 for v in feats.values.values())
    assert feats.values["metrics"] > 0.5 and feats.values["timeframe"] == 1.0


def test_normalize_handles_nfd_hangul_and_quotes() -> None:
    import unicodedata

    nfd = unicodedata.normalize("NFD", "불안해요")
    assert normalize(nfd) == "불안해요"
    assert normalize("I’m   FINE") == "i'm fine"


def test_lexicon_boundaries() -> None:
    lex = Lexicon({"plan": 1.0, "cry$": 1.0, "불안": 1.0})

    def terms(text: str) -> set[str]:
        return {h.term for h in lex.scan(normalize(text))}

    assert terms("planning my week") == {"plan"}
    assert terms("an explanation") == set()  # Latin terms start on a word boundary
    assert terms("crypto") == set() and terms("I cry") == {"cry"}
    assert terms("너무불안해요") == {"불안"}  # Hangul stems match inside words


def test_lexicon_matches_informal_spellings() -> None:
    lex = Lexicon({"잠이 안": 1.0, "don't understand": 1.0, "i'm done": 1.0})

    def terms(text: str) -> set[str]:
        return {h.term for h in lex.scan(normalize(text))}

    assert terms("잠이안와요") == {"잠이 안"}  # Korean typed without spaces
    assert terms("i dont understand closures") == {"don't understand"}  # no apostrophe
    assert terms("im done") == {"i'm done"}
    # only endings whose bare form is not another common word are expanded
    assert spelling_variants("we'll") == ("we'll",)


def test_question_frame_tolerates_one_filler_word() -> None:
    lex = Lexicon({"where do i start": 1.0, "is this correct": 1.0})

    def terms(text: str) -> set[str]:
        return {h.term for h in lex.scan(normalize(text))}

    assert terms("where do I even start?") == {"where do i start"}
    assert terms("is this actually correct") == {"is this correct"}
    assert terms("where do i start") == {"where do i start"}
    # only one filler, only right after the frame, never a second filler
    assert terms("where do i even really start") == set()
    assert spelling_variants("why do i even") == ("why do i even",)


def test_korean_negated_cue_tolerates_a_degree_adverb() -> None:
    lex = Lexicon({"재미가 없": 1.0, "감이 안 잡": 1.0})

    def terms(text: str) -> set[str]:
        return {h.term for h in lex.scan(normalize(text))}

    assert terms("요즘 공부가 재미가 하나도 없어요") == {"재미가 없"}
    assert terms("감이 전혀 안 잡혀요") == {"감이 안 잡"}
    # one adverb, only before the negated predicate; other terms get no variants
    assert terms("재미가 하나도 진짜 없어요") == set()
    assert spelling_variants("재미없") == ("재미없",)


def test_listed_spelling_is_not_counted_twice() -> None:
    lex = Lexicon({"이 정도면": 1.0, "이정도면": 1.0})
    assert [h.term for h in lex.scan(normalize("이정도면 괜찮아요?"))] == ["이정도면"]


def test_anchored_hangul_term_starts_a_word() -> None:
    lex = Lexicon({"^로그": 1.0})

    def terms(text: str) -> set[str]:
        return {h.term for h in lex.scan(normalize(text))}

    assert terms("에러 로그를 봤어요") == {"로그"}  # particles may follow
    assert terms("블로그 글") == set() and terms("프로그램") == set()
    with pytest.raises(ValueError, match="only for Hangul"):
        Lexicon({"^log": 1.0})


def test_false_friends_cancel_the_cues_inside_them() -> None:
    lex = Lexicon({"불안": 1.0, "panic": 1.0}, owner="p")
    both = LexiconSet([lex, FALSE_FRIENDS])

    def terms(text: str) -> set[str]:
        return {h.term for h in drop_false_friends(both.scan(normalize(text)))}

    assert terms("서버가 불안정해요") == set()  # unstable, not anxious
    assert terms("kernel panic on boot") == set()
    assert terms("너무 불안해요") == {"불안"}
    assert analyze("서버가 불안정해서 재시작돼요").emotion_intensity == 0.0


# --- cue context: negation, mention, hedging ------------------------------------------------


def _factor(text: str, cue: str) -> float:
    norm = normalize(text)
    start = norm.index(cue)
    return cue_context_factor(norm, start, start + len(cue))


@pytest.mark.parametrize(
    ("text", "cue", "factor"),
    [
        ("I'm not anxious, just curious", "anxious", 0.0),
        ("I don't feel stressed at all", "stressed", 0.0),
        ("I can't sleep before the exam", "sleep", 1.0),  # inability is not negation
        ("I'm anxious about the exam", "anxious", 1.0),
        ("불안하진 않은데 궁금해요", "불안", 0.0),
        ("하나도 안 급해요", "급해", 0.0),
        ("의욕이 없어요", "의욕이", 1.0),  # lacking motivation is the feeling itself
        ("설명 들어도 모르겠어요", "설명", MENTION_FACTOR),
        ("설명해 주세요", "설명", 1.0),
        ("even after reading the explanation I'm lost", "explanation", MENTION_FACTOR),
        ("kinda annoying bug", "annoying", HEDGE_FACTOR),
        ("약간 짜증나요", "짜증", HEDGE_FACTOR),
        # an excluded request or quality is dropped like a negated one
        ("not looking for benchmarks, just the idea", "benchmarks", 0.0),
        ("how do i nudge people without being annoying", "annoying", 0.0),
        ("벤치마크 말고 개념만 알려줘", "벤치마크", 0.0),
        ("i dont need a plan", "plan", 0.0),
        # a judgement of one's own question is politeness, not a feeling
        ("바보 같은 질문인데 클로저가 뭐예요", "바보", 0.0),
        ("silly question: what is a closure", "silly", 0.0),
        ("나 진짜 바보 같아", "바보", 1.0),
    ],
)
def test_cue_context_factor(text: str, cue: str, factor: float) -> None:
    assert _factor(text, cue) == factor


def test_negated_feeling_does_not_raise_intensity() -> None:
    assert analyze("I'm not anxious about it").emotion_intensity == 0.0
    assert analyze("I'm anxious about it").emotion_intensity > 0.5


def test_acronyms_in_korean_prose_are_not_shouting() -> None:
    # "AWS SAA VPC NAT" are names; only Latin-script prose in capitals reads as shouting.
    calm = analyze("AWS SAA 공부 중인데 VPC랑 NAT 게이트웨이가 어떻게 연결돼요?")
    assert calm.key.tone != Tone.URGENT
    assert analyze("PROD IS DOWN AND NOBODY ANSWERS").key.tone == Tone.URGENT


# --- the reading lexicons file ----------------------------------------------------------------


def test_reading_lexicons_load_once_per_process() -> None:
    before = load_reading_lexicons.cache_info()
    lexicons = load_reading_lexicons()
    assert load_reading_lexicons() is lexicons
    assert FALSE_FRIENDS is lexicons.false_friends  # what the analysis and the router use
    for text in ("I'm so anxious ㅠㅠ", "계획 좀 세워주세요", "p95 is 1.2s"):
        analyze(text)
    after = load_reading_lexicons.cache_info()
    assert after.misses == before.misses  # analysing never parses the file again
    assert list(lexicons.tone) == [t for t in Tone if t != Tone.CALM]


def _lexicon_yaml(edit: Callable[[dict[str, Any]], object]) -> str:
    data = yaml.safe_load(default_lexicons_path().read_text(encoding="utf-8"))
    edit(data)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(tones=d.pop("tone")), r"unknown section\(s\) \['tones'\]"),
        (lambda d: d.pop("reflective"), r"missing section\(s\) \['reflective'\]"),
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d["tone"].update(angry={"grr": 1.0}), r"tone: unknown tone\(s\) \['angry'\]"),
        (lambda d: d["tone"].pop("playful"), r"the reading needs cues for \['playful'\]"),
        (lambda d: d["intent"].pop("planning"), r"needs cues for \['planning'\]"),
        (lambda d: d["emotion"].update(sad="a lot"), "emotion: weight of 'sad' is not a number"),
        (lambda d: d["emotion"].update(sad=11), "weight of 'sad' must be finite and within"),
        (lambda d: d["emotion"].update({True: 1.0}), "term True is not a string"),
        (lambda d: d["reflective"].update(Maybe=1.0), "reflective: 'Maybe' repeats 'maybe'"),
        (lambda d: d["tone"]["urgent"].update({"^asap now": 1.0}), "only for Hangul terms"),
        (lambda d: d.update(false_friends=[]), "false_friends: expected a non-empty list"),
        (lambda d: d.update(emotion={}), "emotion: expected a non-empty mapping"),
    ],
)
def test_invalid_reading_lexicons_name_the_file_and_the_entry(
    edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    with pytest.raises(LexiconFileError, match=message) as info:
        reading_lexicons_from_yaml(_lexicon_yaml(edit), source="lexicons.yaml")
    assert str(info.value).startswith("lexicons.yaml: invalid reading lexicons: ")
    assert isinstance(info.value, ConfigurationError)


def test_reading_lexicons_reject_bad_yaml_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(LexiconFileError, match=r"x\.yaml: invalid YAML"):
        reading_lexicons_from_yaml("tone: [", source="x.yaml")
    with pytest.raises(LexiconFileError, match="duplicate key 'sad'"):
        reading_lexicons_from_yaml("emotion:\n  sad: 1.0\n  sad: 0.5\n", source="x.yaml")
    with pytest.raises(LexiconFileError, match="expected a mapping with the sections"):
        reading_lexicons_from_yaml("- tone\n", source="x.yaml")
    missing = tmp_path / "absent.yaml"
    with pytest.raises(
        LexiconFileError, match=re.escape(f"cannot read reading lexicons {missing}")
    ):
        load_reading_lexicons(missing)


def test_a_valid_lexicon_file_loads_from_its_path(tmp_path: Path) -> None:
    path = tmp_path / "lexicons.yaml"
    path.write_text(_lexicon_yaml(lambda d: d["emotion"].update(grumpy=0.5)), encoding="utf-8")
    lexicons = load_reading_lexicons(path)
    assert "grumpy" in {t.display for t in lexicons.emotion.terms}
    assert load_reading_lexicons(path) is lexicons


# --- the reading of every routing message, as recorded ----------------------------------------


_ROUTING_DATA = (REPO / "data" / "routing" / "train", REPO / "data" / "routing" / "heldout")
_RECORDED_READINGS = Path(__file__).with_name("resonance_readings.json")


def _routing_messages() -> dict[str, str]:
    """Every learner message of the routing data, keyed `folder/file/id` (`#turn` for dialogues)."""
    messages: dict[str, str] = {}
    for path in sorted(p for folder in _ROUTING_DATA for p in folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            key = f"{path.parent.name}/{path.stem}/{record['id']}"
            if "turns" in record:
                messages.update({f"{key}#{i}": turn for i, turn in enumerate(record["turns"])})
            else:
                messages[key] = record["text"]
    return messages


def _reading(text: str) -> list[Any]:
    """Everything `analyze_detailed` returns, compactly: key, language, intensity, evidence,
    feature values (in `FEATURE_NAMES` order), word count and a digest of the normalised text."""
    analysis, features = analyze_detailed(text)
    assert features.evidence == analysis.evidence
    assert sorted(features.values) == sorted(FEATURE_NAMES)
    return [
        analysis.key.as_string(),
        analysis.language,
        analysis.emotion_intensity,
        list(analysis.evidence),
        [features.values[name] for name in FEATURE_NAMES],
        features.words,
        hashlib.sha256(features.text.encode()).hexdigest()[:16],
    ]


def _record_readings() -> None:
    readings = {key: _reading(text) for key, text in _routing_messages().items()}
    lines = [
        f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
        for k, v in readings.items()
    ]
    _RECORDED_READINGS.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


def test_every_routing_message_reads_as_recorded() -> None:
    # Recorded from the code before the reading was split into modules; a deliberate change
    # of the reading re-records it with `python tests/unit/test_resonance.py --record`.
    recorded = json.loads(_RECORDED_READINGS.read_text(encoding="utf-8"))
    messages = _routing_messages()
    assert sorted(messages) == sorted(recorded), "the routing data changed: re-record"
    changed = [key for key, text in messages.items() if _reading(text) != recorded[key]]
    assert changed == [], f"{len(changed)} message(s) read differently, e.g. {changed[:5]}"


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    _record_readings()
