"""The endpoints to try for a registry, in order: containerd's ``ConfigureHosts`` over the
entries of the hosts directory that applies (or the legacy CRI mirrors, or none), with pyctl's
rules from SPEC "Registry configuration" (a loopback registry is tried over HTTPS, then plain
HTTP; ``--insecure-registry`` is containerd's ``DefaultScheme="http"`` with TLS unverified).

Pure configuration: no network access. The HTTP client consumes the :class:`RegistryHost`
entries (scheme, TLS material, headers, ``http_fallback``, ``ns`` query).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyctl.registry.hosts.certsd import load_host_dir, lookup_host_dir
from pyctl.registry.hosts.cri import legacy_cri_hosts
from pyctl.registry.hosts.golang import is_localhost, split_host_port
from pyctl.registry.hosts.model import (
    ALL_CAPABILITIES,
    DOCKER_HUB,
    DOCKER_HUB_REGISTRY,
    CriRegistryConfig,
    RegistryHost,
    canonical_ref_host,
)


def configure_hosts(
    ref_host: str,
    entries: Sequence[RegistryHost] | None = None,
    *,
    default_scheme: str = "",
    default_tls: bool | None = None,
) -> list[RegistryHost]:
    """containerd ``ConfigureHosts`` on raw entries (A4 + A5).

    ``entries=None`` means "no configuration": one empty root entry. ``default_scheme`` is
    ``HostOptions.DefaultScheme``; ``default_tls`` models ``HostOptions.DefaultTLS``: None for
    nil, else its ``InsecureSkipVerify`` (which entries without their own ``skip_verify``
    inherit).

    * The last entry, if it names no host, becomes the default upstream: ``docker.io`` →
      ``https://registry-1.docker.io``; a loopback host with no default scheme → ``https`` for
      no port / 443, else ``http`` (made ``https`` + fallback below), ``skip_verify`` unless the
      port is 80 (only when the entry does not set it); other hosts → ``default_scheme`` or
      ``https``. Path ``/v2``, all capabilities.
    * Every entry with scheme ``http``, explicit TLS (its own or ``default_tls``) and a port
      other than 80 becomes ``https`` with ``http_fallback``.
    """
    ref = canonical_ref_host(ref_host)
    hosts = [RegistryHost.unfilled("default")] if entries is None else list(entries)
    return _scheme_rules(_fill_last(hosts, ref, default_scheme), default_tls)


def _fill_last(hosts: list[RegistryHost], ref: str, default_scheme: str) -> list[RegistryHost]:
    if hosts and hosts[-1].host == "":
        hosts = [*hosts[:-1], _fill_default(hosts[-1], ref, default_scheme)]
    return hosts


def _scheme_rules(hosts: Sequence[RegistryHost], default_tls: bool | None) -> list[RegistryHost]:
    out: list[RegistryHost] = []
    for h in hosts:
        explicit = default_tls is not None or h.explicit_tls
        if h.scheme == "http" and explicit and h.port != "80":
            h = h._replace(scheme="https", http_fallback=True)
        if default_tls is not None and h.skip_verify is None:
            h = h._replace(skip_verify=default_tls)
        out.append(h)
    return out


def _fill_default(entry: RegistryHost, ref: str, default_scheme: str) -> RegistryHost:
    skip_verify = entry.skip_verify
    if ref == DOCKER_HUB:
        scheme, host = "https", DOCKER_HUB_REGISTRY
    elif is_localhost(ref):
        host = ref
        if default_scheme:
            scheme = default_scheme
        else:
            port = split_host_port(ref)[1]
            scheme = "https" if port in ("", "443") else "http"
            if port != "80" and skip_verify is None:
                skip_verify = True
    else:
        scheme, host = default_scheme or "https", ref
    return entry._replace(
        scheme=scheme,
        host=host,
        path="/v2",
        capabilities=ALL_CAPABILITIES,
        skip_verify=skip_verify,
        is_mirror=False,
    )


def resolve_hosts(
    ref_host: str,
    *,
    hosts_dirs: Sequence[str],
    cri: CriRegistryConfig | None = None,
    insecure: bool = False,
) -> list[RegistryHost]:
    """The endpoints to try for registry ``ref_host``, in order (mirrors first, then server).

    1. The first hosts directory with a directory for the host (:func:`lookup_host_dir`) gives
       the raw entries (``hosts.toml``, else cert files, else one empty root entry).
    2. Otherwise, when the CRI config has no ``config_path`` but legacy ``mirrors`` /
       ``configs``, those apply (:func:`legacy_cri_hosts`).
    3. Otherwise one empty root entry.

    Then :func:`configure_hosts` fills the default upstream and applies the HTTPS-first /
    HTTP-fallback rule. ``insecure`` (``--insecure-registry``) is containerd's
    ``DefaultScheme="http"`` + ``DefaultTLS={InsecureSkipVerify: true}``: the default upstream
    is tried over HTTPS and falls back to plain HTTP (unless it is ``docker.io`` or on port 80,
    which are not ambiguous), so is every ``http://`` entry; and every entry skips TLS
    verification (the flag overrides a ``skip_verify = false`` in a file).
    """
    ref = canonical_ref_host(ref_host)
    found = lookup_host_dir(ref, hosts_dirs)
    entries: list[RegistryHost] | None = None
    if found is not None:
        entries = load_host_dir(found)
    elif cri is not None and not cri.config_paths and cri.has_legacy:
        entries = legacy_cri_hosts(ref, cri)
    if not insecure:
        return configure_hosts(ref, entries)
    out = configure_hosts(ref, entries, default_scheme="http", default_tls=True)
    return [h._replace(skip_verify=True) for h in out]  # over a skip_verify = false too
