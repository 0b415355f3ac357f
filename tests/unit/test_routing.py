"""Router: scores, charter rules, multi-turn follow-ups, adjustments, genericity."""

from __future__ import annotations

from pathlib import Path

import pytest

from ion.domain.models import ResonanceAnalysis, RoutingDecision
from ion.domain.personas import default_catalog_path, load_catalog
from ion.domain.resonance import TextFeatures, analyze_detailed
from ion.domain.routing import ADJUSTMENT_BOUND, Router, RouteResult
from ion.services.evaluation import evaluate, load_labelled_set
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_catalog())


def primary(router: Router, text: str, **kw: object) -> str:
    return router.route(text, **kw).decision.primary  # type: ignore[arg-type]


# --- charter categories and mixed-message rules (messages are not from the dev set) ---------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # lua: feelings, celebrations, play
        ("I'm so anxious about my Kubernetes exam next week", "lua"),
        ("요즘 개발 공부가 너무 버겁고 자신감이 바닥이에요", "lua"),
        ("I shipped my first feature to production today!!! 🎉", "lua"),
        ("give me a goofy name for my todo app lol", "lua"),
        ("Stuck on the same segfault for 6 hours, I want to quit", "lua"),  # rule 2, strong
        # elro: understanding & design
        ("how do Kubernetes readiness probes work?", "elro"),
        ("this bug is annoying, why does my function return None?", "elro"),  # rule 2, mild
        ("옵저버 패턴을 언제 쓰는지 설명해주세요", "elro"),
        (
            "prod API throws 'connection reset by peer' since 5 minutes ago, what causes that?",
            "elro",
        ),  # rule 4: urgent single bug
        # riri: measure / compare / verify
        ("can you compare the runtime of my two sorting functions? 120ms vs 95ms", "riri"),
        ("이 함수가 모든 경계값에서 맞게 동작하는지 검증해 주세요", "riri"),  # rule 3 on code
        ("our test coverage is 45%, is that too low for a startup?", "riri"),
        # nana: organising
        ("prod is down, who do I call and what do I do first?", "nana"),  # rule 4
        ("다음 달 정보처리기사 시험이랑 프로젝트 마감 일정 좀 같이 짜주세요", "nana"),
        ("how do I tell my teammate his PRs are always late without sounding rude", "nana"),
    ],
)
def test_charter_examples(router: Router, text: str, expected: str) -> None:
    result = router.route(text)
    assert result.decision.primary == expected, result.decision.reason


def test_every_persona_is_reachable(router: Router) -> None:
    reached = {
        primary(router, t)
        for t in (
            "I feel like a fraud and I'm scared they'll find out",
            "explain how a hash map handles collisions",
            "benchmark: 420 req/s vs 3100 req/s, which is faster in practice?",
            "need a 6-week study roadmap, where do I start?",
        )
    }
    assert reached == set(router.catalog.ids)


def test_scores_cover_all_personas_and_are_bounded(router: Router) -> None:
    for text in ("", "안녕", "why?", "I got the job!!!", "p99 800ms ok?", "plan my week"):
        d = router.route(text).decision
        assert set(d.scores) == set(router.catalog.ids)
        assert all(0.0 <= s <= 1.0 for s in d.scores.values())
        assert abs(sum(d.scores.values()) - 1.0) < 0.01
        assert 0.0 <= d.confidence <= 1.0
        assert d.primary == max(d.scores, key=lambda k: d.scores[k])
        assert d.secondary is not None and d.secondary != d.primary
        assert d.reason


def test_reason_names_persona_and_cues(router: Router) -> None:
    d = router.route("I've been stuck for 6 hours on this bug, I want to quit").decision
    assert d.primary == "lua"
    assert d.reason.startswith("Lua: feeling cues (")
    assert "want to quit" in d.reason
    assert "secondary → Elro" in d.reason


def test_a_text_routed_alone_gets_its_routing_decision(router: Router) -> None:
    # The duo rule's parts are routed without an explanation: the same primary and
    # confidence as a full routing pass.
    texts = [
        "I'm so anxious about my Kubernetes exam next week",
        "how do Kubernetes readiness probes work?",
        "can you compare the runtime of my two sorting functions? 120ms vs 95ms",
        "다음 달 정보처리기사 시험이랑 프로젝트 마감 일정 좀 같이 짜주세요",
        "the capstone is due Friday",
        "",
        "ㅋㅋㅋ",
    ]
    for text in texts:
        decision = router.route(text).decision
        assert router.route_alone(text) == (decision.primary, decision.confidence), text


def test_result_types(router: Router) -> None:
    r = router.route("hello")
    assert isinstance(r, RouteResult) and isinstance(r.decision, RoutingDecision)
    with pytest.raises(AttributeError):
        r.decision = r.decision  # type: ignore[misc]


def test_deterministic(router: Router) -> None:
    msgs = ["JPA N+1 왜 생겨?", "I got the offer!!!", "스케줄 짜줘", "p95 1.2s?", "ㅋㅋ"]
    first = [router.route(m).decision for m in msgs]
    fresh = Router(load_catalog())
    assert [fresh.route(m).decision for m in msgs] == first
    assert [router.route(m).decision for m in msgs] == first


def test_a_text_is_read_once_and_context_never_sticks_to_its_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ion.domain.routing as routing

    reads: list[str] = []

    def counting(text: str) -> tuple[ResonanceAnalysis, TextFeatures]:
        reads.append(text)
        return analyze_detailed(text)

    monkeypatch.setattr(routing, "analyze_detailed", counting)
    router = Router(load_catalog())
    text = "그럼 이건 어떻게 돼요?"
    alone = router.route(text).decision
    in_context = router.route(text, current_persona="riri").decision
    strengths = router.cue_strengths(text)
    again = router.route(text).decision
    assert reads == [text]
    # The continuity bonus of the second call did not leak into the cached reading.
    assert again == alone
    assert in_context != alone
    assert strengths == Router(load_catalog()).cue_strengths(text)


@pytest.mark.parametrize(
    "text", ["", "   ", "🎉", "ㅠㅠ", "ㄹㅇ", "?", "x" * 200_000, "\x00", "왜 " * 10_000]
)
def test_weird_input(router: Router, text: str) -> None:
    d = router.route(text).decision
    assert d.primary in router.catalog
    assert all(0.0 <= s <= 1.0 for s in d.scores.values())


# --- conversation context ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("follow_up", "current"),
    [
        ("그럼 그건요?", "elro"),
        ("and the second one?", "riri"),
        ("왜요?", "lua"),
        ("more detail please", "nana"),
        ("그건 어떻게 해요?", "riri"),
        ("what about the other one?", "lua"),
        ("예시 좀 더 보여주세요", "elro"),
        ("", "nana"),
    ],
)
def test_short_follow_up_stays_with_current_persona(
    router: Router, follow_up: str, current: str
) -> None:
    d = router.route(follow_up, current_persona=current).decision
    assert d.primary == current
    assert "follow-up stays with" in d.reason


def test_follow_up_uses_history_when_current_persona_unknown(router: Router) -> None:
    assert primary(router, "그건 어떻게 해요?", history=["JPA N+1 문제가 왜 생겨요?"]) == "elro"
    assert primary(router, "and the second one?", history=["I'm so anxious about my exam"]) == "lua"
    history = ["my API p95 is 1.8s and p50 is 200ms", "what does that gap tell me?"]
    assert primary(router, "and p99?", history=history) == "riri"
    # an unknown current persona is ignored, history still applies
    assert primary(router, "why?", history=["explain closures"], current_persona="ghost") == "elro"


@pytest.mark.parametrize(
    ("message", "current", "expected"),
    [
        ("I'm so stressed I want to cry", "elro", "lua"),
        ("ok, how do I plan this over 2 weeks?", "elro", "nana"),
        ("can you measure which one is faster? 40ms vs 55ms", "elro", "riri"),
        ("솔직히 이것도 이해 못하는 제가 너무 한심해요. 그만두고 싶어요", "elro", "lua"),
        ("그럼 이걸 언제까지 어떤 순서로 공부할지 2주 계획 짜주세요", "elro", "nana"),
        ("ok but how does the B-tree actually work?", "nana", "elro"),
    ],
)
def test_clear_new_need_overrides_follow_up(
    router: Router, message: str, current: str, expected: str
) -> None:
    d = router.route(message, current_persona=current).decision
    assert d.primary == expected, d.reason


def test_standalone_follow_up_without_context_is_still_routed(router: Router) -> None:
    assert primary(router, "and the second one?") in router.catalog


# --- adjustments -----------------------------------------------------------------------------


def test_adjustments_are_clamped_and_only_tip_close_calls(router: Router) -> None:
    clear = "I want to quit, I feel worthless and hopeless"
    base = router.route(clear).decision
    pushed = router.route(clear, adjustments={"lua": -50.0, "nana": 50.0}).decision
    assert pushed.primary == "lua"  # a clear decision is not overridden
    assert pushed.scores["lua"] == pytest.approx(max(0.0, base.scores["lua"] - 0.1), abs=1e-3)
    assert pushed.scores["nana"] <= base.scores["nana"] + ADJUSTMENT_BOUND + 1e-3
    assert "feedback nudges" in pushed.reason

    close = "hmm"  # nothing decisive: a nudge may tip it
    plain = router.route(close).decision
    target = next(p for p in router.catalog.ids if p != plain.primary)
    tipped = router.route(close, adjustments={target: 0.1, plain.primary: -0.1}).decision
    assert tipped.primary == target


def test_adjustments_ignore_unknown_ids_and_non_finite(router: Router) -> None:
    base = router.route("hello").decision
    d = router.route("hello", adjustments={"ghost": 1.0, "lua": float("nan")}).decision
    assert d.scores == base.scores


# --- genericity --------------------------------------------------------------------------------

FIFTH = """
  - id: seki
    name: Seki
    name_ko: 세키
    role: security reviewer
    style: careful and concrete
    system_prompt:
      ko: 당신은 보안 리뷰어 세키입니다. 취약점을 찾아 설명하세요.
      en: You are Seki, a security reviewer. Find and explain vulnerabilities.
    traits:
      cue_label: security cues
      tone_affinity: {anxious: 0.2}
      keywords:
        - weight: 3.0
          terms: [보안, 취약점, 해킹, security, vulnerab, xss, csrf, sql injection, exploit]
      patterns:
        - weight: 1.5
          regex: ['\\bcve-\\d{4}']
"""


def test_fifth_persona_from_yaml_needs_no_code_change(tmp_path: Path) -> None:
    text = default_catalog_path().read_text(encoding="utf-8").rstrip("\n") + "\n" + FIFTH
    f = tmp_path / "five.yaml"
    f.write_text(text, encoding="utf-8")
    catalog = load_catalog(f)
    assert catalog.ids == ["lua", "elro", "riri", "nana", "seki"]
    five = Router(catalog)
    d = five.route("is my login form vulnerable to XSS or SQL injection?").decision
    assert d.primary == "seki" and set(d.scores) == set(catalog.ids)
    assert d.reason.startswith("Seki: security cues")
    assert five.route("로그인 API 보안 취약점 점검 좀 해주세요").decision.primary == "seki"
    assert five.route("does CVE-2024-3094 affect me?").decision.primary == "seki"
    # the original four still route as before
    assert five.route("I want to quit, I feel worthless").decision.primary == "lua"
    assert five.route("need a 6-week study roadmap").decision.primary == "nana"


# --- generalisation, negation, calibration -----------------------------

DATA = REPO / "data" / "routing" / "train"
HELDOUT = sorted(DATA.glob("legacy_heldout_*.jsonl"))
INDEPENDENT = sorted(DATA.glob("legacy_independent_*.jsonl"))


def test_heldout_batches_accuracy(router: Router) -> None:
    # Fresh batches written to the charter (see docs/routing.md for their untuned history),
    # including the independent batches A (100), B (60), C (100), D (60), E (100), F (100).
    items = [it for path in [*HELDOUT, *INDEPENDENT] for it in load_labelled_set(path)]
    assert len(HELDOUT) >= 4 and len(INDEPENDENT) >= 6 and len(items) >= 720
    assert evaluate(router, items).accuracy >= 0.85


@pytest.mark.parametrize("path", INDEPENDENT, ids=lambda p: p.stem)
def test_independent_batch_accuracy(router: Router, path: Path) -> None:
    # Each independent batch on its own: neither may hide behind the others.
    assert evaluate(router, load_labelled_set(path)).accuracy >= 0.85


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # negated / hedged feelings do not make a message emotional
        ("I'm not anxious or anything, just curious how the Python GIL works", "elro"),
        ("불안하진 않은데 파이썬 GIL이 어떻게 동작하는지 궁금해요", "elro"),
        ("kinda annoying: why does my async function return a Promise?", "elro"),
        # a cue that is only mentioned is not the request ("설명 들어도" = already tried)
        ("설명을 몇 번 들어도 모르겠어요... 저 진짜 바보인가 봐요 ㅠ", "lua"),
        # verification question form is riri even on code (charter rule 3)
        ("is my implementation of this binary search correct?", "riri"),
        # a system failing is not the learner failing
        ("payments failing in prod, stack trace says pool timeout, why?", "elro"),
        (
            "i keep failing every interview and i'm starting to think i'm not cut out for this",
            "lua",
        ),
        # an excluded request does not count ("not looking for benchmarks")
        ("hash map vs tree map, when does each make sense? not looking for benchmarks", "elro"),
        # a self-deprecating question preface is not self-judgement
        ("멍청한 질문인데 git pull이랑 fetch 차이가 뭐예요", "elro"),
        # a generic "doesn't work" about people is not a bug
        ("팀원 한 명이 연락이 잘 안 돼요. 어떻게 하죠?", "nana"),
        # "does this ... correctly?" verifies (riri); "why does ... not work correctly" debugs
        ("does this query return the newest order per customer correctly?", "riri"),
        ("why does my loop not work correctly", "elro"),
        # a filler inside a question frame still matches ("where do i *even* start")
        ("where do I even start with machine learning?", "nana"),
        # naming an architecture style is a design question, in Korean spelling too
        ("모놀리스로 갈지 마이크로서비스로 갈지 고민돼요. 팀은 4명이에요", "elro"),
        # a field name ("data science") is not a request for data
        ("just got accepted into a data science masters!!", "lua"),
        # not seeing how the parts fit together asks for a mental model (elro)
        ("쿠버네티스에서 서비스랑 인그레스가 어떻게 연결되는 건지 그림이 안 그려져요", "elro"),
        ("can't wrap my head around how redux and react context fit together", "elro"),
        # does a test verify anything at all: evidence (riri), even with a laugh
        ("is this test even testing anything? it passes with the body deleted lol", "riri"),
        ("이 테스트 함수 내용 지워도 통과하는데 의미 있는 테스트인가요?", "riri"),
        # a before→after change in words ("went from 4 min to 11 min")
        ("our deploy time went from 4 min to 11 min, which step got slower?", "riri"),
        # indirect discouragement: peers ahead, deadpan self-pity, a negated cue with an adverb
        ("everyone in my study group is way ahead of me. idk why i bother", "lua"),
        ("fine. another failed deploy. love that for me", "lua"),
        ("요즘 공부가 재미가 하나도 없어요. 그냥 의무감으로 해요", "lua"),
        # "why can't I <operation>" is a technical question, not self-doubt
        ("why can't I call an async function from a sync one in python", "elro"),
        # splitting a code unit is design (elro); splitting the work is planning (nana)
        ("이 컴포넌트가 너무 커졌는데 어떻게 분리해야 할까요", "elro"),
        ("we need to split the work on this module between 3 people", "nana"),
        # how far to mock is test design (elro)
        ("단위 테스트에서 목 객체를 어디까지 써야 하나요", "elro"),
        # a series of bare numbers with a noise-or-signal question (riri)
        ("timings 210 205 980 212 208 — is the 980 a fluke?", "riri"),
        # a bare call for help: find out what is going on first (nana)
        ("help", "nana"),
        ("살려주세요", "nana"),
    ],
)
def test_negation_mention_and_question_form(router: Router, text: str, expected: str) -> None:
    d = router.route(text).decision
    assert d.primary == expected, d.reason


def test_emotional_turn_overrides_follow_up(router: Router) -> None:
    d = router.route(
        "설명 들어도 모르겠어요... 저 진짜 바보인가 봐요 ㅠ",
        history=["리액트 useEffect 의존성 배열이 왜 필요해요?"],
    ).decision
    assert d.primary == "lua", d.reason


def test_confidence_is_lower_for_mixed_messages(router: Router) -> None:
    clear = router.route("explain how a hash map handles collisions internally").decision
    mixed = router.route(
        "I'm so anxious about my Kubernetes exam tomorrow, how do readiness probes work?"
    ).decision
    assert clear.confidence > mixed.confidence
    assert mixed.confidence < 0.8
