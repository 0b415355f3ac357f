"""The learned parts, loaded once per instance: the sentence-embedding model, the routing
and crisis heads on it, and the routers built from them (the LLM routing judge when on).

A missing or broken model never takes the service down: each loader says why it is off
(`SemanticStatus`, reported by /ready) and the rules or lexicons carry on.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from functools import lru_cache

from ion.adapters.secrets import gemini_api_key
from ion.domain.operating_points import DEFAULT_OPERATING_POINT
from ion.domain.personas import PersonaCatalog
from ion.domain.routing import MessageRouter, Router
from ion.domain.safety import CrisisDetector, load_rules
from ion.domain.semantic import SemanticLayer, artifact_path, load_artifact
from ion.errors import ConfigurationError
from ion.ports import Clock, DisagreementStore, Secrets, SentenceEmbedder
from ion.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SemanticStatus:
    """Whether the learned semantic layer is on; `detail` says why not (for /ready)."""

    ok: bool
    detail: str


@lru_cache(maxsize=1)
def load_embedder() -> tuple[SentenceEmbedder | None, SemanticStatus]:
    """The sentence-embedding model, loaded once per instance; None (and why) when it fails.

    One per process (the model is read-only and thread-safe), so an app rebuilt in the same
    process, as the CLI and tests do, does not load it again.

    A missing or broken model must not take the service down: routing falls back to the
    lexicons, safety to its rules, `/ready` reports the degradation and an ERROR log says
    why, and learners keep getting answers.
    """
    try:
        from ion.adapters.embeddings import UseEmbedder

        embedder = UseEmbedder()
    except Exception as exc:
        log.error("embedding model unavailable, routing falls back to the lexicons: %s", exc)
        return None, SemanticStatus(False, f"embedding model unavailable: {exc}"[:200])
    # The model's objects (its tokenizer: ~400,000 of them) live as long as the process:
    # kept out of the collector's passes, their pages are not rewritten by it, so a worker
    # forked after the load keeps sharing them with its parent.
    gc.freeze()
    return embedder, SemanticStatus(True, embedder.name)


def load_semantic_layer(
    embedder: SentenceEmbedder | None, task: str
) -> tuple[SemanticLayer | None, SemanticStatus]:
    """The trained head for `task` on `embedder`; None (and why) when it cannot be used."""
    if embedder is None:
        return None, SemanticStatus(False, "no embedding model")
    try:
        layer = SemanticLayer(embedder, load_artifact(artifact_path(task)))
    except ConfigurationError as exc:
        log.error("%s head unavailable, falling back: %s", task, exc.message)
        return None, SemanticStatus(False, exc.message[:200])
    return layer, SemanticStatus(True, f"{embedder.name} + {task} head")


def build_router(
    catalog: PersonaCatalog, embedder: SentenceEmbedder | None
) -> tuple[Router, SemanticStatus]:
    """The local router chat uses (lexicons + semantic head), without feedback or judge."""
    semantic, status = load_semantic_layer(embedder, "routing")
    return Router(catalog, semantic), status


def build_judged_router(
    settings: Settings,
    secrets: Secrets,
    local: MessageRouter,
    *,
    learning: DisagreementStore | None,
    clock: Clock,
) -> MessageRouter:
    """`local` as is, or wrapped by the LLM routing judge when ION_ROUTING_JUDGE=gemini."""
    if settings.routing_judge == "off":
        return local
    from ion.adapters.gemini_judge import GeminiRoutingJudge
    from ion.services.judge import JudgedRouter, judge_instructions

    judge = GeminiRoutingJudge.from_settings(
        settings,
        api_key=gemini_api_key(settings, secrets),
        persona_ids=local.catalog.ids,
        instructions=judge_instructions(local.catalog),
    )
    log.info(
        "routing judge on: %s below confidence %.2f",
        settings.routing_judge_model,
        settings.routing_judge_threshold,
    )
    return JudgedRouter(
        local,
        judge,
        threshold=settings.routing_judge_threshold,
        turns=settings.routing_judge_turns,
        cache_size=settings.routing_judge_cache_size,
        disagreements=learning,
        clock=clock,
        retention_days=settings.routing_disagreement_ttl_days,
    )


def build_detector(
    embedder: SentenceEmbedder | None, operating_point: float = DEFAULT_OPERATING_POINT
) -> tuple[CrisisDetector, SemanticStatus]:
    """The crisis detector: rules always, the trained head when the model is there, at the
    calibrated `operating_point` (the share of everyday messages it may flag)."""
    semantic, status = load_semantic_layer(embedder, "safety")
    return CrisisDetector(load_rules(), semantic, operating_point=operating_point), status
