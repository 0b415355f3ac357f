"""CPU per chat request, split by stage, in process on one thread; SQLite writes per turn.

Builds the real App (`ion.bootstrap.build_app`) on a temporary SQLite data dir with the
production defaults (offline LLM, limits and response cache as configured by default,
JSON logs at INFO as deployed, written to /dev/null) and drives POST /v1/chat through the
functions-framework app of functions/chat/main.py with Flask's test client, on this
thread. Each learner opens a conversation (not measured), then sends `--turns` follow-up
messages to it (measured), round robin over `--users` learners so that nobody reaches
the per-minute chat limit. Every message is new text, so the embedding cache misses as
it does for real messages.

Five passes over the same workload, each on its own fresh app and learners:
1. plain: no proxies, CPU per request (thread and process);
2. model timed: only the embedder and the trained heads wrapped by timing proxies (a
   dozen calls a request), so the CPU besides model inference is the total less theirs:
   the headline figure;
3. stages: the App's ports and collaborators wrapped by timing proxies (bench/_stages.py):
   self CPU time per stage, `unattributed` being what no proxy covers (Flask, request
   parsing, the HTTP handler's glue); forty-odd proxies a request cost more than their
   calibration on a no-op, so this table's total overstates (2);
4. SQLite: every statement traced (`sqlite3.Connection.set_trace_callback`), write
   transactions and statements per turn by the stage and store call that made them;
5. constant model: the heads answer the same for every text at no cost, so the figure is
   the server's own code alone. It is below (2)'s: the model's work in between leaves the
   processor's caches cold for the code that runs after it. The CPU spent inside SQLite's
   engine (its C code: statements, row fetches, commits) is timed apart in this pass, and
   the router and the crisis rules are timed alone on as many new messages: with the bare
   function, what the goal's 1.5 ms must hold before the rest of the request.

The bare baseline is a functions-framework hello function driven the same way (same
request, same test client) in the same run.

    .venv/bin/python bench/overhead_bench.py [--users 60] [--turns 7] [--detail]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import functions_framework
from _common import ROOT  # first: puts shared/ and the repository root on sys.path
from _stages import UNATTRIBUTED, StageClock, Timed, rebind_globals, rewire, timed_function

from ion.bootstrap import App, build_app, load_embedder, set_app, setup_logging
from ion.domain import prompts
from ion.domain.semantic import SemanticLayer
from ion.services.memory import MemoryService
from ion.services.orchestration import TurnOrchestrator
from ion.services.profile import ProfileService
from ion.settings import Settings

SECRET = "bench-secret-" + "o" * 40
TARGET_US = 1500.0  # issue 17: everything but model inference, per request, one core

EMBEDDING, HEADS = "inference: embedding", "inference: model heads"
INFERENCE = (EMBEDDING, HEADS)
STAGES = (
    "auth",
    "limits",
    "load",
    "safety",
    "routing",
    EMBEDDING,
    HEADS,
    "prompt",
    "llm",
    "persist",
    "events",
    "events: in-process consumer",
    "after turn (memory, profile)",
    "chat service glue",
    "logging",
    UNATTRIBUTED,
)
STICKY = frozenset({"events"})

# Store methods that only read; the others write. Outbox methods belong to the events.
_READS = ("get_", "recent_", "list_", "pending_", "running_", "is_", "routing_stats")
_READS_EXACT = frozenset({"counter", "daily_counts", "ping"})
_OUTBOX = frozenset({"add_outbox", "pending_outbox", "remove_outbox", "record_outbox_failure"})

OPENERS = (
    "How do Python decorators work",
    "면접이 내일인데 너무 떨려요, 어떻게 준비하면 좋을까요",
    "My API p95 is 800ms, is that slow for a service like",
    "다음 주까지 과제 세 개가 있는데 어떻게 나눠서 해야 할까요",
    "What's the difference between a process and a thread in",
    "테스트 커버리지 70%면 충분한가요, 팀에서는",
    "I keep failing the same algorithm problem about",
    "코드 리뷰에서 지적을 많이 받았어요, 특히",
)
TOPICS = (
    "async code", "our payment service", "the Django project", "a CLI tool", "the React app",
    "데이터 파이프라인", "졸업 작품", "사이드 프로젝트", "graph search", "the database layer",
    "스터디 모임", "my first internship", "unit tests", "the deploy script", "caching",
)  # fmt: skip


def message(index: int) -> str:
    """A new learner message for every index (the embedding cache must miss)."""
    opener = OPENERS[index % len(OPENERS)]
    topic = TOPICS[(index // len(OPENERS)) % len(TOPICS)]
    return f"{opener} {topic}? (step {index // (len(OPENERS) * len(TOPICS)) + 1})"


def store_stage(name: str) -> str:
    if name in _OUTBOX:
        return "events"
    if name.startswith(_READS) or name in _READS_EXACT:
        return "load"
    return "persist"


def by_method(mapping: dict[str, str], default: str) -> Callable[[str], str]:
    return lambda name: mapping.get(name, default)


def objects_of(root: object, kind: type) -> list[object]:
    """Every object of `kind` reachable from `root` through ion objects and containers."""
    found: dict[int, object] = {}
    seen: set[int] = set()
    pending = [root]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            found[id(current)] = current
        if isinstance(current, dict):
            pending.extend(current.values())
        elif isinstance(current, list | tuple | set | frozenset):
            pending.extend(current)
        elif type(current).__module__.startswith("ion.") and hasattr(current, "__dict__"):
            pending.extend(vars(current).values())
    return list(found.values())


def inference_targets(app: App) -> list[tuple[object, str | Callable[[str], str], str]]:
    """The objects whose calls are model inference: the embedder and the trained heads."""
    targets: list[tuple[object, str | Callable[[str], str], str]] = []
    embedder, _ = load_embedder()
    if embedder is not None:
        targets.append((embedder, EMBEDDING, "sentence embedder"))
    for layer in objects_of(app, SemanticLayer):
        targets.append((layer, HEADS, "semantic layer"))
    return targets


def wrap(app: App, clock: StageClock, targets: list[tuple[object, Any, str]]) -> list[str]:
    """Swap every reference to `targets` reachable from `app` for a timing proxy."""
    proxies = {id(t): Timed(t, clock, stage, label) for t, stage, label in targets}
    swapped = rewire(app, proxies)
    missing = [label for t, _s, label in targets if not swapped[id(t)]]
    if missing:
        raise SystemExit(f"not reached from the App, so not measured: {missing}")
    return [f"{label}: {swapped[id(t)]} references" for t, _s, label in targets]


def instrument(app: App, clock: StageClock) -> list[str]:
    """Wrap the App's ports and collaborators; a line per wrapped object (references)."""
    targets: list[tuple[object, str | Callable[[str], str], str]] = [
        (app.verifier, "auth", "verifier"),
        (app.quota, "limits", "quota"),
        (app.store, store_stage, "conversation store"),
        (app.records, store_stage, "records store"),
        (app.backend.profiles, store_stage, "profile store"),
        (app.llm, "llm", "llm"),
        (app.events, "events", "events publisher"),
        (app.events.transport, "events: in-process consumer", "event transport"),
        (app.router, "routing", "router"),
        (app.chat.detector, "safety", "crisis detector"),
        (app.chat, "chat service glue", "chat service"),
    ]
    targets += inference_targets(app)
    for orchestrator in objects_of(app, TurnOrchestrator):
        targets.append((orchestrator, by_method({"duo": "prompt"}, "routing"), "orchestrator"))
    after = "after turn (memory, profile)"
    for memory in objects_of(app, MemoryService):
        targets.append((memory, by_method({"summary_for": "prompt"}, after), "memory service"))
    for profiles in objects_of(app, ProfileService):
        targets.append((profiles, by_method({"prompt_note": "prompt"}, after), "profiles"))
    lines = wrap(app, clock, targets)
    # Prompt building is a domain function, not an object: its module-level bindings.
    bound = rebind_globals(
        dict(sys.modules),
        prompts.build_request,
        timed_function(prompts.build_request, clock, "prompt"),
    )
    lines.append(f"build_request: {bound} bindings")
    root = logging.getLogger()
    # The proxies stand in for the handlers: logging only calls their methods.
    root.handlers = [cast(logging.Handler, Timed(h, clock, "logging")) for h in root.handlers]
    return lines


@dataclass
class SqlCounter:
    """Statements and write transactions seen on traced connections, by stage and call."""

    clock: StageClock
    active: bool = False
    write_transactions: Counter[tuple[str, str]] = field(default_factory=Counter)
    statements: Counter[tuple[str, str]] = field(default_factory=Counter)
    reads: Counter[tuple[str, str]] = field(default_factory=Counter)

    def tracer(self) -> Callable[[str], None]:
        in_transaction = False

        def trace(sql: str) -> None:
            nonlocal in_transaction
            head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
            where = (self.clock.current, self.clock.current_call)
            if head == "BEGIN":
                in_transaction = True
                if self.active:
                    self.write_transactions[where] += 1
                return
            if head in ("COMMIT", "ROLLBACK", "END"):
                in_transaction = False
                return
            if not self.active or head == "PRAGMA":
                return
            self.statements[where] += 1
            if not in_transaction:
                if head in ("SELECT", "WITH"):
                    self.reads[where] += 1
                else:  # an autocommit write is a transaction of its own
                    self.write_transactions[where] += 1

        return trace


@contextlib.contextmanager
def patched_connect(connect: Callable[..., sqlite3.Connection]) -> Iterator[None]:
    """`sqlite3.connect` is `connect` meanwhile (handed the original as its first argument)."""
    original = sqlite3.connect
    sqlite3.connect = lambda *args, **kwargs: connect(original, *args, **kwargs)  # type: ignore[assignment]
    try:
        yield
    finally:
        sqlite3.connect = original


def traced_sqlite(counter: SqlCounter) -> contextlib.AbstractContextManager[None]:
    """Every sqlite3 connection opened meanwhile reports its statements to `counter`."""

    def connect(original: Callable[..., sqlite3.Connection], *args: Any, **kwargs: Any) -> sqlite3.Connection:  # fmt: skip
        conn = original(*args, **kwargs)
        conn.set_trace_callback(counter.tracer())
        return conn

    return patched_connect(connect)


@dataclass
class EngineTime:
    """Thread CPU spent inside sqlite3's C calls (statements, fetches, commits)."""

    ns: int = 0
    active: bool = False


def _timed(engine: EngineTime, call: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        if not engine.active:
            return call(*args)
        t0 = time.thread_time_ns()
        try:
            return call(*args)
        finally:
            engine.ns += time.thread_time_ns() - t0

    return run


@contextlib.contextmanager
def engine_timed_sqlite(engine: EngineTime) -> Iterator[None]:
    """Every sqlite3 connection opened meanwhile times its C calls into `engine`."""

    class TimedCursor(sqlite3.Cursor):
        def execute(self, *args: Any) -> TimedCursor:
            run: Callable[..., TimedCursor] = _timed(engine, super().execute)
            return run(*args)

        def executemany(self, *args: Any) -> TimedCursor:
            run: Callable[..., TimedCursor] = _timed(engine, super().executemany)
            return run(*args)

        def fetchone(self) -> Any:
            return _timed(engine, super().fetchone)()

        def fetchall(self) -> list[Any]:
            rows: list[Any] = _timed(engine, super().fetchall)()
            return rows

        def __next__(self) -> Any:
            return _timed(engine, super().__next__)()

    class TimedConnection(sqlite3.Connection):
        def execute(self, *args: Any) -> TimedCursor:
            return self.cursor(TimedCursor).execute(*args)

        def executemany(self, *args: Any) -> TimedCursor:
            return self.cursor(TimedCursor).executemany(*args)

        def commit(self) -> None:
            _timed(engine, super().commit)()

        def rollback(self) -> None:
            _timed(engine, super().rollback)()

    def connect(original: Callable[..., sqlite3.Connection], *args: Any, **kwargs: Any) -> sqlite3.Connection:  # fmt: skip
        return original(*args, **kwargs, factory=TimedConnection)

    with patched_connect(connect):
        yield


def alone_us(call: Callable[[str], object], offset: int, count: int) -> float:
    """Mean thread CPU of `call` on `count` new messages, one after the other (warm code)."""
    call(message(offset - 1))
    t0 = time.thread_time_ns()
    for index in range(offset, offset + count):
        call(message(index))
    return (time.thread_time_ns() - t0) / count / 1000


def fresh_app(data_dir: Path) -> App:
    settings = Settings(_env_file=None, data_dir=data_dir, jwt_secret=SECRET, log_format="json")
    app = build_app(settings)
    set_app(app)
    return app


@dataclass
class Pass:
    thread_ns: list[int] = field(default_factory=list)
    process_ns: list[int] = field(default_factory=list)

    def mean_us(self, values: list[int]) -> float:
        return statistics.fmean(values) / 1000


def drive(
    post: Callable[[str, str, str | None], dict[str, Any]],
    tokens: list[str],
    turns: int,
    *,
    offset: int,
    clock: StageClock | None = None,
    counter: SqlCounter | None = None,
    engine: EngineTime | None = None,
) -> Pass:
    """Open a conversation per learner, then `turns` measured follow-ups each (round robin)."""
    conversations = [post(tok, message(offset + i), None)["conversation_id"] for i, tok in enumerate(tokens)]  # fmt: skip
    result = Pass()
    index = offset + len(tokens)
    for _turn in range(turns):
        for token, conversation in zip(tokens, conversations, strict=True):
            index += 1
            if counter is not None:
                counter.active = True
            if engine is not None:
                engine.active = True
            if clock is not None:
                clock.start()
            t0, p0 = time.thread_time_ns(), time.process_time_ns()
            post(token, message(index), conversation)
            t1, p1 = time.thread_time_ns(), time.process_time_ns()
            if clock is not None:
                clock.stop()
            if engine is not None:
                engine.active = False
            if counter is not None:
                counter.active = False
            result.thread_ns.append(t1 - t0)
            result.process_ns.append(p1 - p0)
    return result


def chat_poster(client: Any) -> Callable[[str, str, str | None], dict[str, Any]]:
    def post(token: str, text: str, conversation_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"message": text}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        response = client.post("/v1/chat", json=body, headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise SystemExit(f"chat answered {response.status_code}: {response.get_data()[:300]!r}")
        data: dict[str, Any] = response.get_json()
        return data

    return post


BARE_SOURCE = """
import functions_framework


@functions_framework.http
def hello(request):
    return "hello"
"""


def bare_cpu_us(requests: int, tmp: Path) -> float:
    """CPU per request of a bare functions-framework hello function, same test client."""
    source = tmp / "bare" / "main.py"
    source.parent.mkdir()
    source.write_text(BARE_SOURCE)
    create: Callable[..., Any] = functions_framework.create_app
    client = create(target="hello", source=str(source), signature_type="http").test_client()
    body = {"message": message(0)}
    headers = {"Authorization": "Bearer " + "x" * 180}
    samples: list[int] = []
    for i in range(requests + 50):
        t0 = time.thread_time_ns()
        response = client.post("/", json=body, headers=headers)
        elapsed = time.thread_time_ns() - t0
        if response.status_code != 200:
            raise SystemExit(f"bare function answered {response.status_code}")
        if i >= 50:
            samples.append(elapsed)
    return statistics.fmean(samples) / 1000


def proxy_cost_us(calls: int = 20_000) -> float:
    """What one timed call adds to a direct one (µs), measured on a no-op method."""

    class NoOp:
        def run(self) -> None:
            return None

    clock = StageClock()
    direct, proxy = NoOp(), Timed(NoOp(), clock, "calibration")
    clock.start()
    t0 = time.thread_time_ns()
    for _ in range(calls):
        direct.run()
    t1 = time.thread_time_ns()
    for _ in range(calls):
        proxy.run()
    t2 = time.thread_time_ns()
    clock.stop()
    return max(0, (t2 - t1) - (t1 - t0)) / calls / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--turns", type=int, default=7, help="measured follow-ups per learner")
    parser.add_argument("--detail", action="store_true", help="calls per request by method")
    args = parser.parse_args()
    if args.turns + 1 > Settings(_env_file=None).rate_limit_per_minute:
        raise SystemExit("--turns + 1 must stay within the default per-minute chat limit")

    # JSON logs as deployed, into /dev/null (the handler binds sys.stdout when made).
    devnull = open(os.devnull, "w")  # noqa: SIM115 (open for the whole run)
    with contextlib.redirect_stdout(devnull):
        setup_logging("INFO", "json")
    with tempfile.TemporaryDirectory(prefix="ion-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        clock = StageClock(sticky=STICKY)
        counter = SqlCounter(clock)
        with contextlib.redirect_stderr(io.StringIO()):
            plain_app = fresh_app(tmp / "plain")
            create: Callable[..., Any] = functions_framework.create_app
            flask_app = create(target="chat", source=str(ROOT / "functions" / "chat" / "main.py"))
        client = flask_app.test_client()
        post = chat_poster(client)
        requests = args.users * args.turns

        def tokens(app: App, prefix: str) -> list[str]:
            return [app.dev_token(f"{prefix}-{i}") for i in range(args.users)]

        plain = drive(post, tokens(plain_app, "plain"), args.turns, offset=0)

        # Only the model calls timed: a handful of proxies per request, so the rest of the
        # request runs as in the plain pass.
        light_app = fresh_app(tmp / "light")
        wrap(light_app, clock, inference_targets(light_app))
        light = drive(post, tokens(light_app, "light"), args.turns, offset=30_000, clock=clock)
        light_inference = {stage: clock.totals_ns.get(stage, 0) for stage in INFERENCE}
        light_calls = sum(n for (stage, _w), n in clock.calls.items() if stage in INFERENCE)
        clock.reset()

        # The model answering constants: what the server's own code costs alone, without
        # the model's work in between (which leaves the caches cold for the rest).
        engine = EngineTime()
        with constant_model(), engine_timed_sqlite(engine):
            constant_app = fresh_app(tmp / "constant")
            constant = drive(post, tokens(constant_app, "constant"), args.turns, offset=40_000, engine=engine)  # fmt: skip
            router, detector = constant_app.router, constant_app.detector
            routing_alone = alone_us(router.route, 50_000, requests)
            rules_alone = alone_us(detector.assess, 60_000, requests)

        staged_app = fresh_app(tmp / "staged")
        wired = instrument(staged_app, clock)
        staged = drive(post, tokens(staged_app, "staged"), args.turns, offset=10_000, clock=clock)
        totals = dict(clock.totals_ns)
        calls = Counter(clock.calls)

        clock.reset()
        with traced_sqlite(counter):
            counted_app = fresh_app(tmp / "counted")
            instrument(counted_app, clock)
            drive(post, tokens(counted_app, "counted"), args.turns, offset=20_000, clock=clock, counter=counter)  # fmt: skip
        bare_us = bare_cpu_us(requests, tmp)
        set_app(None)

    report(args, requests, plain, staged, totals, calls, counter, bare_us, wired)
    report_light(requests, light, light_inference, light_calls, bare_us)
    report_floor(requests, constant, engine, routing_alone, rules_alone, bare_us)
    return 0


def report_floor(
    requests: int,
    constant: Pass,
    engine: EngineTime,
    routing_alone: float,
    rules_alone: float,
    bare_us: float,
) -> None:
    """The constant-model pass, and the parts of it that any of our code runs on top of."""
    ordered = sorted(constant.thread_ns)
    engine_us = engine.ns / requests / 1000
    print(
        f"CPU per request with the model answering constants (the server's own code "
        f"alone): mean {constant.mean_us(constant.thread_ns):.0f} µs, median "
        f"{ordered[len(ordered) // 2] / 1000:.0f}; of which inside SQLite's engine "
        f"(statements, fetches, commits: C code) {engine_us:.0f} µs"
    )
    floor = bare_us + engine_us + routing_alone + rules_alone
    print(
        f"what the target must hold: bare functions-framework {bare_us:.0f} + SQLite's "
        f"engine {engine_us:.0f} + routing alone {routing_alone:.0f} + crisis rules alone "
        f"{rules_alone:.0f} (each alone on new messages, warm, constant model) = {floor:.0f} "
        f"µs of {TARGET_US:.0f}, before authentication, limits, the prompt, persistence, "
        f"events and logging"
    )


@contextlib.contextmanager
def constant_model() -> Iterator[None]:
    """Every trained head answers the same for every text, at no cost: no crisis
    (p = 0.001), every persona alike; the lexicons and the rules still decide."""

    def log_proba(self: SemanticLayer, texts: Sequence[str]) -> list[dict[str, float]]:
        labels = self.labels
        if "crisis" in labels:
            rest = math.log(0.999 / max(len(labels) - 1, 1))
            row = {label: math.log(0.001) if label == "crisis" else rest for label in labels}
        else:
            row = dict.fromkeys(labels, -math.log(len(labels)))
        return [dict(row) for _ in texts]

    def prepare(self: SemanticLayer, texts: Sequence[str]) -> None:
        return None

    saved = SemanticLayer.log_proba, SemanticLayer.prepare
    SemanticLayer.log_proba, SemanticLayer.prepare = log_proba, prepare  # type: ignore[method-assign]
    try:
        yield
    finally:
        SemanticLayer.log_proba, SemanticLayer.prepare = saved  # type: ignore[method-assign]


def report_light(
    requests: int, light: Pass, inference: dict[str, int], calls: int, bare_us: float
) -> None:
    """The headline figure: a pass with only the model calls timed."""
    total_us = sum(light.thread_ns) / requests / 1000
    model_us = {stage: ns / requests / 1000 for stage, ns in inference.items()}
    without = total_us - sum(model_us.values()) - calls / requests * proxy_cost_us()
    print(
        f"\nonly model inference timed ({calls / requests:.1f} timed calls/request): thread "
        f"CPU {total_us:.0f} µs/request, of which "
        + ", ".join(f"{stage} {value:.0f}" for stage, value in model_us.items())
    )
    print(
        f"CPU per request besides model inference: {without:.0f} µs (target ≤ "
        f"{TARGET_US:.0f} µs; bare functions-framework {bare_us:.0f} µs). The stage table's "
        "proxies add more than their calibrated cost, so its total overstates this figure."
    )


def report(
    args: argparse.Namespace,
    requests: int,
    plain: Pass,
    staged: Pass,
    totals: dict[str, int],
    calls: Counter[tuple[str, str]],
    counter: SqlCounter,
    bare_us: float,
    wired: list[str],
) -> None:
    _embedder, status = load_embedder()
    print(
        f"POST /v1/chat, follow-up turns on existing conversations: {args.users} learners x "
        f"{args.turns} turns = {requests} requests per pass; offline LLM, SQLite, default "
        f"limits and cache, JSON logs at INFO; embedding model: {status.detail}"
    )
    print(f"proxies: {'; '.join(wired)}")
    for name, run in (("plain app", plain), ("instrumented app", staged)):
        ordered = sorted(run.thread_ns)
        print(
            f"CPU per request, {name}: thread mean {run.mean_us(run.thread_ns):.0f} µs, "
            f"median {ordered[len(ordered) // 2] / 1000:.0f}, p90 "
            f"{ordered[int(len(ordered) * 0.9)] / 1000:.0f}; process (all threads) mean "
            f"{run.mean_us(run.process_ns):.0f} µs"
        )
    print(f"CPU per request, bare functions-framework hello, same client: {bare_us:.0f} µs")
    total_ns = sum(totals.values())
    print(f"\n{'stage':32} {'µs/request':>10} {'share':>7}")
    for stage in STAGES:
        value = totals.get(stage, 0)
        print(f"{stage:32} {value / requests / 1000:10.1f} {value / total_ns:7.1%}")
    unknown = sorted(set(totals) - set(STAGES))
    for stage in unknown:
        print(f"{stage:32} {totals[stage] / requests / 1000:10.1f} (unlisted stage)")
    attributed = total_ns - totals.get(UNATTRIBUTED, 0)
    print(f"{'total (instrumented)':32} {total_ns / requests / 1000:10.1f} {1:7.1%}")
    print(
        f"attributed to a stage: {attributed / total_ns:.1%}; the per-request sum of stages "
        f"equals the thread CPU measured around each request "
        f"({abs(total_ns - sum(staged.thread_ns)) / 1000 / requests:.1f} µs apart)"
    )
    inference_ns = sum(totals.get(s, 0) for s in INFERENCE)
    without = (total_ns - inference_ns) / requests / 1000
    per_call = proxy_cost_us()
    timed_calls = sum(calls.values()) / requests
    print(
        f"proxies' own cost: {timed_calls:.0f} timed calls/request x {per_call:.2f} µs "
        f"(calibrated on a no-op) ≈ {timed_calls * per_call:.0f} µs/request, spread over "
        f"the stages"
    )
    print(
        f"\nwithout model inference: {without:.0f} µs/request instrumented, "
        f"≈{without - timed_calls * per_call:.0f} µs without the proxies' cost; "
        f"target ≤ {TARGET_US:.0f} µs; bare functions-framework: {bare_us:.0f} µs"
    )
    print("\nSQLite per chat turn (traced pass):")
    writes = sum(counter.write_transactions.values()) / requests
    statements = sum(counter.statements.values()) / requests
    reads = sum(counter.reads.values()) / requests
    print(
        f"  write transactions {writes:.2f}, statements {statements:.2f} "
        f"(of which autocommit reads {reads:.2f})"
    )
    print("  write transactions by stage and call:")
    for (stage, call), count in sorted(counter.write_transactions.items()):
        print(f"    {count / requests:5.2f}  {stage:28} {call}")
    print("  statements by stage and call:")
    for (stage, call), count in sorted(counter.statements.items()):
        print(f"    {count / requests:5.2f}  {stage:28} {call}")
    if args.detail:
        print("\ntimed calls per request:")
        for (stage, what), count in sorted(calls.items()):
            print(f"    {count / requests:5.2f}  {stage:28} {what}")


if __name__ == "__main__":
    sys.exit(main())
