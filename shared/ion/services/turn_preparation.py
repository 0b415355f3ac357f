"""Preparing a chat turn: everything decided before the model is called.

The learner's message is checked for a crisis (first, before routing and before any cache),
charged on the rate limit, routed (or planned as a duo or a clarifying question), given its
prompt (history window, conversation summary, learner profile), looked up in the first-turn
response cache, and its tokens reserved on the daily budget. `ChatService` claims the
conversation's turn lease before, and answers and stores the turn after.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ion.domain.crisis import CrisisPolicy
from ion.domain.models import (
    Conversation,
    LlmRequest,
    Message,
    Persona,
    ResonanceKey,
    RoutingDecision,
    Safety,
)
from ion.domain.orchestration import TurnPlan
from ion.domain.personas import PersonaCatalog
from ion.domain.prompts import build_request
from ion.domain.routing import MessageRouter
from ion.domain.safety import CrisisDetector, SafetyAssessment
from ion.ports import CachedAnswer, ConversationStore, ResponseCache
from ion.services.judge import without_judge
from ion.services.memory import MemoryService
from ion.services.orchestration import TurnOrchestrator
from ion.services.profile import ProfileService
from ion.services.quota import QuotaGuard, Reservation, estimate_tokens
from ion.services.response_cache import profile_digest, response_cache_key
from ion.services.turn_hold import TurnHold

log = logging.getLogger(__name__)

TITLE_CHARS = 80
# A new message is never older than the one before it, even across instances' clocks.
TICK = timedelta(microseconds=1)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class PreparedTurn:
    """Everything decided before the LLM is called (what a stream's `meta` event shows)."""

    user_id: str
    conversation: Conversation
    is_new: bool
    user_message: Message
    assistant_message_id: str
    persona: Persona
    routing: RoutingDecision
    resonance_key: ResonanceKey
    request: LlmRequest
    # The stored `unanswered` user message this turn answers (a retry), if any.
    retry_of: Message | None = None
    # Response cache: the key when this turn may use the cache, and the hit if any.
    cache_key: str | None = None
    cached: CachedAnswer | None = None
    # The turn lease and token reservation, given back when the turn ends (`abandon`).
    hold: TurnHold = field(default_factory=TurnHold)
    # The crisis check of the learner's message (a crisis turn gets the safe answer).
    assessment: SafetyAssessment = field(default_factory=lambda: SafetyAssessment(False, 0.0))
    safety: Safety = field(default_factory=Safety)
    # Single, duo or clarify (a clarifying question makes no LLM call).
    plan: TurnPlan = field(default_factory=lambda: TurnPlan("single", ()))

    @property
    def crisis(self) -> bool:
        return self.safety.crisis


class TurnPreparer:
    """Decides a turn (see the module docstring); reads the store, writes nothing."""

    def __init__(
        self,
        *,
        store: ConversationStore,
        router: MessageRouter,
        catalog: PersonaCatalog,
        orchestrator: TurnOrchestrator,
        detector: CrisisDetector,
        crisis: CrisisPolicy,
        history_window: int,
        max_output_tokens: int,
        id_factory: Callable[[], str],
        cache: ResponseCache | None,
        model_id: str,
        memory: MemoryService | None,
        profiles: ProfileService | None,
    ) -> None:
        self._store = store
        self._router = router
        self._catalog = catalog
        self._orchestrator = orchestrator
        self._detector = detector
        self._crisis = crisis
        self._history_window = history_window
        self._max_output_tokens = max_output_tokens
        self._new_id = id_factory
        # Only when the cache is on (ION_CACHE_TTL_S > 0).
        self._cache = cache
        self._model_id = model_id
        self._memory = memory
        self._profiles = profiles

    def _route_part(self, part: str) -> tuple[str, float]:
        # One part of a message for the duo rule: the local router, never the judge (no
        # LLM call), with no history (the part alone says which need it carries).
        decision = without_judge(self._router).route(part).decision
        return decision.primary, decision.confidence

    def prepare(
        self,
        user_id: str,
        text: str,
        claimed: Conversation | None,
        now: datetime,
        lease: str | None,
        budget: QuotaGuard | None,
    ) -> PreparedTurn:
        retry_of: Message | None = None
        if claimed is not None:
            conversation = claimed
            history = self._store.recent_messages(conversation.id, max(self._history_window, 1))
            is_new = False
            last = history[-1] if history else None
            if last is not None:
                now = max(now, last.created_at + TICK)  # never older than the last message
            if (
                last is not None
                and last.role == "user"
                and last.status == "unanswered"
                and last.text == text
            ):
                retry_of = last
                history = history[:-1]
        else:
            conversation = Conversation(
                id=self._new_id(),
                user_id=user_id,
                created_at=now,
                updated_at=now,
                title=" ".join(text.split())[:TITLE_CHARS],
            )
            history = []
            is_new = True

        learner_history = [m.text for m in history if m.role == "user"]
        # Crisis first: a crisis turn is the single safe answer, never a duo or a question.
        assessment = self._detector.assess(text, learner_history)
        if budget is not None and not assessment.crisis:
            # A learner in crisis is never turned away; everyone else spends their allowance.
            budget.admit(user_id, "chat")
        router = without_judge(self._router) if assessment.crisis else self._router
        clarifying = self._orchestrator.clarify_context(history)
        if clarifying is not None:
            # An answer to a clarifying question is routed with the message it clarifies.
            routed = router.route(clarifying.routing_text(text))
        else:
            routed = router.route(
                text, history=learner_history, current_persona=conversation.current_persona
            )
        decision = routed.decision
        if clarifying is not None and not assessment.crisis:
            decision = self._orchestrator.answer_routing(decision, clarifying, text)
        language = routed.analysis.language
        safety = Safety()
        if assessment.crisis:
            crisis_persona = self._catalog.require(self._crisis.persona)
            decision = self._crisis.override(decision, crisis_persona.name)
            safety = Safety(crisis=True, resources=self._crisis.resources_for(language))
        plan = self._orchestrator.plan(
            decision,
            route_part=self._route_part,
            text=text if clarifying is None else clarifying.routing_text(text),
            language=language,
            first_message=not learner_history,
            after_clarify=clarifying is not None,
            crisis=assessment.crisis,
        )
        persona = self._catalog.require(decision.primary)
        key = routed.analysis.key
        if retry_of is not None:
            user_message = retry_of.model_copy(
                update={"persona": persona.id, "routing": decision, "resonance_key": key}
            )
        else:
            user_message = Message(
                id=self._new_id(),
                conversation_id=conversation.id,
                role="user",
                text=text,
                created_at=now,
                persona=persona.id,
                routing=decision,
                resonance_key=key,
            )
        if assessment.crisis:
            request = self._crisis.request(
                language=language,
                history=history,
                message=text,
                history_window=self._history_window,
                max_output_tokens=self._max_output_tokens,
            )
        else:
            summary = (
                self._memory.summary_for(conversation.id, conversation.message_count)
                if self._memory is not None and not is_new
                else ""
            )
            request = build_request(
                persona=persona,
                language=language,
                resonance_key=key,
                history=history,
                message=text,
                history_window=self._history_window,
                max_output_tokens=self._max_output_tokens,
                summary=summary,
            )
            request = self._orchestrator.duo(request, plan, language)
            note = self._profiles.prompt_note(user_id, language) if self._profiles else ""
            if note:
                request = request.model_copy(update={"system_prompt": request.system_prompt + note})
        cache_key: str | None = None
        cached: CachedAnswer | None = None
        first_turn = is_new or (retry_of is not None and conversation.message_count == 1)
        # A crisis turn is never served from the cache nor stored in it; a clarifying
        # question needs no cache.
        if (
            self._cache is not None
            and first_turn
            and not assessment.crisis
            and plan.mode != "clarify"
        ):
            cache_key = response_cache_key(
                user_id=user_id,
                message=text,
                # The profile shapes the prompt: part of what the answer depends on.
                persona_id="+".join(plan.personas) + profile_digest(request.system_prompt),
                model=self._model_id,
                language=routed.analysis.language,
                resonance_key=key,
            )
            try:
                cached = self._cache.get_cached_answer(cache_key, now)
            except Exception:
                # The cache is an optimisation: when it fails, ask the model.
                log.exception("response cache lookup failed")
        reservation: Reservation | None = None
        if budget is not None and not assessment.crisis:
            # A cached answer or a clarifying question makes no LLM call: it is only
            # checked against the budget.
            no_call = cached is not None or plan.mode == "clarify"
            reservation = budget.reserve(user_id, 0 if no_call else estimate_tokens(request))
        turn = PreparedTurn(
            user_id=user_id,
            conversation=conversation,
            is_new=is_new,
            user_message=user_message,
            assistant_message_id=self._new_id(),
            persona=persona,
            routing=decision,
            resonance_key=key,
            request=request,
            retry_of=retry_of,
            cache_key=cache_key,
            cached=cached,
            hold=TurnHold(self._store, conversation.id, lease, budget, reservation),
            assessment=assessment,
            safety=safety,
            plan=plan,
        )
        return turn
