"""The language-model fakes: `RecordingLlm` (real offline answers, or a fixed one; records
and counts every call; can be told to fail) and `GatedLlm` (the same, each call held at a
gate the test opens, for races)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from ion.adapters.offline import OfflineLanguageModel
from ion.domain.models import LlmChunk, LlmRequest, LlmResponse, Usage


class RecordingLlm:
    """A LanguageModel that answers like the offline model (or with the fixed `answer`
    pieces and `usage`), recording each request in `requests`.

    With `failure` set, every call is recorded and then raises it; a stream first yields
    `partial` (when not empty), as a model cut off mid-answer does.
    """

    def __init__(
        self,
        *,
        answer: Sequence[str] | None = None,
        usage: Usage | None = None,
        failure: Exception | None = None,
        partial: str = "",
        name: str | None = None,
    ) -> None:
        self._offline = OfflineLanguageModel()
        self._answer = tuple(answer) if answer is not None else None
        self._usage = usage or Usage()
        self.failure = failure
        self.partial = partial
        self.name = name or ("fixed" if answer is not None else self._offline.name)
        self.requests: list[LlmRequest] = []

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _record(self, request: LlmRequest) -> None:
        self.requests.append(request)

    def _response(self, request: LlmRequest) -> LlmResponse:
        if self._answer is None:
            return self._offline.generate(request)
        return LlmResponse(
            text="".join(self._answer), model=self.name, usage=self._usage, finish_reason="STOP"
        )

    def generate(self, request: LlmRequest) -> LlmResponse:
        self._record(request)
        if self.failure is not None:
            raise self.failure
        return self._response(request)

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        self._record(request)
        if self.failure is not None:
            if self.partial:
                yield LlmChunk(text=self.partial)
            raise self.failure
        if self._answer is None:
            yield from self._offline.stream(request)
            return
        for piece in self._answer:
            yield LlmChunk(text=piece)
        yield LlmChunk(final=self._response(request))

    def readiness(self) -> tuple[bool, str]:
        if self.failure is not None:
            return False, f"{self.name}: set to fail ({self.failure})"
        return True, f"{self.name} test model"


class GatedLlm(RecordingLlm):
    """A RecordingLlm whose every call waits at `gate` until the test opens it; `done()`
    counts HTTP exchanges that ended without reaching the model."""

    def __init__(
        self,
        *,
        answer: Sequence[str] | None = None,
        usage: Usage | None = None,
        failure: Exception | None = None,
    ) -> None:
        super().__init__(answer=answer, usage=usage, failure=failure, name="gated")
        self.progress = threading.Condition()
        self.finished = 0  # requests whose HTTP exchange is over (any status)
        self.gate = threading.Event()
        self.gate.set()

    def _record(self, request: LlmRequest) -> None:
        with self.progress:
            self.requests.append(request)
            self.progress.notify_all()
        assert self.gate.wait(120), "the test never opened the gate"

    def done(self) -> None:
        with self.progress:
            self.finished += 1
            self.progress.notify_all()

    def open_when_all_decided(self, requests: int) -> None:
        """Open the gate once every request is at the model or already answered."""
        with self.progress:
            assert self.progress.wait_for(
                lambda: self.calls + self.finished == requests, timeout=120
            ), (self.calls, self.finished)
        self.gate.set()
