"""Preparing a chat turn: everything decided before the model is called.

Reads first, at once where the store gains from it: the conversation (its history window
and summary, `read_turn`) and the learner's profile. Then, with no further read, the
message is checked for a crisis (first, before routing and before any cache), routed (or
planned as a duo or a clarifying question) and given its prompt. Then one write: the
conversation's turn lease is claimed while the conversation is still as it was read (else
it is read again), and the same write charges the request's rate limits and reserves its
tokens on the daily budget; a new conversation needs no lease, and its first-turn cache
lookup is made at the same time as that charge. `ChatService` answers and stores the turn.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
from ion.errors import NotFound, TurnInProgress
from ion.ports import (
    CachedAnswer,
    ConversationMemory,
    ConversationStore,
    LearnerRecord,
    ResponseCache,
    StoreAccess,
    TurnSnapshot,
)
from ion.services.judge import without_judge
from ion.services.memory import MemoryService
from ion.services.orchestration import TurnOrchestrator
from ion.services.profile import ProfileService
from ion.services.quota import Bucket, Charge, QuotaGuard, estimate_tokens
from ion.services.response_cache import profile_digest, response_cache_key
from ion.services.store_access import each
from ion.services.turn_hold import TurnHold

log = logging.getLogger(__name__)

TITLE_CHARS = 80
# A new message is never older than the one before it, even across instances' clocks.
TICK = timedelta(microseconds=1)
# What a learner is told to wait when another turn of the conversation is running.
TURN_RETRY_AFTER_S = 2


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
    # As the turn read them: the conversation's summary and the learner's record (None:
    # unknown, e.g. it could not be read).
    memory: ConversationMemory | None = None
    profile: LearnerRecord | None = None

    @property
    def crisis(self) -> bool:
        return self.safety.crisis


class TurnPreparer:
    """Decides a turn, claims it and charges it (see the module docstring)."""

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
        access: StoreAccess,
        turn_lease: timedelta,
    ) -> None:
        self._store = store
        self._access = access
        self._turn_lease = turn_lease
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

    def prepare(
        self,
        user_id: str,
        text: str,
        conversation_id: str | None,
        now: datetime,
        budget: QuotaGuard | None,
        buckets: Sequence[Bucket] = (),
        alongside: Callable[[], object] | None = None,
    ) -> PreparedTurn | None:
        """The turn, holding its conversation's lease and its token reservation; None when
        the conversation changed between its read and the claim (read again).

        Raises NotFound, TurnInProgress (409, nothing held), RateLimited or BudgetExhausted
        (429, nothing held). `buckets` are the request's other rate limits, charged with the
        turn's in the same write. `alongside` is a call of the caller's made at the same
        time as the turn's first reads (an Idempotency-Key claim): when it raises, its
        exception ends the turn before anything of the turn is written."""
        first: list[Callable[[], object]] = [alongside] if alongside is not None else []
        snapshot: TurnSnapshot | None = None
        if conversation_id is None:
            self._read_meaning(text)
            # A crisis answer uses no profile (the detector keeps this reading for later).
            in_crisis = self._detector.assess(text, []).crisis
            profiles = self._profiles if not in_crisis else None
            reads = [lambda: profiles.for_turn(user_id)] if profiles is not None else []
            made = each(self._access, [*first, *reads])
            profile = made[-1] if reads else None
        else:
            cid = conversation_id
            *_, snapshot, profile = self._access.at_once(
                *first,
                lambda: self._store.read_turn(
                    cid, user_id, now=now, history=max(self._history_window, 1)
                ),
                lambda: self._profiles.for_turn(user_id) if self._profiles else None,
            )
            if snapshot.conversation is None or snapshot.busy_until is not None:
                if budget is not None:
                    budget.apply(budget.charge(user_id, buckets))  # every request counts
                if snapshot.conversation is None:
                    raise NotFound(f"conversation {conversation_id} not found")
                raise TurnInProgress(
                    "another message in this conversation is still being answered; retry shortly",
                    retry_after_s=TURN_RETRY_AFTER_S,
                )
            # After the reads: a message to a missing or busy conversation costs no model
            # call, and the reads run before the model's work leaves the caches cold.
            self._read_meaning(text)
        turn = self._decide(user_id, text, snapshot, profile, now)
        if snapshot is None:
            return self._charged_new(turn, budget, buckets, now)
        return self._claimed(turn, snapshot, budget, buckets, now)

    def _read_meaning(self, text: str) -> None:
        """The message, a long one's sentence groups and the parts the duo rule may route,
        read in one model call: the detector, the router and the duo rule then find them in
        the embedder's cache."""
        self._router.prepare(
            [text, *self._detector.model_texts(text), *self._orchestrator.parts(text)]
        )

    @staticmethod
    def _charge(
        turn: PreparedTurn,
        budget: QuotaGuard | None,
        buckets: Sequence[Bucket],
        cached: CachedAnswer | None,
    ) -> Charge | None:
        if budget is None:
            return None
        if turn.crisis:
            # A learner in crisis is never turned away: only the request's other limits.
            return budget.charge(turn.user_id, buckets)
        # A cached answer or a clarifying question makes no LLM call: the budget is only
        # checked.
        no_call = cached is not None or turn.plan.mode == "clarify"
        tokens = 0 if no_call else estimate_tokens(turn.request)
        return budget.charge(turn.user_id, [*buckets, "chat"], tokens)

    def _charged_new(
        self,
        turn: PreparedTurn,
        budget: QuotaGuard | None,
        buckets: Sequence[Bucket],
        now: datetime,
    ) -> PreparedTurn:
        """A new conversation: nobody else can address it yet, so no lease; its cache lookup
        and its charge are made at once (a cached answer's reservation is given back when
        it is recorded)."""
        key = turn.cache_key
        charge = self._charge(turn, budget, buckets, None)
        cached, reservation = self._access.at_once(
            lambda: self._cached(key, now) if key is not None else None,
            lambda: budget.apply(charge) if budget is not None and charge is not None else None,
        )
        hold = TurnHold(self._store, turn.conversation.id, None, budget, reservation)
        return replace(turn, cached=cached, hold=hold)

    def _claimed(
        self,
        turn: PreparedTurn,
        snapshot: TurnSnapshot,
        budget: QuotaGuard | None,
        buckets: Sequence[Bucket],
        now: datetime,
    ) -> PreparedTurn | None:
        """An existing conversation: claimed while still as read, charged in the same write."""
        # Only the retry of a conversation's first message may be answered from the cache.
        cached = self._cached(turn.cache_key, now) if turn.cache_key is not None else None
        charge = self._charge(turn, budget, buckets, cached)
        cid = turn.conversation.id
        claim = self._store.claim_turn(
            cid,
            turn.user_id,
            now=now,
            until=now + self._turn_lease,
            expected=snapshot.version,
            counters=charge.changes if charge is not None else (),
        )
        if claim.lease is None:
            return None
        reservation = None
        if budget is not None and charge is not None:
            try:
                reservation = budget.admit_charge(charge, claim.counters)
            except BaseException:
                TurnHold(self._store, cid, claim.lease).release_lease()
                raise
        hold = TurnHold(self._store, cid, claim.lease, budget, reservation)
        return replace(turn, cached=cached, hold=hold)

    def _cached(self, key: str, now: datetime) -> CachedAnswer | None:
        try:
            return self._cache.get_cached_answer(key, now) if self._cache else None
        except Exception:
            # The cache is an optimisation: when it fails, ask the model.
            log.exception("response cache lookup failed")
            return None

    def _decide(
        self,
        user_id: str,
        text: str,
        snapshot: TurnSnapshot | None,
        profile: LearnerRecord | None,
        now: datetime,
    ) -> PreparedTurn:
        """Everything about the turn that needs no further read (see the module docstring)."""
        retry_of: Message | None = None
        if snapshot is not None and snapshot.conversation is not None:
            conversation = snapshot.conversation
            history = snapshot.history
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
        clarifying = self._orchestrator.clarify_context(history)
        # Crisis first: a crisis turn is the single safe answer, never a duo or a question.
        assessment = self._detector.assess(text, learner_history)
        router = without_judge(self._router) if assessment.crisis else self._router
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
        plan_text = text if clarifying is None else clarifying.routing_text(text)
        plan = self._orchestrator.plan(
            decision,
            # The clarify rule's cue strengths: the lexicon reading routing just made.
            strengths=router.cue_strengths(plan_text),
            route_part=self._router.route_alone,
            text=plan_text,
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
                moved_on=assessment.moved_on,
            )
        else:
            memory = snapshot.memory if snapshot is not None else None
            summary = (
                self._memory.summary_for(memory, conversation.message_count)
                if self._memory is not None
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
            note = self._profiles.prompt_note(profile, language) if self._profiles else ""
            if note:
                request = request.model_copy(update={"system_prompt": request.system_prompt + note})
        cache_key: str | None = None
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
            assessment=assessment,
            safety=safety,
            plan=plan,
            memory=snapshot.memory if snapshot is not None else None,
            profile=profile,
        )
        return turn
