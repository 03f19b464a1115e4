"""Waiting for an ingest another client holds (containerd answers UNAVAILABLE "ref … locked"):
as long as that client makes progress, and not much longer once it stops."""

from __future__ import annotations

import types
from collections.abc import Callable

import pytest

from pyctl.containerd import client as client_mod
from pyctl.containerd.client import ContainerdUnavailable, retry_unavailable
from pyctl.errors import PyctlError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + 1.0  # every retry costs a second of (fake) time


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(
        client_mod, "time", types.SimpleNamespace(monotonic=c.monotonic, sleep=c.sleep)
    )
    return c


def locked_until(clock: Clock, free_at: float) -> Callable[[], str]:
    def fn() -> str:
        if clock.now < free_at:
            raise ContainerdUnavailable("ref default/1/layer-x locked for 1s: unavailable")
        return "written"

    return fn


def test_waits_while_the_other_writer_makes_progress(clock: Clock) -> None:
    fn = locked_until(clock, 300.0)  # five minutes, far beyond the deadline
    assert retry_unavailable(fn, deadline=60, progress=lambda: int(clock.now)) == "written"
    assert clock.now >= 300


def test_gives_up_when_the_other_writer_is_stuck(clock: Clock) -> None:
    fn = locked_until(clock, 300.0)
    with pytest.raises(ContainerdUnavailable):
        retry_unavailable(fn, deadline=60, progress=lambda: 1234)
    assert 60 < clock.now < 70


def test_without_a_probe_the_deadline_is_absolute(clock: Clock) -> None:
    with pytest.raises(ContainerdUnavailable):
        retry_unavailable(locked_until(clock, 300.0), deadline=60)
    assert 60 < clock.now < 70


def test_a_failing_probe_counts_as_no_progress(clock: Clock) -> None:
    def probe() -> int:
        raise PyctlError("ingest gone")

    with pytest.raises(ContainerdUnavailable):
        retry_unavailable(locked_until(clock, 300.0), deadline=60, progress=probe)
    assert clock.now < 70
