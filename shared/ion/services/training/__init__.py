"""Training the semantic heads: deterministic, from labelled corpora in the repo.

`ion train routing` and `ion train safety` call into here. Everything is plain numpy and
deterministic (full-batch gradient descent from zeros, fixed iteration counts, items in
file order), so the same corpus and embedding model give the same artifact.

Honest measurement is built in: hyper-parameters and the lexicon/meaning blend are chosen
on *out-of-fold* predictions where each fold is one writer held out (a head must work on
writers it has never read), and those cross-writer figures are stored in the artifact.
"""

from ion.services.training.common import (
    FORBIDDEN_TRAINING_FILES,
    CorpusError,
    corpus_sha256,
    fit_softmax,
    grouped_folds,
)
from ion.services.training.routing import LEGACY_PREFIX, RoutingTrainingReport, train_routing
from ion.services.training.safety import SafetyCalibration, SafetyTrainingReport, train_safety

__all__ = [
    "FORBIDDEN_TRAINING_FILES",
    "LEGACY_PREFIX",
    "CorpusError",
    "RoutingTrainingReport",
    "SafetyCalibration",
    "SafetyTrainingReport",
    "corpus_sha256",
    "fit_softmax",
    "grouped_folds",
    "train_routing",
    "train_safety",
]
