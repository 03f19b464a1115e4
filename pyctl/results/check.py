"""`hosts --check`: the configuration findings, each endpoint's steps, the verdict."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# hosts --check --------------------------------------------------------------------------------


class Severity(enum.StrEnum):
    """How a line of ``hosts --check`` reads: ``ok``, ``warn`` (works here, breaks elsewhere
    or is worth a look) or ``FAIL`` (keeps a pull from working)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    """A line of the configuration checklist: how bad, where (file, line), what is wrong,
    what to do."""

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


@dataclass(frozen=True)
class CheckStep:
    """One probe of an endpoint: ``step`` is ``dns``, ``connect``, ``tls``, ``verify``,
    ``hostname``, ``v2``, ``token``, ``credentials``, ``auth``, ``manifest`` or ``platform``;
    ``seconds`` is how long it took."""

    step: str
    severity: Severity
    message: str
    fix: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "severity": str(self.severity),
            "message": self.message,
            "fix": self.fix,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class PresentedCertificate:
    """A certificate of the chain a registry presents in its TLS handshake."""

    subject: str  # RFC 4514: CN=harbor.local,O=…
    issuer: str
    names: tuple[str, ...]  # subjectAltName: DNS names and IP addresses
    not_before: datetime
    not_after: datetime
    sha256: str  # fingerprint of the DER form, hex

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "names": list(self.names),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class EndpointCheck:
    """The probes of one endpoint, in the order they ran (a step that fails ends them).
    ``usable``: a pull could use this endpoint (for REF: its manifest, with a platform of
    this machine, is there; for a HOST: ``/v2/`` answers with usable credentials)."""

    url: str  # scheme://host/v2 as configured
    role: str  # "mirror" or "registry" (the registry's own host: it gets its credentials)
    capabilities: tuple[str, ...]
    config: str  # the configuration that gave it: hosts.toml FILE, certs.d directory DIR, …
    steps: tuple[CheckStep, ...]
    usable: bool
    chain: tuple[PresentedCertificate, ...] = ()  # what its TLS handshake presented

    @property
    def failed(self) -> CheckStep | None:
        """The step that failed, if one did."""
        return next((s for s in self.steps if s.severity is Severity.FAIL), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "role": self.role,
            "capabilities": list(self.capabilities),
            "config": self.config,
            "usable": self.usable,
            "chain": [c.as_dict() for c in self.chain],
            "steps": [s.as_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class CheckVerdict:
    """Whether a pull would work: ``endpoint`` is the one a pull would use (None: none)."""

    ok: bool
    endpoint: str | None
    reason: str  # why not, or what a pull does


@dataclass(frozen=True)
class HostsCheck:
    """``pyctl hosts --check``: configuration findings, the probes of each endpoint in the
    order a pull tries them, and the verdict. ``reference`` is the image checked (None when
    a registry host was given)."""

    registry: str
    config: tuple[Finding, ...]
    verdict: CheckVerdict
    endpoints: tuple[EndpointCheck, ...] = ()
    reference: str | None = None
    not_probed: str = ""  # why the endpoints were not probed ("" when they were)

    def as_dict(self) -> dict[str, object]:
        """The ``--format json`` document: ``config``, ``endpoints``, ``verdict``."""
        return {
            "config": [f.as_dict() for f in self.config],
            "endpoints": [e.as_dict() for e in self.endpoints],
            "verdict": {
                "ok": self.verdict.ok,
                "registry": self.registry,
                "reference": self.reference,
                "endpoint": self.verdict.endpoint,
                "reason": self.verdict.reason,
            },
        }
