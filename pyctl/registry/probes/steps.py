"""The checklist of one endpoint, and the time limit of each of its steps.

Each step runs in a thread of its own and is waited for until its time is up: a name server
that does not answer, a registry that accepts the connection and never says a word, a token
server that trickles its answer or a credential helper that hangs all end their step at the
timeout, and the report goes on. Sockets get the same timeout, so the thread of a step that
ran out of time ends soon after (it is a daemon thread: it never holds the process up).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pyctl.results.check import CheckStep, Severity

T = TypeVar("T")

GRACE = 0.25  # seconds a step's own socket timeout gets to report itself before the deadline


class TimedOut(Exception):
    """A step did not end within its time."""


def within(seconds: float, work: Callable[[], T]) -> T:
    """``work()``, or :class:`TimedOut` when it has not ended after ``seconds``."""
    result: list[T] = []
    error: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="pyctl-check-step", daemon=True).start()
    if not done.wait(seconds + GRACE):
        raise TimedOut
    if error:
        raise error[0]
    return result[0]


class Checklist:
    """The steps of one endpoint so far; ``timeout`` is each step's time limit (seconds)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.steps: list[CheckStep] = []
        self._started = time.monotonic()

    def start(self) -> None:
        """A step begins now (its time is counted from here)."""
        self._started = time.monotonic()

    def add(self, step: str, severity: Severity, message: str, fix: str = "") -> CheckStep:
        """The step that began at the last :meth:`start` ended so."""
        s = CheckStep(step, severity, message, fix, time.monotonic() - self._started)
        self.steps.append(s)
        self._started = time.monotonic()
        return s

    def ok(self, step: str, message: str) -> None:
        self.add(step, Severity.OK, message)

    def warn(self, step: str, message: str, fix: str = "") -> None:
        self.add(step, Severity.WARN, message, fix)

    def fail(self, step: str, message: str, fix: str = "") -> None:
        self.add(step, Severity.FAIL, message, fix)

    def timed_out(self, step: str, what: str, fix: str = "") -> None:
        """``step`` ran out of time doing ``what`` (``waiting for …``)."""
        self.fail(step, f"no answer within {seconds(self.timeout)} {what}", fix)

    @property
    def elapsed(self) -> float:
        """Seconds since the current step began."""
        return time.monotonic() - self._started

    @property
    def failed(self) -> bool:
        return any(s.severity is Severity.FAIL for s in self.steps)

    def run(self, work: Callable[[], T]) -> T:
        """``work()`` within this checklist's time limit (:class:`TimedOut` otherwise); the
        step's clock starts now."""
        self.start()
        return within(self.timeout, work)


def seconds(value: float) -> str:
    """``5 s``, ``0.5 s``."""
    return f"{value:g} s"


def millis(value: float) -> str:
    """A short duration for a message: ``0.4 ms``, ``12 ms``, ``1.3 s``."""
    if value < 0.01:
        return f"{value * 1000:.1f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s"
