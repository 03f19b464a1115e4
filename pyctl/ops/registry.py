"""pull, push, login and logout: the registry commands, built on the copy engine."""

from __future__ import annotations

from collections.abc import Sequence

from pyctl.containerd import images
from pyctl.containerd.client import Client, ContainerdNotFound
from pyctl.containerd.store import ContainerdStore, LocalFirstSource, source_label_key
from pyctl.copy import PlatformFilter, Progress, copy, default_filter, plan
from pyctl.errors import (
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
from pyctl.registry.hosts.golang import split_host_port
from pyctl.registry.hosts.model import registry_endpoint_hosts
from pyctl.registry.store import RegistryDestination, RegistrySource
from pyctl.results.transfers import PullResult, PushResult


def ref_of(text: str, verb: str) -> Reference:
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
    ref = ref_of(ref_text, "pull")
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
    ref = ref_of(ref_text, "push")
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
    store.add_source(labels, hostname, ref.path)
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
