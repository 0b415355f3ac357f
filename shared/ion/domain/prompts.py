"""Prompt building: persona system prompt in the learner's language plus a history window."""

from __future__ import annotations

from collections.abc import Sequence

from ion.domain.models import Language, LlmRequest, LlmTurn, Message, Persona, ResonanceKey

# Part of the response-cache key: bump it whenever prompt construction changes meaning.
PROMPT_VERSION = "1"

_RESONANCE_NOTE: dict[Language, str] = {
    "en": (
        "\n\nThe learner's current resonance: tone={tone}, pace={pace}, intent={intent}. "
        "Match their pace and answer in English."
    ),
    "ko": (
        "\n\n학습자의 현재 공명 상태: 톤={tone}, 속도={pace}, 의도={intent}. "
        "학습자의 속도에 맞추고 한국어로 답하세요."
    ),
}


_MEMORY_NOTE: dict[Language, str] = {
    "en": "\n\nEarlier in this conversation (a summary of what the learner said):\n{summary}",
    "ko": "\n\n이 대화의 앞부분 (학습자가 한 말의 요약):\n{summary}",
}


def build_request(
    *,
    persona: Persona,
    language: Language,
    resonance_key: ResonanceKey,
    history: Sequence[Message],
    message: str,
    history_window: int,
    max_output_tokens: int,
    summary: str = "",
) -> LlmRequest:
    """The LLM request for one turn; only answered messages go into the history window.
    `summary` (the conversation's memory of what came before the window) joins the
    system prompt."""
    system_prompt = persona.system_prompt[language] + _RESONANCE_NOTE[language].format(
        tone=resonance_key.tone.value,
        pace=resonance_key.pace.value,
        intent=resonance_key.intent.value,
    )
    if summary.strip():
        system_prompt += _MEMORY_NOTE[language].format(summary=summary.strip())
    return LlmRequest(
        persona_id=persona.id,
        system_prompt=system_prompt,
        history=history_turns(history, history_window),
        message=message,
        language=language,
        temperature=persona.temperature,
        max_output_tokens=max_output_tokens,
    )


def duo_request(
    base: LlmRequest,
    *,
    secondary: Persona,
    language: Language,
    marker_template: str,
    instruction_template: str,
) -> LlmRequest:
    """`base` (the primary's request) asked to end with a short part in `secondary`'s voice,
    introduced by the marker: one call, so history and system prompt are sent once."""
    name = secondary.name_ko if language == "ko" else secondary.name
    marker = marker_template.format(name=name)
    instruction = instruction_template.format(
        name=name, role=secondary.role, style=secondary.style, marker=marker
    )
    return base.model_copy(
        update={
            "system_prompt": base.system_prompt + instruction.rstrip(),
            "duo_persona_id": secondary.id,
            "duo_marker": marker,
        }
    )


def history_turns(history: Sequence[Message], window: int) -> list[LlmTurn]:
    """The last `window` answered messages, as the model sees them."""
    answered = [m for m in history if m.status == "complete"]
    return [LlmTurn(role=m.role, text=m.text) for m in (answered[-window:] if window > 0 else [])]
