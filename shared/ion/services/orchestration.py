"""The turn orchestrator: single, duo or clarify for one chat turn (rule: domain/orchestration).

- A **duo** is one LLM call with a composed prompt: the primary persona's system prompt
  asks for a short, marked part in the secondary's voice at the end. It streams like any
  answer and costs one call (bench/orchestration_bench.py measures it against two calls).
- A **clarifying question** makes no LLM call: the question and its quick replies are
  catalog data in the message's language, stored as the assistant's message.
- The learner's **answer to a clarifying question** is routed with that context: a quick
  reply (its text or its number) picks the persona it stands for; free text is routed
  together with the first message it clarifies. It is never clarified again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ion.domain.models import Language, LlmRequest, LlmResponse, Message, RoutingDecision, Usage
from ion.domain.orchestration import PartRouter, TurnPlan, chosen_reply, plan_turn
from ion.domain.personas import PersonaCatalog
from ion.domain.prompts import duo_request

#: The `model` of a clarifying question (catalog text: no model answered).
CLARIFY_MODEL = "clarify-template"


@dataclass(frozen=True, slots=True)
class ClarifyContext:
    """The clarifying question the learner is answering, and the message it clarified."""

    question: Message
    clarified: str

    def routing_text(self, answer: str) -> str:
        """What the answer is routed as: the first message and the answer together."""
        return f"{self.clarified}\n{answer}"

    def chosen_persona(self, answer: str) -> str | None:
        index = chosen_reply(answer, self.question.quick_replies)
        if index is None or index >= len(self.question.personas):
            return None
        return self.question.personas[index]


class TurnOrchestrator:
    """Decides and shapes single, duo and clarify turns over a persona catalog."""

    def __init__(self, catalog: PersonaCatalog) -> None:
        self._catalog = catalog
        self._policy = catalog.orchestration

    @property
    def enabled(self) -> bool:
        return self._policy is not None

    def clarify_context(self, history: Sequence[Message]) -> ClarifyContext | None:
        """The open clarifying question when it is the conversation's last answer."""
        if not history or history[-1].role != "assistant" or history[-1].mode != "clarify":
            return None
        earlier = [m.text for m in history[:-1] if m.role == "user"]
        return ClarifyContext(question=history[-1], clarified=earlier[-1] if earlier else "")

    def answer_routing(
        self, decision: RoutingDecision, context: ClarifyContext, answer: str
    ) -> RoutingDecision:
        """`decision` for an answer to a clarifying question: a chosen quick reply decides."""
        chosen = context.chosen_persona(answer)
        if chosen is None or chosen not in self._catalog:
            return decision
        runner_up = next(
            (
                pid
                for pid in sorted(decision.scores, key=lambda p: -decision.scores[p])
                if pid != chosen
            ),
            None,
        )
        return decision.model_copy(
            update={
                "primary": chosen,
                "secondary": runner_up,
                "confidence": 1.0,
                "reason": f"the learner chose {self._catalog.require(chosen).name}"
                " from the clarifying question",
            }
        )

    def parts(self, text: str) -> list[str]:
        """The parts of `text` the duo rule routes one by one (none when it is off)."""
        return self._policy.duo.parts(text) if self._policy is not None else []

    def plan(
        self,
        decision: RoutingDecision,
        *,
        strengths: Mapping[str, float],
        route_part: PartRouter,
        text: str,
        language: Language,
        first_message: bool,
        after_clarify: bool,
        crisis: bool,
    ) -> TurnPlan:
        if self._policy is None:
            return TurnPlan("single", (decision.primary,))
        return plan_turn(
            self._policy,
            decision=decision,
            strengths=strengths,
            route_part=route_part,
            text=text,
            language=language,
            first_message=first_message,
            after_clarify=after_clarify,
            crisis=crisis,
        )

    def duo(self, base: LlmRequest, plan: TurnPlan, language: Language) -> LlmRequest:
        """The primary's request, composed to end with the secondary's marked part."""
        if plan.secondary is None or self._policy is None:
            return base
        rule = self._policy.duo
        return duo_request(
            base,
            secondary=self._catalog.require(plan.secondary),
            language=language,
            marker_template=rule.marker[language],
            instruction_template=rule.instruction[language],
        )

    def clarify_response(self, plan: TurnPlan, language: Language) -> LlmResponse:
        """The clarifying question with its choices numbered (plain clients see them too)."""
        question = self._policy.clarify.question[language] if self._policy else ""
        lines = [question, *(f"{i}. {reply}" for i, reply in enumerate(plan.quick_replies, 1))]
        return LlmResponse(
            text="\n".join(lines), model=CLARIFY_MODEL, usage=Usage(), finish_reason="STOP"
        )
