"""Chat orchestration: load → analyse → route → prompt → (cache | LLM) → persist → publish.

Two behaviours worth knowing:
- **Retry completes an unanswered message.** When the LLM could not answer, the learner's
  message is stored `unanswered`. If the learner sends the same text again to the same
  conversation while that message is still the last one, the new turn answers THAT
  message (the answer is appended and the message flipped to `complete` in one atomic
  store write) instead of storing a duplicate.
- **First-turn response cache.** A turn with no prior history (a new conversation, or the
  retry of a conversation's only, unanswered message) may be answered from the
  ResponseCache: exact match on the user + normalised message + persona (and the language
  and resonance key that shape its prompt) + model + PROMPT_VERSION. The user is part of
  the key so that a hit never tells one learner what another one asked. A cached answer is
  stored as a normal assistant message (model = the model that produced it) with usage
  0/0, since no LLM call was made; replies and events say `cached: true`.
- **One turn at a time per conversation.** `prepare` claims the conversation's turn lease
  before it reads the history, so concurrent turns never all call the model: the losers
  get `TurnInProgress` (409, Retry-After) with no LLM call. The lease is released by the
  turn's save, or explicitly on every path that saves nothing; it expires if the
  instance dies.
- **Token budget.** With a `QuotaGuard`, `prepare` reserves the call's estimate on the
  daily budget; the answer settles it to the real usage (also when the save then fails:
  the tokens were spent), a failed call releases it, and a stream cut off after text
  keeps it (what was generated is unknown).
- **Time.** Messages' `created_at` increase with their sequence number even across
  instances whose clocks differ: a new message is never older than the one before it.
- **Delete is erase.** Deleting a conversation also erases every derived copy of its text:
  feedback (comments), Idempotency-Key records (their stored replies) and response-cache
  entries it produced, before the conversation itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ion.domain import events
from ion.domain.crisis import CrisisPolicy, load_policy
from ion.domain.models import (
    ChatReply,
    Conversation,
    Language,
    LlmChunk,
    LlmRequest,
    LlmResponse,
    Message,
    MessageStatus,
    Persona,
    ResonanceKey,
    RoutingDecision,
    Safety,
    Usage,
)
from ion.domain.orchestration import TurnPlan
from ion.domain.personas import PersonaCatalog
from ion.domain.prompts import PROMPT_VERSION, build_request
from ion.domain.routing import MessageRouter
from ion.domain.safety import CrisisDetector, SafetyAssessment, load_rules
from ion.errors import LlmError, NotFound, TurnInProgress
from ion.ports import (
    CachedAnswer,
    Clock,
    ConversationPage,
    ConversationStore,
    DisagreementStore,
    EventPublisher,
    FeedbackStore,
    IdempotencyStore,
    LanguageModel,
    ResponseCache,
)
from ion.services.judge import without_judge
from ion.services.memory import MemoryService
from ion.services.orchestration import TurnOrchestrator
from ion.services.profile import ProfileService
from ion.services.quota import QuotaGuard, Reservation, estimate_tokens
from ion.services.turn_hold import TurnHold

log = logging.getLogger(__name__)

TITLE_CHARS = 80
#: The `model` of a crisis answer given by the safe template (no model answered).
CRISIS_TEMPLATE_MODEL = "safety-template"
# What a learner is told to wait when another turn of the conversation is running.
TURN_RETRY_AFTER_S = 2
_TICK = timedelta(microseconds=1)


# Only answers that ended normally are worth replaying to someone else.
_CACHEABLE_FINISH = frozenset({"STOP"})


def new_id() -> str:
    return uuid.uuid4().hex


def normalise_for_cache(text: str) -> str:
    """NFC, casefold, whitespace runs collapsed to one space, stripped."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    return " ".join(folded.split())


def response_cache_key(
    *,
    user_id: str,
    message: str,
    persona_id: str,
    model: str,
    language: Language,
    resonance_key: ResonanceKey,
) -> str:
    """sha256 hex of everything that shapes a first-turn answer (see the module docstring)."""
    material = json.dumps(
        [
            PROMPT_VERSION,
            user_id,
            model,
            persona_id,
            language,
            resonance_key.as_string(),
            normalise_for_cache(message),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


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


class ChatService:
    def __init__(
        self,
        *,
        store: ConversationStore,
        llm: LanguageModel,
        router: MessageRouter,
        catalog: PersonaCatalog,
        events: EventPublisher,
        clock: Clock,
        history_window: int = 12,
        max_output_tokens: int = 1024,
        id_factory: Callable[[], str] = new_id,
        cache: ResponseCache | None = None,
        cache_ttl_s: int = 0,
        model_id: str | None = None,
        turn_lease_s: float = 150.0,
        detector: CrisisDetector | None = None,
        crisis: CrisisPolicy | None = None,
        crisis_template_only: bool = False,
        feedback: FeedbackStore | None = None,
        idempotency: IdempotencyStore | None = None,
        disagreements: DisagreementStore | None = None,
        memory: MemoryService | None = None,
        profiles: ProfileService | None = None,
    ) -> None:
        self._store = store
        self._llm = llm
        self._router = router
        self._catalog = catalog
        self._events = events
        self._clock = clock
        self._history_window = history_window
        self._max_output_tokens = max_output_tokens
        self._new_id = id_factory
        self._cache = cache if cache_ttl_s > 0 else None
        # Erasure reaches the cache even while it is turned off (entries from before).
        self._cache_store = cache
        self._feedback = feedback
        self._idempotency = idempotency
        self._disagreements = disagreements
        self._cache_ttl_s = cache_ttl_s
        # The configured primary model: part of the cache key, and only its answers are
        # cached (a fallback model's answer is not replayed for the primary's key).
        self._model_id = model_id or llm.name
        # Longer than any answer can take (the LLM's whole time budget), so only a holder
        # that died loses it.
        self._turn_lease = timedelta(seconds=turn_lease_s)
        # Every learner message is checked, before routing and before any cache.
        self._detector = detector or CrisisDetector(load_rules())
        self._crisis = crisis or load_policy()
        # True with the offline provider: a crisis is answered by the safe template.
        self._crisis_template_only = crisis_template_only
        self._orchestrator = TurnOrchestrator(catalog)
        # The rolling summary of what left the history window (None: the window alone).
        self._memory = memory
        # The learner's profile shapes prompts; the mentor proposes updates to it.
        self._profiles = profiles

    def _route_part(self, part: str) -> tuple[str, float]:
        # One part of a message for the duo rule: the local router, never the judge (no
        # LLM call), with no history (the part alone says which need it carries).
        decision = without_judge(self._router).route(part).decision
        return decision.primary, decision.confidence

    @property
    def detector(self) -> CrisisDetector:
        return self._detector

    @property
    def crisis_policy(self) -> CrisisPolicy:
        return self._crisis

    # --- conversations -------------------------------------------------------------

    def owned_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        """The conversation if it belongs to `user_id`; otherwise NotFound (never 403: no leak)."""
        conversation = self._store.get_conversation(conversation_id)
        if conversation is None or conversation.user_id != user_id:
            raise NotFound(f"conversation {conversation_id} not found")
        return conversation

    def conversation_messages(
        self, user_id: str, conversation_id: str
    ) -> tuple[Conversation, list[Message]]:
        conversation = self.owned_conversation(user_id, conversation_id)
        return conversation, self._store.list_messages(conversation_id)

    def list_conversations(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> ConversationPage:
        return self._store.list_conversations(user_id, limit=limit, cursor=cursor)

    def delete_conversation(self, user_id: str, conversation_id: str) -> dict[str, int]:
        """Erase the conversation and every derived copy of its text; how many of each.

        The copies go first and the conversation last: if anything fails in between, the
        conversation is still there and the learner can delete it again (never an orphan
        copy of erased text that nothing points to). Its summary lives with it."""
        self.owned_conversation(user_id, conversation_id)
        messages = self._store.list_messages(conversation_id)
        erased = {"messages": len(messages)}
        if self._feedback is not None:
            erased["feedback"] = self._feedback.delete_feedback_for_conversation(conversation_id)
        if self._idempotency is not None:
            erased["idempotency_records"] = self._idempotency.delete_idempotency_for_conversation(
                conversation_id
            )
        if self._cache_store is not None:
            erased["cached_answers"] = self._cache_store.delete_cached_answers_for_conversation(
                conversation_id
            )
        if self._disagreements is not None:
            texts = [m.text for m in messages if m.role == "user"]
            erased["routing_disagreements"] = self._disagreements.delete_disagreements_for_texts(
                texts
            )
        self._store.delete_conversation(conversation_id)
        return erased

    # --- a chat turn -----------------------------------------------------------------

    def prepare(
        self,
        user_id: str,
        text: str,
        conversation_id: str | None = None,
        *,
        budget: QuotaGuard | None = None,
    ) -> PreparedTurn:
        """Claim the conversation's turn, decide everything the LLM call needs, and reserve
        its tokens on `budget`. Raises NotFound, TurnInProgress (409, nothing claimed) or
        BudgetExhausted (429, nothing held). The returned turn holds the lease and the
        reservation until `answer`/`stream` end it, or `abandon` gives them back."""
        now = self._clock.now()
        if conversation_id is None:
            return self._prepare(user_id, text, None, now, None, budget)
        claim = self._store.claim_turn(
            conversation_id, user_id, now=now, until=now + self._turn_lease
        )
        if claim.conversation is None:
            raise NotFound(f"conversation {conversation_id} not found")
        if claim.lease is None:
            raise TurnInProgress(
                "another message in this conversation is still being answered; retry shortly",
                retry_after_s=TURN_RETRY_AFTER_S,
            )
        try:
            return self._prepare(user_id, text, claim.conversation, now, claim.lease, budget)
        except BaseException:
            TurnHold(self._store, conversation_id, claim.lease).release_lease()
            raise

    def _prepare(
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
                now = max(now, last.created_at + _TICK)  # never older than the last message
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
        if assessment.crisis:
            self._report_crisis(turn, language)
        return turn

    def _report_crisis(self, turn: PreparedTurn, language: Language) -> None:
        """A human follows up (docs/operations.md): an event and a WARNING, never the text."""
        log.warning(
            "crisis detected: conversation=%s user=%s language=%s score=%.2f reasons=%s",
            turn.conversation.id,
            events.hash_user_id(turn.user_id),
            language,
            turn.assessment.score,
            ",".join(turn.assessment.reasons),
            extra={"event": events.SAFETY_CRISIS_DETECTED},
        )
        envelope = events.crisis_detected(
            conversation_id=turn.conversation.id,
            user_id=turn.user_id,
            language=language,
            score=turn.assessment.score,
            occurred_at=self._clock.now(),
        )
        try:
            self._events.publish(events.SAFETY_CRISIS_DETECTED, envelope)
        except Exception:
            # The learner's safe answer comes first; the outbox keeps what it can.
            log.exception("publishing %s failed", events.SAFETY_CRISIS_DETECTED)

    def _safe_response(self, turn: PreparedTurn) -> LlmResponse:
        """The crisis answer: the model with the safe prompt, else the template; always with
        the resources. A crisis never fails and never leaves the learner without an answer."""
        language = turn.request.language
        if not self._crisis_template_only:
            try:
                response = self._llm.generate(turn.request)
            except LlmError as exc:
                log.warning("crisis answer from the template: the model failed (%s)", exc.code)
            else:
                if response.text.strip() and response.finish_reason in (None, "STOP"):
                    text = self._crisis.with_resources(response.text, language)
                    return response.model_copy(update={"text": text})
                log.warning(
                    "crisis answer from the template: the model ended with %s",
                    response.finish_reason,
                )
        return LlmResponse(
            text=self._crisis.template_answer(language),
            model=CRISIS_TEMPLATE_MODEL,
            usage=Usage(),
            finish_reason="STOP",
        )

    def abandon(self, turn: PreparedTurn) -> None:
        """Give back what the turn holds when it will not be answered (idempotent)."""
        turn.hold.close()

    def send(self, user_id: str, text: str, conversation_id: str | None = None) -> ChatReply:
        """Answer one learner message; on LLM failure the message is kept as unanswered."""
        return self.answer(self.prepare(user_id, text, conversation_id))

    def answer(self, turn: PreparedTurn) -> ChatReply:
        """Answer a prepared turn (from the cache or the LLM) and persist it."""
        started = time.perf_counter()
        try:
            if turn.cached is not None:
                return self._finish(turn, _cached_response(turn.cached), _elapsed_ms(started))
            if turn.crisis:
                return self._finish(turn, self._safe_response(turn), _elapsed_ms(started))
            if turn.plan.mode == "clarify":
                response = self._orchestrator.clarify_response(turn.plan, turn.request.language)
                return self._finish(turn, response, _elapsed_ms(started))
            try:
                response = self._llm.generate(turn.request)
            except LlmError as exc:
                turn.hold.release_reservation()
                self._save_unanswered(turn, "blocked" if exc.code == "blocked" else "unanswered")
                raise
            turn.hold.settle(response.usage)  # spent, whatever happens to the save
            reply = self._finish(turn, response, _elapsed_ms(started))
            self._remember(turn, response)
            return reply
        finally:
            turn.hold.close()

    def stream(
        self, turn: PreparedTurn, on_reply: Callable[[ChatReply], None] | None = None
    ) -> Iterator[LlmChunk]:
        """Stream the answer; the turn is persisted when the stream ends, however it ends.

        When the consumer stops early (client gone) the text generated so far is stored,
        marked `incomplete`, so nothing the learner may have seen is lost. `on_reply` is
        called with the stored reply before the final chunk is yielded.
        """
        started = time.perf_counter()
        parts: list[str] = []
        finished = False
        source: Iterator[LlmChunk]
        if turn.cached is not None or turn.crisis or turn.plan.mode == "clarify":
            # A crisis answer is composed whole (model, else template) so that it always
            # arrives complete and with its resources.
            if turn.cached is not None:
                response = _cached_response(turn.cached)
            elif turn.crisis:
                response = self._safe_response(turn)
            else:
                response = self._orchestrator.clarify_response(turn.plan, turn.request.language)
            source = iter([LlmChunk(text=response.text), LlmChunk(final=response)])
        else:
            source = self._llm.stream(turn.request)
        try:
            for chunk in source:
                if chunk.final is not None:
                    turn.hold.settle(chunk.final.usage)
                    reply = self._finish(turn, chunk.final, _elapsed_ms(started))
                    finished = True
                    if turn.cached is None and not turn.crisis and turn.plan.mode != "clarify":
                        self._remember(turn, chunk.final)
                    if on_reply is not None:
                        on_reply(reply)
                    yield chunk
                    return
                parts.append(chunk.text)
                yield chunk
        except LlmError as exc:
            finished = True
            if parts:
                turn.hold.keep_reservation()
                model = getattr(exc, "model", None) or self._model_id
                self._save_partial(turn, "".join(parts), _elapsed_ms(started), model)
            else:
                turn.hold.release_reservation()
                self._save_unanswered(turn, "blocked" if exc.code == "blocked" else "unanswered")
            raise
        finally:
            try:
                if not finished:
                    if parts:
                        turn.hold.keep_reservation()
                        self._save_partial(
                            turn, "".join(parts), _elapsed_ms(started), self._model_id
                        )
                    else:
                        turn.hold.release_reservation()
                        self._save_unanswered(turn, "unanswered")
            finally:
                turn.hold.close()

    def _remember(self, turn: PreparedTurn, response: LlmResponse) -> None:
        """Cache a first-turn answer from the primary model that ended normally."""
        if (
            self._cache is None
            or turn.cache_key is None
            or response.model != self._model_id
            or (
                response.finish_reason is not None
                and response.finish_reason not in _CACHEABLE_FINISH
            )
            or not response.text.strip()
        ):
            return
        now = self._clock.now()
        entry = CachedAnswer(
            text=response.text,
            model=response.model,
            finish_reason=response.finish_reason,
            created_at=now,
            expires_at=now + timedelta(seconds=self._cache_ttl_s),
            conversation_id=turn.conversation.id,
        )
        try:
            self._cache.put_cached_answer(turn.cache_key, entry)
        except Exception:
            log.exception("storing a response cache entry failed")

    # --- persistence -----------------------------------------------------------------

    def _after(self, turn: PreparedTurn) -> datetime:
        """Now, but never before the turn's user message (clocks of instances differ)."""
        return max(self._clock.now(), turn.user_message.created_at + _TICK)

    def _advance(self, turn: PreparedTurn, added: int) -> Conversation:
        return turn.conversation.model_copy(
            update={
                "updated_at": self._after(turn),
                "current_persona": turn.persona.id,
                "message_count": turn.conversation.message_count + added,
            }
        )

    def _save(
        self, turn: PreparedTurn, user_status: MessageStatus, assistant: Message | None
    ) -> None:
        """One atomic write: the user message (new, or updated for a retry) + the answer."""
        user_message = turn.user_message.model_copy(update={"status": user_status})
        appended = [assistant] if assistant is not None else []
        lease = turn.hold.lease
        if turn.retry_of is None:
            self._store.save_turn(
                self._advance(turn, 1 + len(appended)), [user_message, *appended], lease=lease
            )
        elif not appended and user_status == turn.retry_of.status:
            return  # a retry that failed the same way: the message is already stored so
        else:
            self._store.save_turn(
                self._advance(turn, len(appended)), appended, updated=[user_message], lease=lease
            )
        turn.hold.saved()

    def _save_unanswered(self, turn: PreparedTurn, status: MessageStatus) -> None:
        self._save(turn, status, None)

    def _save_partial(self, turn: PreparedTurn, text: str, latency_ms: int, model: str) -> None:
        assistant = Message(
            id=turn.assistant_message_id,
            conversation_id=turn.conversation.id,
            role="assistant",
            text=text,
            created_at=self._after(turn),
            persona=turn.persona.id,
            model=model,
            latency_ms=latency_ms,
            status="incomplete",
            mode=turn.plan.mode,
            personas=turn.plan.personas,
        )
        self._save(turn, "complete", assistant)

    def _finish(self, turn: PreparedTurn, response: LlmResponse, latency_ms: int) -> ChatReply:
        assistant = Message(
            id=turn.assistant_message_id,
            conversation_id=turn.conversation.id,
            role="assistant",
            text=response.text,
            created_at=self._after(turn),
            persona=turn.persona.id,
            routing=turn.routing,
            resonance_key=turn.resonance_key,
            model=response.model,
            usage=response.usage,
            latency_ms=latency_ms,
            finish_reason=response.finish_reason,
            crisis=turn.crisis,
            mode=turn.plan.mode,
            personas=turn.plan.personas,
            quick_replies=turn.plan.quick_replies,
        )
        self._save(turn, "complete", assistant)
        reply = ChatReply(
            conversation_id=turn.conversation.id,
            message_id=assistant.id,
            user_message_id=turn.user_message.id,
            reply=response.text,
            persona=turn.persona,
            routing=turn.routing,
            resonance_key=turn.resonance_key,
            model=response.model,
            usage=response.usage,
            latency_ms=latency_ms,
            finish_reason=response.finish_reason,
            cached=turn.cached is not None,
            safety=turn.safety,
            mode=turn.plan.mode,
            personas=turn.plan.personas,
            quick_replies=turn.plan.quick_replies,
        )
        self._publish_turn(turn, reply)
        if self._profiles is not None and not turn.crisis and turn.plan.mode != "clarify":
            self._profiles.propose(turn.user_id, turn.user_message.text, turn.conversation.id)
        if self._memory is not None:
            added = 1 if turn.retry_of is not None else 2
            self._memory.after_turn(
                turn.conversation.id,
                turn.conversation.message_count + added,
                turn.request.language,
            )
        return reply

    def _publish_turn(self, turn: PreparedTurn, reply: ChatReply) -> None:
        envelope = events.chat_turn_completed(
            conversation_id=reply.conversation_id,
            message_id=reply.message_id,
            user_id=turn.user_id,
            persona=reply.persona.id,
            resonance_key=reply.resonance_key,
            model=reply.model,
            usage=reply.usage,
            latency_ms=reply.latency_ms,
            cached=reply.cached,
            occurred_at=self._clock.now(),
        )
        try:
            self._events.publish(events.CHAT_TURN_COMPLETED, envelope)
        except Exception:
            # The reply is already stored; an event problem must never fail the learner's chat.
            log.exception("publishing %s failed", events.CHAT_TURN_COMPLETED)


def profile_digest(system_prompt: str) -> str:
    """A short digest of the turn's system prompt (the learner's profile shapes it)."""
    return "#" + hashlib.sha256(system_prompt.encode("utf-8")).hexdigest()[:16]


def _cached_response(entry: CachedAnswer) -> LlmResponse:
    # No LLM call was made for this answer, so it consumed no tokens.
    return LlmResponse(
        text=entry.text, model=entry.model, usage=Usage(), finish_reason=entry.finish_reason
    )


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
