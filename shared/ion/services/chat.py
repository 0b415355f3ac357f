"""Chat orchestration: load → analyse → route → prompt → (cache | LLM) → persist → publish.

The turn is prepared in `turn_preparation` (safety, routing, prompt, cache lookup), answered
here (model, cache, safe template or clarifying question; whole or streamed), and recorded
in `turn_recording` (store, cache, events).

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
  on the conversation exactly as it read it (history included; else it reads again), so
  concurrent turns never all call the model: the losers get `TurnInProgress` (409,
  Retry-After) with no LLM call. The lease is released by the
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

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

from ion.domain import events
from ion.domain.crisis import CrisisPolicy, load_policy
from ion.domain.models import (
    ChatReply,
    Conversation,
    Language,
    LlmChunk,
    LlmResponse,
    Message,
    Usage,
)
from ion.domain.personas import PersonaCatalog
from ion.domain.routing import MessageRouter
from ion.domain.safety import CrisisDetector, load_rules
from ion.errors import LlmError, NotFound, TurnInProgress
from ion.ports import (
    Clock,
    ConversationPage,
    ConversationStore,
    DisagreementStore,
    EventPublisher,
    FeedbackStore,
    IdempotencyStore,
    LanguageModel,
    ResponseCache,
    StoreAccess,
)
from ion.services.memory import MemoryService
from ion.services.orchestration import TurnOrchestrator
from ion.services.profile import ProfileService
from ion.services.quota import Bucket, QuotaGuard
from ion.services.response_cache import cached_response
from ion.services.store_access import SerialAccess
from ion.services.turn_preparation import (
    TURN_RETRY_AFTER_S,
    PreparedTurn,
    TurnPreparer,
    new_id,
)
from ion.services.turn_recording import TurnRecorder

log = logging.getLogger(__name__)

#: The `model` of a crisis answer given by the safe template (no model answered).
CRISIS_TEMPLATE_MODEL = "safety-template"
# How often a turn reads its conversation again when it changed before the claim.
_CLAIM_ATTEMPTS = 3


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
        access: StoreAccess | None = None,
    ) -> None:
        self._store = store
        # One call after another, each write its own, unless the backend says otherwise.
        self._access = access or SerialAccess()
        self._llm = llm
        self._clock = clock
        self._events = events
        cache_on = cache if cache_ttl_s > 0 else None
        # Erasure reaches the cache even while it is turned off (entries from before).
        self._cache_store = cache
        self._feedback = feedback
        self._idempotency = idempotency
        self._disagreements = disagreements
        # The configured primary model: part of the cache key, and only its answers are
        # cached (a fallback model's answer is not replayed for the primary's key).
        self._model_id = model_id or llm.name
        # Every learner message is checked, before routing and before any cache.
        self._detector = detector or CrisisDetector(load_rules())
        self._crisis = crisis or load_policy()
        # True with the offline provider: a crisis is answered by the safe template.
        self._crisis_template_only = crisis_template_only
        self._orchestrator = TurnOrchestrator(catalog)
        self._preparer = TurnPreparer(
            store=store,
            router=router,
            catalog=catalog,
            orchestrator=self._orchestrator,
            detector=self._detector,
            crisis=self._crisis,
            history_window=history_window,
            max_output_tokens=max_output_tokens,
            id_factory=id_factory,
            cache=cache_on,
            model_id=self._model_id,
            # The rolling summary of what left the history window (None: the window alone).
            memory=memory,
            # The learner's profile shapes prompts; the mentor proposes updates to it.
            profiles=profiles,
            access=self._access,
            # Longer than any answer can take (the LLM's whole time budget), so only a
            # holder that died loses it.
            turn_lease=timedelta(seconds=turn_lease_s),
        )
        self._recorder = TurnRecorder(
            store=store,
            events=events,
            clock=clock,
            cache=cache_on,
            cache_ttl_s=cache_ttl_s,
            model_id=self._model_id,
            memory=memory,
            profiles=profiles,
            access=self._access,
        )

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
        buckets: Sequence[Bucket] = (),
        alongside: Callable[[], object] | None = None,
    ) -> PreparedTurn:
        """Decide everything the LLM call needs, claim the conversation's turn and charge
        `budget` (the chat limit, the call's tokens and the request's other `buckets`) in
        one write. Raises NotFound, TurnInProgress (409, nothing claimed), RateLimited or
        BudgetExhausted (429, nothing held). The returned turn holds the lease and the
        reservation until `answer`/`stream` end it, or `abandon` gives them back.

        `alongside` (the request's Idempotency-Key claim) is made once, at the same time as
        the turn's first reads; its exception ends the turn before any of its writes."""
        now = self._clock.now()
        with self._access.together():
            for attempt in range(_CLAIM_ATTEMPTS):
                turn = self._preparer.prepare(
                    user_id,
                    text,
                    conversation_id,
                    now,
                    budget,
                    buckets,
                    alongside=alongside if attempt == 0 else None,
                )
                if turn is not None:
                    break
            else:
                # Other turns kept changing the conversation between its read and the claim.
                if budget is not None:
                    budget.apply(budget.charge(user_id, buckets))  # every request counts
                raise TurnInProgress(
                    "another message in this conversation is still being answered; retry shortly",
                    retry_after_s=TURN_RETRY_AFTER_S,
                )
            if turn.crisis:
                self._report_crisis(turn, turn.request.language)
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
            text=self._crisis.template_answer(language, moved_on=turn.assessment.moved_on),
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

    def answer(
        self, turn: PreparedTurn, on_reply: Callable[[ChatReply], None] | None = None
    ) -> ChatReply:
        """Answer a prepared turn (from the cache or the LLM) and persist it. `on_reply`
        records the reply elsewhere (an Idempotency-Key's) once the turn is saved, at the
        same time as the turn's cache entry."""
        started = time.perf_counter()
        try:
            if turn.cached is not None:
                return self._recorder.finish(
                    turn, cached_response(turn.cached), _elapsed_ms(started), on_reply=on_reply
                )
            if turn.crisis:
                return self._recorder.finish(
                    turn, self._safe_response(turn), _elapsed_ms(started), on_reply=on_reply
                )
            if turn.plan.mode == "clarify":
                response = self._orchestrator.clarify_response(turn.plan, turn.request.language)
                return self._recorder.finish(
                    turn, response, _elapsed_ms(started), on_reply=on_reply
                )
            try:
                response = self._llm.generate(turn.request)
            except LlmError as exc:
                self._recorder.save_unanswered(
                    turn, "blocked" if exc.code == "blocked" else "unanswered"
                )
                raise
            # Settled to what was spent, whatever happens to the save.
            return self._recorder.finish(
                turn, response, _elapsed_ms(started), cacheable=True, on_reply=on_reply
            )
        finally:
            turn.hold.close()

    def stream(
        self, turn: PreparedTurn, on_reply: Callable[[ChatReply], None] | None = None
    ) -> Iterator[LlmChunk]:
        """Stream the answer; the turn is persisted when the stream ends, however it ends.

        When the consumer stops early (client gone) the text generated so far is stored,
        marked `incomplete`, so nothing the learner may have seen is lost. `on_reply` is
        called with the reply once it is saved (at the same time as its cache entry),
        before the final chunk is yielded.
        """
        started = time.perf_counter()
        parts: list[str] = []
        finished = False
        source: Iterator[LlmChunk]
        if turn.cached is not None or turn.crisis or turn.plan.mode == "clarify":
            # A crisis answer is composed whole (model, else template) so that it always
            # arrives complete and with its resources.
            if turn.cached is not None:
                response = cached_response(turn.cached)
            elif turn.crisis:
                response = self._safe_response(turn)
            else:
                response = self._orchestrator.clarify_response(turn.plan, turn.request.language)
            source = iter([LlmChunk(text=response.text), LlmChunk(final=response)])
        else:
            source = self._llm.stream(turn.request)
        try:

            def saved(reply: ChatReply) -> None:
                nonlocal finished
                finished = True  # whatever happens to on_reply, the turn is stored
                if on_reply is not None:
                    on_reply(reply)

            for chunk in source:
                if chunk.final is not None:
                    self._recorder.finish(
                        turn,
                        chunk.final,
                        _elapsed_ms(started),
                        cacheable=turn.cached is None
                        and not turn.crisis
                        and turn.plan.mode != "clarify",
                        on_reply=saved,
                    )
                    yield chunk
                    return
                parts.append(chunk.text)
                yield chunk
        except LlmError as exc:
            finished = True
            if parts:
                turn.hold.keep_reservation()
                model = getattr(exc, "model", None) or self._model_id
                self._recorder.save_partial(turn, "".join(parts), _elapsed_ms(started), model)
            else:
                self._recorder.save_unanswered(
                    turn, "blocked" if exc.code == "blocked" else "unanswered"
                )
            raise
        finally:
            try:
                if not finished:
                    if parts:
                        turn.hold.keep_reservation()
                        self._recorder.save_partial(
                            turn, "".join(parts), _elapsed_ms(started), self._model_id
                        )
                    else:
                        self._recorder.save_unanswered(turn, "unanswered")
            finally:
                turn.hold.close()


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
