"""Progress reporting for transfers, on stderr: bars on a terminal, one line per finished blob
otherwise, nothing when quiet. The copy engine calls :class:`Progress` methods from several
threads."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any, Self

from pyctl.oci import Descriptor
from pyctl.render import human_size

_STATUS_TEXT = {
    "done": "Download complete",
    "exists": "Already exists",
    "pushed": "Pushed",
    "mounted": "Mounted from another repository",
    "skipped": "Skipped",
}


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class _Closing:
    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlainProgress(_Closing):
    """One line per finished blob (for logs and pipes)."""

    def __init__(self, stream: IO[str] | None = None, verb: str = "Download complete") -> None:
        self.stream = stream or sys.stderr
        self.verb = verb
        self._lock = threading.Lock()

    def start(self, desc: Descriptor, what: str) -> None:
        pass

    def advance(self, desc: Descriptor, n: int) -> None:
        pass

    def done(self, desc: Descriptor, status: str) -> None:
        text = self.verb if status == "done" else _STATUS_TEXT.get(status, status)
        with self._lock:
            print(
                f"{short(desc.digest)}: {text} ({human_size(desc.size)})",
                file=self.stream,
                flush=True,
            )

    def note(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)


class QuietProgress(PlainProgress):
    def done(self, desc: Descriptor, status: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class BarProgress(_Closing):
    """Per-blob progress bars (rich), for terminals."""

    def __init__(self, verb: str = "Downloading") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        class Speed(TransferSpeedColumn):
            """The rate, or nothing while (or when) there is none to tell: rich prints "?"."""

            def render(self, task: Any) -> Any:
                if (task.finished_speed or task.speed) is None:
                    from rich.text import Text

                    return Text("")
                return super().render(task)

        self.verb = verb
        self._progress = Progress(
            TextColumn("{task.fields[name]}"),
            BarColumn(bar_width=30),
            DownloadColumn(),
            Speed(),
            TextColumn("{task.fields[status]}"),
            console=Console(stderr=True),
            transient=False,
            refresh_per_second=8,
        )
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._progress.start()
        self._started = time.monotonic()

    def _task(self, desc: Descriptor) -> Any:
        with self._lock:
            task = self._tasks.get(desc.digest)
            if task is None:
                task = self._progress.add_task(
                    "", total=desc.size or None, name=short(desc.digest), status=""
                )
                self._tasks[desc.digest] = task
            return task

    def start(self, desc: Descriptor, what: str) -> None:
        self._progress.update(self._task(desc), status=self.verb)

    def advance(self, desc: Descriptor, n: int) -> None:
        self._progress.update(self._task(desc), advance=n)

    def done(self, desc: Descriptor, status: str) -> None:
        text = _STATUS_TEXT.get(status, status)
        self._progress.update(
            self._task(desc), completed=desc.size, status=text if status != "done" else "Done"
        )

    def note(self, text: str) -> None:
        self._progress.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        self._progress.stop()


def make_progress(quiet: bool, verb: str, plain_verb: str) -> PlainProgress | BarProgress:
    if quiet:
        return QuietProgress()
    if sys.stderr.isatty():
        return BarProgress(verb)
    return PlainProgress(verb=plain_verb)
