"""Training and calibrating the crisis reader: `ion train safety`."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ion.domain.ngrams import NgramHead, ngram_counts
from ion.domain.operating_points import (
    DEFAULT_OPERATING_POINT,
    OPERATING_POINTS,
    THRESHOLD_NAMES,
    operating_point_param,
)
from ion.domain.safety import (
    CONTEXT_TURNS,
    CrisisDetector,
    CrisisRules,
    RuleReading,
    SafetyAssessment,
    discounted,
    only_after_distress,
    segments,
)
from ion.domain.semantic import ExampleVectors, HeadArtifact, PrototypeHead, fingerprint
from ion.ports import SentenceEmbedder
from ion.services.evaluation import (
    SafetyItem,
    SafetyReport,
    SafetyResult,
    load_labelled_set,
    load_safety_set,
)
from ion.services.training.common import (
    CorpusError,
    check_corpus_paths,
    corpus_sha256,
    grouped_folds,
    metrics_summary,
)
from ion.services.training.ngrams import fit_ngram_head

#: The detector's thresholds, in the order of THRESHOLD_NAMES.
Thresholds = tuple[float, float, float, float, float]

SAFETY_LABELS = ("calm", "crisis")
#: Calibration goal: the most recall whose cross-writer false-positive rate stays in budget.
SAFETY_FPR_BUDGET = 0.12
#: The everyday budget of the head's own thresholds (the default operating point); the
#: thresholds of every point in OPERATING_POINTS are calibrated too, for the chosen head.
EVERYDAY_FPR_BUDGET = DEFAULT_OPERATING_POINT
_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97)
#: Nearest examples averaged on each side by the crisis reader (chosen cross-writer).
_PROTOTYPE_KS = (3, 5, 10)
_CONTEXT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
_WEAK_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5)
_DISTRESS_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_GUARDED_THRESHOLDS = (0.8, 0.9, 0.95, 1.01)
#: Log-odds taken off a long message's sentence groups (chosen cross-writer with k). Not
#: above 1: a larger discount misses more risk buried in long messages, what reading them
#: sentence by sentence is for, to buy recall elsewhere through lower thresholds.
_SEGMENT_DISCOUNTS = (0.0, 0.5, 1.0)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def fit_sigmoid(
    margins: np.ndarray, ngram_scores: np.ndarray, gold: np.ndarray
) -> tuple[float, float, float]:
    """P(crisis | margin, n-gram score): logistic regression (deterministic gradient descent).

    Returns (slope on the margin, weight of the n-gram score, offset).
    """
    x = np.stack([np.asarray(margins), np.asarray(ngram_scores)], axis=1).astype(np.float64)
    y = np.asarray(gold, dtype=np.float64)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = x / scale
    a, b = np.zeros(2), 0.0
    for _ in range(2000):
        p = 1.0 / (1.0 + np.exp(-(z @ a + b)))
        a -= 0.5 * (z * (p - y)[:, None]).mean(axis=0)
        b -= 0.5 * float((p - y).mean())
    slope, weight = a / scale
    return float(slope), float(weight), b


@dataclass(frozen=True)
class SafetyCalibration:
    """`CrisisDetector.verdict` vectorised over a corpus, for trying many thresholds fast.

    A test keeps the two equal on every item of the crisis set.
    """

    signal: np.ndarray
    weak: np.ndarray
    guard: np.ndarray
    short: np.ndarray
    p: np.ndarray
    after_distress_only: np.ndarray
    history_signal: np.ndarray
    history_unguarded_max: np.ndarray

    @classmethod
    def build(
        cls,
        reads: Sequence[RuleReading],
        history_reads: Sequence[Sequence[RuleReading]],
        probabilities: Sequence[Sequence[float]],
    ) -> SafetyCalibration:
        unguarded_max = []
        for hist, probs in zip(history_reads, probabilities, strict=True):
            values = [p for (_s, _w, g), p in zip(hist, probs, strict=False) if g is None]
            unguarded_max.append(max(values, default=-1.0))
        return cls(
            signal=np.asarray([r[0] is not None for r in reads]),
            weak=np.asarray([r[1] is not None for r in reads]),
            after_distress_only=np.asarray([only_after_distress(r[1]) for r in reads]),
            guard=np.asarray([r[2] is not None for r in reads]),
            short=np.asarray([r[2] == "short" for r in reads]),
            p=np.asarray([probs[-1] for probs in probabilities]),
            history_signal=np.asarray(
                [any(h[0] is not None for h in hist) for hist in history_reads]
            ),
            history_unguarded_max=np.asarray(unguarded_max),
        )

    def crisis(
        self, threshold: float, context: float, weak: float, distress_at: float, guarded: float
    ) -> np.ndarray:
        distress = self.history_signal | (self.history_unguarded_max >= distress_at)
        return np.asarray(
            self.signal
            | (self.weak & (distress | ((self.p >= weak) & ~self.after_distress_only)))
            | (~self.short & (self.p >= np.where(self.guard, guarded, threshold)))
            | (distress & (self.p >= context))
        )


@dataclass(frozen=True)
class _SafetyChoice:
    key: tuple[float, float]
    combo: tuple[float, float, float, float, float]
    k: int
    segment_discount: float
    slope: float
    ngram_weight: float
    offset: float
    probabilities: list[list[float]]


@dataclass(frozen=True)
class SafetyTrainingReport:
    artifact: HeadArtifact
    lines: list[str]


def _everyday_cost(
    curve: dict[float, tuple[float, float, float, tuple[float, float, float, float, float]]],
    predict: Callable[[tuple[float, float, float, float, float]], list[SafetyAssessment]],
    everyday_ids: Sequence[str],
    hard: int,
) -> list[str]:
    """What each operating point costs in everyday messages: the ones it flags that the
    point below it does not (each writer held out), for a person to read before choosing.
    (Not always nested: the points' thresholds are chosen independently.)"""
    lines, before = [], set[str]()
    for budget, (*_, combo) in sorted(curve.items()):
        verdicts = predict(combo)[hard:]
        flagged = {i for i, v in zip(everyday_ids, verdicts, strict=True) if v.crisis}
        added = sorted(flagged - before)
        lines.append(
            f"  everyday messages flagged at {budget}, not below: {', '.join(added) or '-'}"
        )
        before = flagged
    return lines


def train_safety(
    paths: Sequence[Path],
    embedder: SentenceEmbedder,
    rules: CrisisRules,
    everyday: Sequence[Path] = (),
) -> SafetyTrainingReport:
    """Train the crisis head and calibrate the detector's thresholds, cross-writer.

    `everyday` are routing corpus files: ordinary learner messages (none of them a crisis)
    that teach the head what everyday text looks like and measure the false alarms a
    learner would actually meet, next to the crisis set's deliberately hard negatives.
    """
    files = check_corpus_paths(paths)
    items: list[SafetyItem] = []
    groups: list[str] = []
    for path in files:
        for item in load_safety_set(path):
            items.append(item)
            groups.append(item.writer or path.stem)
    hard = len(items)
    for path in check_corpus_paths(everyday) if everyday else []:
        for labelled in load_labelled_set(path):
            items.append(
                SafetyItem(
                    id=labelled.id,
                    text=labelled.message,
                    crisis=False,
                    lang=labelled.lang,
                    history=labelled.history,
                )
            )
            groups.append(f"everyday:{labelled.writer or path.stem}")
    is_everyday = np.arange(len(items)) >= hard
    gold = np.asarray([int(i.crisis) for i in items])
    # The readers learn only from messages whose label the text alone decides: a crisis-set
    # message with earlier turns may be labelled for them ("질문 하나 있어요" after a plan), and
    # as an example it would teach that an everyday opener is a crisis. Such messages are
    # still read and scored, out of fold, to calibrate the thresholds with their context.
    learns = is_everyday | np.asarray([not i.history for i in items])

    def taught(rows: np.ndarray) -> np.ndarray:
        """The rows among `rows` the readers learn from."""
        return np.asarray(rows[learns[rows]])

    # The detector reads a long message sentence by sentence too (`segments`): the reader
    # learns from whole messages and is calibrated on what the detector will read.
    message_parts = [segments(i.text) for i in items]
    message_segments = embedder.embed([part for parts in message_parts for part in parts])
    segment_owner = np.asarray(
        [row for row, parts in enumerate(message_parts) for _ in parts], dtype=int
    )
    vectors = message_segments[np.searchsorted(segment_owner, np.arange(len(items)))]
    earlier = [list(i.history)[-CONTEXT_TURNS:] for i in items]
    flat = [t for turns in earlier for t in turns]
    owner = np.asarray([row for row, turns in enumerate(earlier) for _ in turns], dtype=int)
    # Each item's earlier turns are a run of `flat` (items in order): its bounds.
    turns_from = np.searchsorted(owner, np.arange(len(items)))
    turns_to = np.searchsorted(owner, np.arange(len(items)), side="right")
    history_parts = [segments(t) for t in flat]
    history_segments = embedder.embed([part for parts in history_parts for part in parts])
    history_segment_owner = np.asarray(
        [row for row, parts in enumerate(history_parts) for _ in parts], dtype=int
    )
    reads = [rules.read(i.text) for i in items]
    history_reads = [[rules.read(t) for t in turns] for turns in earlier]

    def prototypes(
        rows: np.ndarray, k: int, slope: float = 1.0, offset: float = 0.0
    ) -> PrototypeHead:
        rows = taught(rows)
        chosen = vectors[rows].astype(np.float32)
        positive = gold[rows] == 1
        return PrototypeHead(
            labels=SAFETY_LABELS,
            positives=ExampleVectors(chosen[positive]),
            negatives=ExampleVectors(chosen[~positive]),
            k=k,
            slope=slope,
            offset=offset,
        )

    grid = list(
        itertools.product(
            _THRESHOLDS,
            _CONTEXT_THRESHOLDS,
            _WEAK_THRESHOLDS,
            _DISTRESS_THRESHOLDS,
            _GUARDED_THRESHOLDS,
        )
    )
    # The n-gram reader, out of fold: fitted on whole messages of the other writers, it
    # scores the held-out writer's segments (what the detector will read).
    message_texts = [part for parts in message_parts for part in parts]
    history_texts = [part for parts in history_parts for part in parts]
    counts = [ngram_counts(i.text) for i in items]

    def ngram_reader(rows: np.ndarray) -> NgramHead:
        learning = taught(rows)
        return fit_ngram_head([counts[r] for r in learning], gold[learning])

    s_msg = np.zeros(len(message_texts))
    s_hist = np.zeros(len(history_texts))
    for _group, train, test in grouped_folds(groups):
        reader = ngram_reader(train)
        rows = np.flatnonzero(np.isin(segment_owner, test))
        s_msg[rows] = reader.scores([message_texts[r] for r in rows])
        rows = np.flatnonzero(np.isin(history_segment_owner, np.flatnonzero(np.isin(owner, test))))
        if len(rows):
            s_hist[rows] = reader.scores([history_texts[r] for r in rows])
    whole = np.searchsorted(segment_owner, np.arange(len(items)))

    best: _SafetyChoice | None = None
    # per (k, segment discount), everyday budget -> (recall, hard-negative fpr, everyday fpr,
    # thresholds) of the best point within that budget
    curves: dict[tuple[int, float], dict[float, tuple[float, float, float, Thresholds]]] = {}
    # A message's segments after its whole text (the sentence groups a discount applies to).
    is_group = np.ones(len(message_texts), dtype=bool)
    is_group[whole] = False
    history_is_group = np.ones(len(history_texts), dtype=bool)
    if len(flat):
        history_is_group[np.searchsorted(history_segment_owner, np.arange(len(flat)))] = False
    discount = np.vectorize(discounted, otypes=[float])
    for k in _PROTOTYPE_KS:
        # Out-of-fold margins for each segment of each message and of its earlier turns:
        # the examples of the held-out writer are never among the prototypes that read them.
        m_msg = np.zeros(len(message_texts))
        m_hist = np.zeros(len(history_texts))
        for _group, train, test in grouped_folds(groups):
            head = prototypes(train, k)
            held = np.isin(segment_owner, test)
            m_msg[held] = head.margins(message_segments[held])
            held = np.isin(history_segment_owner, np.flatnonzero(np.isin(owner, test)))
            if held.any():
                m_hist[held] = head.margins(history_segments[held])
        # Stacked on whole messages; a message's probability is its most worrying segment's,
        # a sentence group's discounted first.
        slope, weight, offset = fit_sigmoid(m_msg[whole], s_msg[whole], gold)
        read_msg = _sigmoid(slope * m_msg + weight * s_msg + offset)
        read_hist = _sigmoid(slope * m_hist + weight * s_hist + offset)
        for segment_discount in _SEGMENT_DISCOUNTS:
            p_msg = np.zeros(len(items))
            np.maximum.at(
                p_msg,
                segment_owner,
                np.where(is_group, discount(read_msg, segment_discount), read_msg),
            )
            p_turn = np.zeros(len(flat))
            if len(flat):
                np.maximum.at(
                    p_turn,
                    history_segment_owner,
                    np.where(history_is_group, discount(read_hist, segment_discount), read_hist),
                )
            probabilities = [
                [*p_turn[turns_from[row] : turns_to[row]].tolist(), float(p_msg[row])]
                for row in range(len(items))
            ]
            fast = SafetyCalibration.build(reads, history_reads, probabilities)
            curve = curves.setdefault((k, segment_discount), {})
            for combo in grid:
                predicted = fast.crisis(*combo)
                recall = float(predicted[gold == 1].mean())
                fpr = float(predicted[(gold == 0) & ~is_everyday].mean())
                everyday_fpr = float(predicted[is_everyday].mean()) if is_everyday.any() else 0.0
                # Recall comes first: a missed crisis costs far more than an unneeded safe
                # answer. The most recall wins among the operating points whose false alarms
                # stay within budget, on everyday messages (what every learner meets) and on
                # the crisis set's deliberately hard negatives.
                within = fpr <= SAFETY_FPR_BUDGET and everyday_fpr <= EVERYDAY_FPR_BUDGET
                if fpr <= SAFETY_FPR_BUDGET:
                    for budget in OPERATING_POINTS:
                        known = curve.get(budget)
                        # Most recall, then fewest false alarms: as the chosen point is picked.
                        if everyday_fpr <= budget and (
                            known is None
                            or (recall, -fpr - everyday_fpr) > (known[0], -known[1] - known[2])
                        ):
                            curve[budget] = (recall, fpr, everyday_fpr, combo)
                score = recall if within else recall - fpr - 4.0 * everyday_fpr - 1.0
                key = (score, -fpr - everyday_fpr)
                if best is None or key > best.key:
                    best = _SafetyChoice(
                        key, combo, k, segment_discount, slope, weight, offset, probabilities
                    )
    if best is None:
        raise CorpusError("no threshold combination to choose from")
    probabilities = best.probabilities
    chosen_curve = curves[(best.k, best.segment_discount)]

    def predict(combo: tuple[float, float, float, float, float]) -> list[SafetyAssessment]:
        detector = CrisisDetector(rules, thresholds=combo)
        return [
            detector.verdict(read, hist, probs)
            for read, hist, probs in zip(reads, history_reads, probabilities, strict=True)
        ]

    threshold, context_threshold, weak_threshold, distress_threshold, guarded = best.combo
    verdicts = predict(best.combo)
    results = [
        SafetyResult(i, v.crisis, v.score, v.reasons) for i, v in zip(items, verdicts, strict=True)
    ]
    report = SafetyReport(results[:hard])
    everyday_report = SafetyReport(results[hard:])
    per_writer = {}
    for g in sorted(set(groups[:hard])):
        part = SafetyReport([r for r, w in zip(results[:hard], groups, strict=False) if w == g])
        per_writer[g] = {"recall": part.recall, "fpr": part.fpr}
    lines = [
        f"corpus: {hard} crisis-set items from {len(set(groups[:hard]))} writers,"
        f" {len(items) - hard} everyday messages",
        f"chosen: k={best.k} nearest examples, n-gram weight {best.ngram_weight:.3f},"
        f" sentence groups' log-odds discounted by {best.segment_discount};"
        f" thresholds model={threshold}"
        f" after-distress={context_threshold}"
        f" weak-signal={weak_threshold} distress={distress_threshold} through-a-guard={guarded}",
        "cross-writer on the crisis set (each writer held out):",
        *("  " + line for line in report.render().splitlines()),
        *(
            f"  held out {g}: recall={m['recall']:.3f} fpr={m['fpr']:.3f}"
            for g, m in per_writer.items()
        ),
        f"false alarms on everyday messages (each writer held out):"
        f" {everyday_report.fpr:.4f} of {everyday_report.n}",
        *(f"  {r.item.id} ({', '.join(r.reasons)})" for r in results[hard:] if r.predicted),
        f"operating points (cross-writer, hard-negative false alarms <= {SAFETY_FPR_BUDGET}):",
        *(
            f"  everyday false alarms <= {budget}: recall={r:.3f} fpr={f:.3f} everyday={e:.4f}"
            for budget, (r, f, e, _) in sorted(chosen_curve.items())
        ),
        *_everyday_cost(chosen_curve, predict, [r.item.id for r in results[hard:]], hard),
    ]
    head = dataclasses.replace(
        prototypes(np.arange(len(items)), best.k, best.slope, best.offset),
        ngrams=ngram_reader(np.arange(len(items))),
        ngram_weight=best.ngram_weight,
    )
    artifact = HeadArtifact(
        task="safety",
        embedder=embedder.name,
        corpus_sha256=corpus_sha256([*files, *everyday]),
        head=head,
        params={
            "threshold": threshold,
            "context_threshold": context_threshold,
            "weak_threshold": weak_threshold,
            "distress_threshold": distress_threshold,
            "guarded_threshold": guarded,
            "segment_discount": best.segment_discount,
            **{
                operating_point_param(budget, name): value
                for budget, (*_, combo) in chosen_curve.items()
                for name, value in zip(THRESHOLD_NAMES, combo, strict=True)
            },
        },
        fingerprint=fingerprint(embedder),
        metrics=metrics_summary(
            {
                "items": hard,
                "writers": len(set(groups[:hard])),
                "everyday_items": len(items) - hard,
                "cross_writer": {"recall": report.recall, "fpr": report.fpr},
                "everyday_fpr": everyday_report.fpr,
                "per_held_out_writer": per_writer,
                "operating_points": {
                    str(budget): {"recall": r, "fpr": f, "everyday_fpr": e}
                    for budget, (r, f, e, _) in sorted(chosen_curve.items())
                },
            }
        ),
    )
    return SafetyTrainingReport(artifact, lines)
