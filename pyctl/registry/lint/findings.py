"""What the lint reports: findings (the type lives in :mod:`pyctl.results`, with the rest of the
``hosts --check`` report), and the report they are gathered in while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyctl.config import Settings
from pyctl.results.check import Finding, Severity

__all__ = ["Finding", "Report", "Severity"]


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
