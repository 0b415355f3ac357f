"""Per-stage CPU accounting for one thread, by timing proxies around an App's ports.

A `StageClock` keeps a stack of active stages and charges the thread's CPU time
(`time.thread_time_ns`) between two events to the stage on top: self time, like a
profiler, so a store read inside routing counts as `load`, not as `routing`. A *sticky*
stage keeps what runs inside it (the outbox writes a publish makes are `events`), except
for its own sub-stages (`events: ...`). Time with no stage active (Flask, request
parsing, the HTTP handler's glue) is `unattributed`.

`Timed(target, ...)` forwards every attribute to `target` and times its method calls
(and the iteration of the iterators they return). `rewire(root, proxies)` swaps every
reference to a wrapped object reachable from `root` (attributes of `ion` objects, lists,
dicts) for its proxy, found by identity, not by attribute name, so the bench keeps
working when the composition root or the services move their fields around.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

UNATTRIBUTED = "unattributed"


class StageClock:
    """Self CPU time per stage for the calling thread (single-threaded use)."""

    def __init__(self, sticky: frozenset[str] = frozenset()) -> None:
        self.sticky = sticky
        self.totals_ns: defaultdict[str, int] = defaultdict(int)
        self.calls: Counter[tuple[str, str]] = Counter()
        self._stack: list[str] = []
        self._whats: list[str] = []
        self._last = time.thread_time_ns()
        self.enabled = False

    @property
    def current(self) -> str:
        return self._stack[-1] if self._stack else UNATTRIBUTED

    @property
    def current_call(self) -> str:
        """The innermost timed call running now (e.g. `SqliteStore.save_turn`)."""
        return self._whats[-1] if self._whats else UNATTRIBUTED

    def _charge(self) -> None:
        now = time.thread_time_ns()
        self.totals_ns[self.current] += now - self._last
        self._last = now

    def enter(self, stage: str, what: str) -> None:
        self._charge()
        outer = self.current
        if outer in self.sticky and not stage.startswith(outer):
            stage = outer
        self._stack.append(stage)
        self._whats.append(what)
        self.calls[(stage, what)] += 1

    def leave(self) -> None:
        self._charge()
        self._stack.pop()
        self._whats.pop()

    def start(self) -> None:
        """Begin a measured span (a request): time before it is not charged."""
        if self._stack:
            raise RuntimeError(f"stages still open: {self._stack}")
        self._last = time.thread_time_ns()
        self.enabled = True

    def stop(self) -> None:
        self._charge()
        self.enabled = False

    def reset(self) -> None:
        self.totals_ns.clear()
        self.calls.clear()


Classifier = Callable[[str], str]


class Timed:
    """A transparent proxy: `target`'s method calls are charged to a stage."""

    __slots__ = ("_clock", "_label", "_methods", "_stage_of", "_target")

    def __init__(
        self, target: object, clock: StageClock, stage: str | Classifier, label: str = ""
    ) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_clock", clock)
        object.__setattr__(self, "_stage_of", stage if callable(stage) else (lambda _n: stage))
        object.__setattr__(self, "_label", label or type(target).__name__)
        object.__setattr__(self, "_methods", {})

    def __getattr__(self, name: str) -> Any:
        cached = self._methods.get(name)
        if cached is not None:
            return cached
        value = getattr(self._target, name)
        if not callable(value) or isinstance(value, type) or name.startswith("__"):
            return value
        wrapper = _timed_call(value, self._clock, self._stage_of(name), f"{self._label}.{name}")
        self._methods[name] = wrapper
        return wrapper

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return f"Timed({self._target!r})"


def _timed_call(
    method: Callable[..., Any], clock: StageClock, stage: str, what: str
) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if not clock.enabled:
            return method(*args, **kwargs)
        clock.enter(stage, what)
        try:
            result = method(*args, **kwargs)
        finally:
            clock.leave()
        if isinstance(result, Iterator):
            return _timed_iteration(result, clock, stage, what)
        return result

    return call


def _timed_iteration(source: Iterator[Any], clock: StageClock, stage: str, what: str) -> Any:
    while True:
        if clock.enabled:
            clock.enter(stage, what + "[next]")
        try:
            item = next(source)
        except StopIteration:
            return
        finally:
            if clock.enabled:
                clock.leave()
        yield item


def timed_function(
    function: Callable[..., Any], clock: StageClock, stage: str
) -> Callable[..., Any]:
    """A module-level function charged to `stage` (see `rebind_globals`)."""
    return _timed_call(function, clock, stage, function.__name__)


def rebind_globals(modules: dict[str, Any], original: object, replacement: object) -> int:
    """Replace `original` by `replacement` in the globals of every module of `modules`
    whose name starts with `ion.`; how many bindings were replaced."""
    count = 0
    for name, module in list(modules.items()):
        if not name.startswith("ion.") or module is None:
            continue
        namespace = vars(module)
        for key, value in list(namespace.items()):
            if value is original:
                namespace[key] = replacement
                count += 1
    return count


def _is_ion_object(value: object) -> bool:
    return type(value).__module__.startswith("ion.") and hasattr(value, "__dict__")


def rewire(root: object, proxies: dict[int, Timed]) -> Counter[int]:
    """Swap each reference reachable from `root` to an object whose id is in `proxies` for
    its proxy; returns how many references were swapped per id (0: never reached)."""
    swapped: Counter[int] = Counter()
    seen: set[int] = set()
    pending: list[object] = [root]

    def visit(value: object) -> object:
        replacement = proxies.get(id(value))
        if replacement is not None:
            swapped[id(value)] += 1
        if isinstance(value, dict | list | tuple | set | frozenset) or _is_ion_object(value):
            pending.append(value)
        return replacement if replacement is not None else value

    while pending:
        current = pending.pop()
        if id(current) in seen or isinstance(current, Timed):
            continue
        seen.add(id(current))
        if isinstance(current, dict):
            for key, value in list(current.items()):
                new = visit(value)
                if new is not value:
                    current[key] = new
        elif isinstance(current, list):
            for index, value in enumerate(list(current)):
                new = visit(value)
                if new is not value:
                    current[index] = new
        elif isinstance(current, tuple | set | frozenset):
            for value in current:
                if visit(value) is not value:
                    raise RuntimeError(f"cannot rewire inside an immutable {type(current)}")
        else:
            for name, value in list(vars(current).items()):
                new = visit(value)
                if new is not value:
                    object.__setattr__(current, name, new)
    return swapped
