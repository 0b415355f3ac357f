"""The LanguageModel contract, run against every adapter: the offline model, Gemini through
the real google-genai client against the local fake Gemini server (tests/fakes/gemini.py),
and the recording fake the other tests use (tests/fakes/llm.py).

Each test makes the same assertions on every model. Model calls are counted where a model
has a side to count them on (the fake server's requests, the fake's records); the offline
model computes its answer in process and has none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import pytest

from ion.adapters.gemini import GeminiLanguageModel
from ion.adapters.offline import OfflineLanguageModel
from ion.domain.models import LlmChunk, LlmRequest, LlmResponse, LlmTurn
from ion.ports import LanguageModel
from tests.fakes.gemini import FakeGemini, answer
from tests.fakes.llm import RecordingLlm

REQUEST = LlmRequest(
    persona_id="lua",
    system_prompt="당신은 학습자를 격려하는 멘토 루아입니다.",
    history=[
        LlmTurn(role="user", text="요즘 공부가 잘 안 돼요."),
        LlmTurn(role="assistant", text="많이 지쳤겠어요. 어떤 부분이 제일 힘들어요?"),
    ],
    message="재귀 함수가 너무 어려워서 포기하고 싶어요",
    language="ko",
)


@dataclass
class ModelUnderTest:
    model: LanguageModel
    calls: Callable[[], int] | None  # model calls seen on the model's side, where it has one

    def assert_calls(self, expected: int) -> None:
        if self.calls is not None:
            assert self.calls() == expected


@pytest.fixture(params=["offline", "gemini", "recording_fake"])
def subject(request: pytest.FixtureRequest) -> Iterator[ModelUnderTest]:
    if request.param == "offline":
        yield ModelUnderTest(OfflineLanguageModel(), calls=None)
    elif request.param == "gemini":
        pytest.importorskip("google.genai")
        fake: FakeGemini = request.getfixturevalue("fake_gemini")
        fake.set_default(answer("재귀는 ", "작은 문제로 ", "나눠 보면 돼요.", usage=(40, 9, 3)))
        model = GeminiLanguageModel(
            model="gemini-contract",
            api_key="test-api-key",
            base_url=fake.base_url,
            timeout_s=5.0,
            sleep=lambda _: None,
        )
        yield ModelUnderTest(model, calls=lambda: len(fake.requests))
    else:
        fake_llm = RecordingLlm()
        yield ModelUnderTest(fake_llm, calls=lambda: fake_llm.calls)


def final_of(chunks: list[LlmChunk]) -> LlmResponse:
    final = chunks[-1].final
    assert final is not None, "the last chunk carries the final answer"
    return final


def test_generate_answers_with_text_usage_and_a_stop(subject: ModelUnderTest) -> None:
    response = subject.model.generate(REQUEST)
    assert response.text.strip() != ""
    assert response.finish_reason == "STOP"
    assert response.model != ""
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    subject.assert_calls(1)


def test_stream_yields_text_then_exactly_one_final_chunk_last(subject: ModelUnderTest) -> None:
    chunks = list(subject.model.stream(REQUEST))
    assert len(chunks) >= 2
    assert [chunk.final is not None for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(chunk.text != "" for chunk in chunks[:-1])
    assert chunks[-1].text == ""
    final = final_of(chunks)
    assert "".join(chunk.text for chunk in chunks[:-1]) == final.text
    assert final.finish_reason == "STOP"
    subject.assert_calls(1)


def test_stream_and_generate_give_the_same_answer(subject: ModelUnderTest) -> None:
    streamed = final_of(list(subject.model.stream(REQUEST)))
    assert subject.model.generate(REQUEST) == streamed
    subject.assert_calls(2)


def test_a_stream_closed_early_leaves_the_model_usable(subject: ModelUnderTest) -> None:
    expected = subject.model.generate(REQUEST)
    stream = subject.model.stream(REQUEST)
    first = next(stream)
    assert first.final is None and first.text != ""
    assert expected.text.startswith(first.text)
    assert isinstance(stream, Generator)  # what lets the web server close it
    stream.close()  # as it does when the client goes away
    assert subject.model.generate(REQUEST) == expected
    subject.assert_calls(3)


def test_concurrent_calls_each_get_the_whole_answer(subject: ModelUnderTest) -> None:
    expected = subject.model.generate(REQUEST)
    results: list[LlmResponse] = []
    lock = threading.Lock()

    def ask() -> None:
        response = subject.model.generate(REQUEST)
        with lock:
            results.append(response)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [expected] * 4
    subject.assert_calls(5)


def test_readiness_says_ready_without_calling_the_model(subject: ModelUnderTest) -> None:
    ready, detail = subject.model.readiness()
    assert ready is True
    assert detail.strip() != ""
    subject.assert_calls(0)
