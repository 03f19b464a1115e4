"""The ``hosts`` command: which endpoints a pull of a registry or image tries, with what
TLS, credentials and source files (``explain_hosts``), and whether they work
(``check_hosts``: the configuration lint, each endpoint probed, the verdict)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyctl.config import Settings
from pyctl.errors import ConfigError, InvalidArgumentError, PyctlError
from pyctl.ops.registry import ref_of, registry_host
from pyctl.reference import Reference
from pyctl.registry.connect import RegistryConfig
from pyctl.registry.credentials import Credential
from pyctl.registry.hosts.containerd_config import ContainerdConfig
from pyctl.registry.hosts.golang import split_host_port
from pyctl.registry.hosts.model import endpoint_credential, registry_endpoint_hosts
from pyctl.results.check import CheckVerdict, EndpointCheck, Finding, HostsCheck, Severity


def hosts_target(arg: str) -> tuple[str, Reference | None]:
    """``hosts`` takes a registry host or an image reference: the registry host, and the
    image (None when a host was given)."""
    if _is_host(arg):
        return registry_host(arg), None
    ref = ref_of(arg, "hosts")
    return ref.domain, ref


def _is_host(arg: str) -> bool:
    """A registry host, not an image: a URL, a host with a trailing slash (``registry:5000/``),
    or a name with a dot, ``localhost`` or a bracketed IPv6 address, with or without a numeric
    port (``harbor.local``, ``10.0.0.5:5000``, ``localhost:5000``, ``[::1]:5000``). Anything
    else reads as Docker's reference grammar reads it: ``python:3.11``, ``busybox:1`` and
    ``registry:5000`` are images of Docker Hub."""
    if "://" in arg or (arg.endswith("/") and arg.count("/") == 1):
        return True
    if "/" in arg:
        return False
    name, port = split_host_port(arg)
    if port and not port.isdigit():
        return False
    return "." in name or name == "localhost" or arg.startswith("[")


def check_hosts(settings: Settings, arg: str, timeout: float = 5.0) -> HostsCheck:
    """``hosts --check``: the lint of the configuration that applies to ``arg`` (offline),
    then each endpoint a pull tries, probed step by step (each step within ``timeout``
    seconds), and the verdict. Reads, never writes.

    containerd's config is read by the lint itself, so a file containerd would not start with
    is a finding rather than an error; so is a configuration pyctl cannot use (the endpoints
    are then not probed, and the verdict says why).
    """
    from pyctl.registry.lint import lint
    from pyctl.registry.probes import probe_endpoints

    if not timeout > 0:
        raise InvalidArgumentError(f"hosts --check: the timeout must be positive (not {timeout})")
    host, ref = hosts_target(arg)
    findings = tuple(lint(settings, host))
    endpoints: tuple[EndpointCheck, ...] = ()
    not_probed = ""
    try:
        rc = RegistryConfig.load(settings)
        endpoints = tuple(probe_endpoints(rc, host, ref, timeout))
    except ConfigError as exc:
        not_probed = exc.message
    reference = str(ref) if ref is not None else None
    verdict = _verdict(
        findings, endpoints, f"of {reference}" if reference else f"from {host}", not_probed
    )
    return HostsCheck(host, findings, verdict, endpoints, reference, not_probed)


def _verdict(
    findings: Sequence[Finding],
    endpoints: Sequence[EndpointCheck],
    target: str,
    not_probed: str,
) -> CheckVerdict:
    """A pull (``target``: ``of REF``, ``from HOST``) would work when an endpoint is usable and
    the configuration has no FAIL (containerd reads it too); the reason names the endpoint a
    pull uses, or why none works."""
    failed = [f for f in findings if f.severity is Severity.FAIL]
    chosen = next((i for i, e in enumerate(endpoints) if e.usable), None)
    if not_probed:
        text = f"the endpoints were not probed: {not_probed}"
    elif not endpoints:
        text = "no endpoint has the pull capability (check the hosts.toml)"
    elif chosen is None:
        text = "no endpoint works: " + "; ".join(_why_not(n, e) for n, e in enumerate(endpoints, 1))
    else:
        use = endpoints[chosen]
        text = f"a pull {target} uses {use.url}"
        if len(endpoints) > 1:
            text = f"a pull {target} uses endpoint {chosen + 1}, {use.url}"
        skipped = [_why_not(n, e) for n, e in enumerate(endpoints[:chosen], 1)]
        if skipped:
            text += f" (it falls through {'; '.join(skipped)})"
    if failed:
        n = len(failed)
        text = (
            f"{n} configuration problem{'s' if n > 1 else ''}, the first at {failed[0].where}; "
            f"{text}"
        )
    return CheckVerdict(
        chosen is not None and not failed,
        endpoints[chosen].url if chosen is not None else None,
        text,
    )


def _why_not(n: int, e: EndpointCheck) -> str:
    step = e.failed
    if step is not None:
        return f"{n}. {e.url} fails at {step.step}"
    return f"{n}. {e.url} cannot resolve tags (capabilities: {', '.join(e.capabilities)})"


def explain_hosts(rc: RegistryConfig, arg: str) -> dict[str, Any]:
    host, ref = hosts_target(arg)
    endpoints = rc.hosts(host)

    found: dict[str, Credential | str | None] = {}

    def lookup(name: str) -> Credential | str | None:
        # `hosts` explains: a broken credential helper is part of the answer, not a failure
        if name not in found:
            try:
                found[name] = rc.credential(name)
            except PyctlError as exc:
                found[name] = f"unavailable: {exc}"
        return found[name]

    own = registry_endpoint_hosts(host, endpoints)
    out: list[dict[str, Any]] = []
    for i, h in enumerate(endpoints, 1):
        request_host = h.host
        cred = endpoint_credential(host, request_host, own, lookup)
        out.append(
            {
                "Order": i,
                "Role": "registry" if request_host in own else "mirror",
                "URL": f"{h.scheme}://{h.host}{h.path}",
                "Scheme": h.scheme,
                "Host": h.host,
                "Path": h.path,
                "Capabilities": sorted(h.capabilities),
                "CA": list(h.ca),
                "ClientCerts": [{"Cert": c, "Key": k} for c, k in h.client],
                "SkipVerify": bool(h.skip_verify) or rc.settings.insecure_registry,
                "HTTPFallback": h.http_fallback or rc.settings.insecure_registry,
                "Headers": {k: list(v) for k, v in h.headers.items()},
                "Namespace": host if h.needs_ns(host) else "",
                "Credentials": _describe_cred(cred),
                "Source": h.source,
            }
        )
    return {
        "Registry": host,
        "Image": str(ref) if ref is not None else "",  # the reference read, when one was given
        "HostsDirs": list(rc.dirs),
        "ContainerdConfig": rc.cri.path or "",
        **_explain_containerd_config(rc.containerd),
        "DockerConfig": rc.docker.path,
        "Endpoints": out,
    }


def _explain_containerd_config(cd: ContainerdConfig) -> dict[str, Any]:
    """The files of containerd's config, how they were merged, and each CRI registry setting
    with the file it came from (secrets are named, never shown)."""
    return {
        "ContainerdConfigFiles": [
            {"Path": f.path, "ImportedBy": f.imported_by, "Version": f.version} for f in cd.files
        ],
        "ContainerdConfigRules": f"{cd.rules.value}: {cd.rules.merge}" if cd.rules else "",
        "ContainerdConfigRulesReason": cd.reason,
        "ContainerdConfigNote": cd.note,
        "CRIRegistrySettings": [
            {
                "Key": s.dotted,
                "Value": None if s.secret else s.value,
                "Secret": s.secret,
                "Source": s.origin.file,
                "Table": s.origin.table,
            }
            for s in cd.settings()
        ],
    }


def _describe_cred(cred: Credential | str | None) -> str:
    if cred is None:
        return "none (anonymous)"
    if isinstance(cred, str):
        return cred
    return cred.describe()
