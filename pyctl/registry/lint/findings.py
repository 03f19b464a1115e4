"""What the lint reports: findings, and the report they are gathered in while it runs."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pyctl.config import Settings


class Severity(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    """One line of the checklist: how bad, where (file, line), what is wrong, what to do."""

    severity: Severity
    file: str
    line: int | None
    message: str
    fix: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": str(self.severity),
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class Report:
    """The findings so far, and what every check needs to know: the registry host (as the
    image reference names it), the hosts directories searched and the hosts a pull of it
    would send requests to."""

    settings: Settings
    host: str
    dirs: list[str] = field(default_factory=list)
    endpoint_hosts: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)

    def ok(self, file: str, line: int | None, message: str) -> None:
        self.findings.append(Finding(Severity.OK, file, line, message))

    def warn(self, file: str, line: int | None, message: str, fix: str) -> None:
        self.findings.append(Finding(Severity.WARN, file, line, message, fix))

    def fail(self, file: str, line: int | None, message: str, fix: str) -> None:
        self.findings.append(Finding(Severity.FAIL, file, line, message, fix))

    def failures(self) -> int:
        return sum(f.severity is Severity.FAIL for f in self.findings)
