"""pull, push, login, logout and hosts: the registry commands, built on the copy engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyctl.config import Settings
from pyctl.containerd import images
from pyctl.containerd.client import Client, ContainerdNotFound
from pyctl.containerd.store import ContainerdStore, LocalFirstSource, source_label_key
from pyctl.copy import PlatformFilter, Progress, copy, default_filter, plan
from pyctl.errors import (
    ConfigError,
    InvalidArgumentError,
    InvalidReferenceError,
    NotFoundError,
    PyctlError,
    RegistryError,
    RegistryUnreachable,
)
from pyctl.oci import Descriptor, Index, is_index
from pyctl.reference import Reference, parse_docker_ref
from pyctl.registry.connect import RegistryConfig
from pyctl.registry.credentials import Credential
from pyctl.registry.credentials.keys import DOCKER_HUB_KEY, auth_key
from pyctl.registry.hosts.containerd_config import ContainerdConfig
from pyctl.registry.hosts.golang import split_host_port
from pyctl.registry.hosts.model import endpoint_credential, registry_endpoint_hosts
from pyctl.registry.store import RegistryDestination, RegistrySource
from pyctl.results.check import CheckVerdict, EndpointCheck, Finding, HostsCheck, Severity
from pyctl.results.transfers import PullResult, PushResult


def _ref(text: str, verb: str) -> Reference:
    try:
        return parse_docker_ref(text)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"{verb} {text}: {exc}") from None


def pull(
    client: Client,
    rc: RegistryConfig,
    ref_text: str,
    *,
    platforms: Sequence[str] = (),
    all_platforms: bool = False,
    unpack: str = "auto",
    concurrency: int = 3,
    progress: Progress | None = None,
) -> PullResult:
    ref = _ref(ref_text, "pull")
    name = str(ref)
    filt = default_filter(platforms, all_platforms)
    client.connect()  # a containerd we cannot use fails the pull before anything is fetched
    registry = rc.repository(ref.domain, ref.path, pool=max(8, concurrency + 2))
    try:
        try:
            desc, _host = registry.resolve(ref.digest or ref.tag or "latest")
        except NotFoundError as exc:
            shown = f"{name}: " if name != ref_text else ""  # say what it was normalized to
            raise NotFoundError(f"pull {ref_text}: {shown}{exc.message}") from None
        source = LocalFirstSource(client, RegistrySource(registry))
        store: ContainerdStore | None = None
        # A pull that wrote something keeps its lease on failure (the next one resumes); one
        # that failed before (no such platform, registry gone) leaves nothing behind.
        with client.lease_context(keep_on_error=lambda: store is not None and store.wrote):
            the_plan = plan(source, desc, filt)
            store = ContainerdStore(
                client,
                snapshotter=rc.settings.snapshotter,
                unpack=unpack,
                source_hostname=split_host_port(ref.domain)[0],
                source_repo=ref.path,
                names=[name],
            )
            stats = copy(
                source,
                store,
                the_plan,
                concurrency=concurrency,
                progress=progress,
                observer=store,  # leases and unpacking
            )
    finally:
        registry.close()
    return PullResult(
        reference=name,
        digest=desc.digest,
        written=len(stats.written),
        existing=len(stats.existing),
        unpacked=tuple(store.unpacked),
    )


def _push_root(
    store: ContainerdStore, target: Descriptor, filt: PlatformFilter | None, all_platforms: bool
) -> tuple[Descriptor, PlatformFilter]:
    """What to push: the whole index when its manifests are all here (or --all-platforms),
    the single matching manifest with --platform."""
    if not is_index(target.media_type):
        return target, PlatformFilter(all=True)
    index = Index.parse(store.read(target), target.media_type)
    if filt is not None:
        chosen = filt.select(index.manifests)
        if not chosen:
            raise PyctlError(f"the image has no manifest for {filt.describe()}")
        if len(chosen) == 1:
            return chosen[0], PlatformFilter(all=True)
        raise PyctlError(
            "push one platform with --platform, or the whole index with --all-platforms"
        )
    present = store.info_labels(m.digest for m in index.manifests)
    absent = [m for m in index.manifests if m.digest not in present]
    if absent and not all_platforms:
        have = ", ".join(str(m.platform) for m in index.manifests if m.digest in present)
        lack = ", ".join(str(m.platform) for m in absent)
        raise PyctlError(
            f"only some platforms of this image are here ({have}; missing {lack}): push one "
            "with --platform, or pull it with --all-platforms first"
        )
    return target, PlatformFilter(all=True)


def push(
    client: Client,
    rc: RegistryConfig,
    ref_text: str,
    *,
    platforms: Sequence[str] = (),
    all_platforms: bool = False,
    concurrency: int = 3,
    progress: Progress | None = None,
) -> PushResult:
    ref = _ref(ref_text, "push")
    name = str(ref)
    try:
        record = images.get(client, name)
    except ContainerdNotFound:
        raise NotFoundError(
            f'push {ref_text}: no such image "{name}" (tag an image with that name first)'
        ) from None
    store = ContainerdStore(client)
    filt = default_filter(platforms, False) if platforms else None
    root, root_filter = _push_root(store, record.target, filt, all_platforms)
    the_plan = plan(store, root, root_filter)
    blobs = the_plan.descriptors()
    labels = store.info_labels(d.digest for d in blobs)
    missing = [d.digest for d in the_plan.layers() if d.digest not in labels]
    if missing:
        raise PyctlError(
            f"push {ref_text}: layer {missing[0]} is not in containerd (pull the image again)"
        )
    hostname = split_host_port(ref.domain)[0]
    key = source_label_key(hostname)
    # the repositories of this registry each blob is known to be in (the target's own too:
    # a blob already there is looked up before any mount)
    mount_from = {d: [r for r in lab.get(key, "").split(",") if r] for d, lab in labels.items()}
    registry = rc.repository(ref.domain, ref.path, push=True, pool=max(8, concurrency + 2))
    try:
        dest = RegistryDestination(registry, the_plan.root, ref.tag, mount_from=mount_from)
        stats = copy(store, dest, the_plan, concurrency=concurrency, progress=progress)
    finally:
        registry.close()
    store.add_source([d.digest for d in blobs], hostname, ref.path)
    return PushResult(
        reference=name,
        tag=ref.tag or root.digest,
        digest=root.digest,
        size=root.size,
        uploaded=len(dest.uploaded),
        mounted=len(dest.mounted),
        existing=len(stats.existing),
    )


# login / logout -----------------------------------------------------------------------------


def registry_host(server: str | None) -> str:
    """The registry host an operator means: ``docker.io`` by default; URL forms and
    Docker Hub's aliases accepted."""
    if not server:
        return "docker.io"
    key = auth_key(server)
    if key == DOCKER_HUB_KEY:
        return "docker.io"
    return key


def login(rc: RegistryConfig, server: str | None, username: str, password: str) -> str:
    """Verify the credentials against the registry, then store them; returns where."""
    host = registry_host(server)
    if not username:
        raise PyctlError("login: a username is required")
    if not password:
        raise PyctlError("login: a password is required")
    cred = Credential(username=username, secret=password, source="login")
    endpoints = rc.hosts(host)
    # Verify where a pull would use these credentials: the registry's own endpoints (never a
    # mirror on another host), in pull order, each with its TLS settings. One that cannot be
    # reached gives way to the next; an answer (yes or no) decides.
    own = registry_endpoint_hosts(host, endpoints)
    targets = [h for h in endpoints if h.host in own] or endpoints[-1:]
    registry = rc.repository(host, "", endpoints=targets, credential=cred)
    failures: list[PyctlError] = []
    try:
        for target in targets:
            try:
                registry.ping(target)
                break
            except RegistryUnreachable as exc:  # unreachable, TLS: the next endpoint may do
                failures.append(exc)
            except RegistryError as exc:
                if exc.status == 401:  # the registry (or its token server) refused them
                    raise PyctlError(
                        f"login {host}: unauthorized: incorrect username or password"
                    ) from None
                raise PyctlError(f"login {host}: {exc}") from None
        else:
            raise PyctlError(f"login {host}: {failures[0]}") from None
    finally:
        registry.close()
    return rc.docker.store(DOCKER_HUB_KEY if host == "docker.io" else host, cred)


def logout(rc: RegistryConfig, server: str | None) -> tuple[str, bool]:
    host = registry_host(server)
    key = DOCKER_HUB_KEY if host == "docker.io" else host
    return key, rc.docker.erase(key)


# hosts --------------------------------------------------------------------------------------


def hosts_target(arg: str) -> tuple[str, Reference | None]:
    """``hosts`` takes a registry host or an image reference: the registry host, and the
    image (None when a host was given)."""
    if "/" not in arg and ("." in arg or ":" in arg or arg == "localhost"):
        return registry_host(arg), None
    ref = _ref(arg, "hosts")
    return ref.domain, ref


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
    host = hosts_target(arg)[0]
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
