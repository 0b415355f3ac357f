"""The routing judge: an LLM's second opinion on the messages the local router is unsure of.

Pure domain code over the `RoutingJudge` port (the Gemini implementation is
`ion.adapters.gemini_judge`). `JudgedRouter` wraps the local router with the same `route()`
signature:

1. The local router decides (lexicons + semantic head + feedback nudges).
2. When its confidence is at or above the threshold, that decision stands: no model call.
3. Below it, the judge is asked (the message, the last few learner turns, the persona now
   answering). Its verdict sets primary and secondary, `judged` is true and the reason
   starts with "judge: <main need>"; confidence and scores stay the local router's (so the
   figure keeps one meaning: how sure the local router was).
4. Any failure (timeout, HTTP error, invalid output, unknown persona id, safety block)
   keeps the local decision and logs a WARNING with the reason, never the message text.

Verdicts are cached per instance (bounded LRU) by the sha256 of exactly what the judge
sees, so a repeated message in the same context never calls the model twice. A verdict
that overrules the local router is logged (hashes only) and stored through the
`DisagreementStore` port for operators to review as labelled-data candidates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from importlib import resources

from ion.domain.personas import PersonaCatalog
from ion.domain.routing import MessageRouter, RouteResult
from ion.ports import (
    Clock,
    DisagreementStore,
    JudgeFailed,
    JudgeVerdict,
    RoutingDisagreement,
    RoutingJudge,
)

__all__ = ["JudgedRouter", "judge_instructions", "judge_key"]

log = logging.getLogger(__name__)

_PROMPT_FILE = "judge_prompt.md"


def judge_instructions(catalog: PersonaCatalog) -> str:
    """The judge's system prompt: the persona charter and labelled examples (package data).

    Raises ValueError when the charter does not name every catalog persona (a persona added
    to the catalog must be described to the judge too)."""
    text = resources.files("ion.domain").joinpath("data", _PROMPT_FILE).read_text("utf-8")
    missing = [pid for pid in catalog.ids if f"| {pid} " not in text]
    if missing:
        raise ValueError(f"the judge charter ({_PROMPT_FILE}) does not describe {missing}")
    return text.strip()


def judge_key(message: str, earlier_turns: Sequence[str], current_persona: str | None) -> str:
    """sha256 hex of everything the judge sees for one message (cache key, log id)."""
    material = json.dumps(
        [message, list(earlier_turns), current_persona], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class _Lru:
    """A small thread-safe LRU of verdicts (one per instance)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, JudgeVerdict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> JudgeVerdict | None:
        with self._lock:
            verdict = self._items.get(key)
            if verdict is not None:
                self._items.move_to_end(key)
            return verdict

    def put(self, key: str, verdict: JudgeVerdict) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._items[key] = verdict
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class JudgedRouter:
    """A router that asks a `RoutingJudge` when the local router's confidence is low."""

    def __init__(
        self,
        local: MessageRouter,
        judge: RoutingJudge,
        *,
        threshold: float,
        turns: int = 3,
        cache_size: int = 1024,
        disagreements: DisagreementStore | None = None,
        clock: Clock | None = None,
        retention_days: int = 30,
    ) -> None:
        if disagreements is not None and clock is None:
            raise ValueError("storing disagreements needs a clock")
        self._local = local
        self._judge = judge
        self._threshold = threshold
        self._turns = max(turns, 0)
        self._cache = _Lru(cache_size)
        self._disagreements = disagreements
        self._clock = clock
        self._retention = timedelta(days=retention_days)

    @property
    def catalog(self) -> PersonaCatalog:
        return self._local.catalog

    @property
    def local(self) -> MessageRouter:
        """The router without the judge."""
        return self._local

    def prepare(self, texts: Sequence[str]) -> None:
        self._local.prepare(texts)

    def cue_strengths(self, message: str) -> dict[str, float]:
        return self._local.cue_strengths(message)

    def route_alone(self, text: str) -> tuple[str, float]:
        return self._local.route_alone(text)

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def cached_verdicts(self) -> int:
        return len(self._cache)

    def route(
        self,
        message: str,
        *,
        history: Sequence[str] = (),
        current_persona: str | None = None,
        adjustments: Mapping[str, float] | None = None,
    ) -> RouteResult:
        result = self._local.route(
            message, history=history, current_persona=current_persona, adjustments=adjustments
        )
        local = result.decision
        if local.confidence >= self._threshold:
            return result
        earlier = [turn for turn in history if turn.strip()]
        earlier = earlier[-self._turns :] if self._turns else []
        current = current_persona if current_persona in self.catalog else None
        key = judge_key(message, earlier, current)
        verdict = self._cache.get(key)
        fresh = verdict is None
        if verdict is None:
            verdict = self._ask(key, message, earlier, current)
            if verdict is None:
                return result
            self._cache.put(key, verdict)
        if fresh and verdict.primary != local.primary:
            self._disagreement(key, message, result, verdict)
        decision = local.model_copy(
            update={
                "primary": verdict.primary,
                "secondary": verdict.secondary,
                "reason": f"judge: {verdict.main_need}; local: {local.reason}",
                "judged": True,
            }
        )
        return RouteResult(decision=decision, analysis=result.analysis)

    def _ask(
        self, key: str, message: str, earlier: list[str], current: str | None
    ) -> JudgeVerdict | None:
        try:
            verdict = self._judge.judge(message, earlier_turns=earlier, current_persona=current)
        except JudgeFailed as exc:
            reason = exc.reason
        except Exception as exc:  # a judge must never break routing
            reason = f"unexpected {type(exc).__name__}"
        else:
            unknown = {verdict.primary, verdict.secondary} - {None, *self.catalog.ids}
            if not unknown:
                if verdict.secondary == verdict.primary:
                    verdict = verdict.model_copy(update={"secondary": None})
                return verdict
            reason = "unknown persona id"
        log.warning(
            "routing judge gave no verdict (%s); keeping the local decision (message %s)",
            reason,
            key[:16],
        )
        return None

    def _disagreement(
        self, key: str, message: str, result: RouteResult, verdict: JudgeVerdict
    ) -> None:
        local = result.decision
        log.info(
            "routing judge disagrees: local=%s judge=%s confidence=%.3f (message %s)",
            local.primary,
            verdict.primary,
            local.confidence,
            key[:16],
        )
        if self._disagreements is None or self._clock is None:
            return
        now = self._clock.now()
        try:
            self._disagreements.put_disagreement(
                RoutingDisagreement(
                    message_hash=key,
                    message=message,
                    local_persona=local.primary,
                    judge_persona=verdict.primary,
                    judge_secondary=verdict.secondary,
                    confidence=local.confidence,
                    main_need=verdict.main_need,
                    created_at=now,
                    expires_at=now + self._retention,
                )
            )
        except Exception as exc:  # review data is best effort; the learner still gets routed
            log.warning(
                "routing disagreement not stored (%s, message %s)", type(exc).__name__, key[:16]
            )


def without_judge(router: MessageRouter) -> MessageRouter:
    """The local router behind `router`: a crisis turn is never sent to the judge (its
    persona is fixed by the crisis policy, and its text stays in this service)."""
    return router.local if isinstance(router, JudgedRouter) else router
