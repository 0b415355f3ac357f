"""The `offline` language model: deterministic, persona-styled answers from templates.

It lets the product run end to end with no credentials. Every answer is reported as
model `offline` so nobody mistakes it for a real model's output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ion.domain.models import LlmChunk, LlmRequest, LlmResponse, Usage

MODEL_NAME = "offline"

# Openers, bodies and closers per persona and language. Unknown personas (a fifth one
# added to the catalog) fall back to the `_default` style, so no code change is needed.
_TEMPLATES: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    "lua": {
        "en": (
            (
                "I hear you, and what you're feeling makes sense.",
                "Thank you for telling me this; it takes courage.",
                "That sounds like a lot to carry right now.",
            ),
            (
                "About \u201c{topic}\u201d: being stuck or unsure is part of learning, not proof "
                "that you can't do it. Let's take one small step you can win today.",
                "When it comes to \u201c{topic}\u201d, you have already come further than it feels. "
                "Let's name one thing that went right before we tackle the rest.",
            ),
            (
                "How are you feeling about trying that?",
                "What would make the next hour a little lighter for you?",
            ),
        ),
        "ko": (
            (
                "그 마음 충분히 이해해요. 그렇게 느끼는 게 당연해요.",
                "이야기해 줘서 고마워요. 털어놓는 것도 용기예요.",
                "지금 많이 버거웠겠어요.",
            ),
            (
                "\u201c{topic}\u201d 때문에 막히는 건 배우는 과정의 일부예요. 못 해서가 아니에요. "
                "오늘 해낼 수 있는 아주 작은 한 걸음부터 같이 정해 봐요.",
                "\u201c{topic}\u201d에 대해서는 생각보다 훨씬 멀리 와 있어요. "
                "먼저 잘된 것 하나를 떠올려 보고 나머지를 봐요.",
            ),
            ("그렇게 해 보는 건 어때요?", "다음 한 시간을 조금 가볍게 만들려면 뭐가 필요할까요?"),
        ),
    },
    "elro": {
        "en": (
            (
                "Let's look at the structure of this.",
                "Good question; let's build it up from the core idea.",
            ),
            (
                "For \u201c{topic}\u201d: first pin down the responsibility of each part, then how data "
                "flows between them, then where it can fail. Sketch those three layers before "
                "touching the code.",
                "With \u201c{topic}\u201d, start from the underlying concept, then the interface it "
                "exposes, then the implementation trade-offs.",
            ),
            (
                "Which part would you like me to draw out in more detail?",
                "Want a small code example of that shape?",
            ),
        ),
        "ko": (
            ("구조부터 같이 살펴볼게요.", "좋은 질문이에요. 핵심 개념부터 쌓아 올려 볼게요."),
            (
                "\u201c{topic}\u201d는 먼저 각 부분의 책임을 정하고, 그다음 데이터가 어떻게 "
                "흐르는지, 마지막으로 어디서 실패할 수 있는지 순서로 보면 돼요.",
                "\u201c{topic}\u201d는 바탕 개념 → 밖으로 드러나는 인터페이스 → 구현의 트레이드오프 "
                "순서로 이해하면 정리가 잘 돼요.",
            ),
            ("어느 부분을 더 자세히 그려 볼까요?", "작은 코드 예시로 보여 드릴까요?"),
        ),
    },
    "riri": {
        "en": (
            ("Let's check this against evidence.", "Numbers first, then conclusions."),
            (
                "For \u201c{topic}\u201d: define the metric, get a baseline, measure several runs, and "
                "compare the spread, not just the average. Then decide what 'good enough' means "
                "for your goal.",
                "On \u201c{topic}\u201d: write down what you expect, measure under the same "
                "conditions, and look at the distribution before trusting a single figure.",
            ),
            ("What numbers do you have so far?", "Can you share the raw measurements?"),
        ),
        "ko": (
            ("근거부터 확인해 볼게요.", "숫자 먼저 보고 결론은 그다음에 내요."),
            (
                "\u201c{topic}\u201d는 지표를 정하고, 기준값을 잡고, 여러 번 측정해서 평균만이 아니라 "
                "분포를 비교해 보세요. 그다음 목표에 맞는 '충분함'의 기준을 정하면 돼요.",
                "\u201c{topic}\u201d는 예상값을 먼저 적고, 같은 조건에서 측정한 뒤, 숫자 하나보다 "
                "분포를 보고 판단하는 게 안전해요.",
            ),
            ("지금까지 어떤 수치가 있나요?", "측정한 원본 데이터를 보여 줄 수 있어요?"),
        ),
    },
    "nana": {
        "en": (
            ("Let's get this organised.", "Okay, let's turn this into a plan."),
            (
                "For \u201c{topic}\u201d: 1) list everything on your plate, 2) mark what has a hard "
                "deadline, 3) pick the one thing that unblocks the most, and 4) tell the people "
                "who depend on you what comes when.",
                "With \u201c{topic}\u201d: triage first (what is on fire?), then order the rest by "
                "impact and deadline, and put the next step in your calendar today.",
            ),
            (
                "What is the first step you can take in the next 30 minutes?",
                "Who else needs to know about this plan?",
            ),
        ),
        "ko": (
            ("같이 정리해 봐요.", "좋아요, 계획으로 바꿔 볼게요."),
            (
                "\u201c{topic}\u201d는 1) 할 일을 모두 적고, 2) 마감이 정해진 것을 표시하고, "
                "3) 가장 많은 걸 풀어 주는 하나를 고르고, 4) 관련된 사람들에게 일정을 공유하세요.",
                "\u201c{topic}\u201d는 먼저 급한 불부터 끄고, 나머지는 영향과 마감 순으로 줄 세운 뒤, "
                "다음 단계를 오늘 일정에 넣어 두세요.",
            ),
            ("30분 안에 할 수 있는 첫 단계는 뭘까요?", "이 계획을 누구와 공유해야 할까요?"),
        ),
    },
    "_default": {
        "en": (
            ("Let's work through this together.",),
            (
                "About \u201c{topic}\u201d: let's break it into smaller pieces and take them one at a "
                "time.",
            ),
            ("Where would you like to start?",),
        ),
        "ko": (
            ("같이 하나씩 풀어 봐요.",),
            ("\u201c{topic}\u201d는 작은 조각으로 나눠서 하나씩 보면 돼요.",),
            ("어디서부터 시작해 볼까요?",),
        ),
    },
}


def estimate_tokens(text: str) -> int:
    """A rough, deterministic token count (about 4 characters a token, at least one a word)."""
    if not text:
        return 0
    return max(len(text.split()), (len(text) + 3) // 4)


def _topic(message: str, limit: int = 48) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "\u2026"


class OfflineLanguageModel:
    """Template answers keyed by persona and language; same input, same answer."""

    @property
    def name(self) -> str:
        return MODEL_NAME

    def generate(self, request: LlmRequest) -> LlmResponse:
        persona = _TEMPLATES.get(request.persona_id, _TEMPLATES["_default"])
        openers, bodies, closers = persona[request.language]
        # Pick variants from a hash of the input: varied across messages, stable per message.
        digest = hashlib.sha256(
            f"{request.persona_id}\x00{request.message}\x00{len(request.history)}".encode()
        ).digest()
        text = " ".join(
            (
                openers[digest[0] % len(openers)],
                bodies[digest[1] % len(bodies)].format(topic=_topic(request.message)),
                closers[digest[2] % len(closers)],
            )
        )
        if request.duo_persona_id is not None:
            # A duo: the second persona's short part, after its marker.
            second = _TEMPLATES.get(request.duo_persona_id, _TEMPLATES["_default"])
            second_bodies = second[request.language][1]
            part = second_bodies[digest[3] % len(second_bodies)].format(
                topic=_topic(request.message)
            )
            text = f"{text}\n\n{request.duo_marker or ''} {part}".replace("\n\n ", "\n\n")
        prompt_text = (
            request.system_prompt + request.message + "".join(turn.text for turn in request.history)
        )
        usage = Usage(
            input_tokens=estimate_tokens(prompt_text), output_tokens=estimate_tokens(text)
        )
        return LlmResponse(text=text, model=MODEL_NAME, usage=usage, finish_reason="STOP")

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        response = self.generate(request)
        words = response.text.split(" ")
        for index, word in enumerate(words):
            yield LlmChunk(text=word if index == 0 else " " + word)
        yield LlmChunk(final=response)

    def readiness(self) -> tuple[bool, str]:
        return True, "offline templates (no credentials needed)"
