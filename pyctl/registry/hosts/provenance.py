"""Which registry configuration applied to an endpoint, in words an operator can act on.

A TLS, connection or auth failure names the hosts.toml (or certs.d directory, or CRI config)
that gave the endpoint its settings, or says that none applied, where pyctl looked, and
which directory nearly matched (``harbor.local/`` for ``harbor.local:8443``). A failed
certificate check gets the fix that fits the configuration that applied.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

from pyctl.registry.hosts.certsd import host_dir_candidates, lookup_host_dir
from pyctl.registry.hosts.golang import split_host_port
from pyctl.registry.hosts.model import DEFAULT_DIR, HOSTS_FILE, RegistryHost, canonical_ref_host


class HostsLookup(NamedTuple):
    """Where pyctl looked for ``ref_host``'s configuration and what it found."""

    ref_host: str
    dirs: tuple[str, ...]
    applied: str | None  # the host directory that matched
    near_misses: tuple[tuple[str, str], ...]  # (directory, the host it is for)

    @classmethod
    def of(cls, ref_host: str, dirs: Sequence[str]) -> HostsLookup:
        host = canonical_ref_host(ref_host)
        try:
            applied = lookup_host_dir(host, dirs)
        except Exception:  # an unreadable directory: the lookup itself reported it
            applied = None
        return cls(host, tuple(dirs), applied, () if applied else _near_misses(host, dirs))


def dir_host(name: str) -> str:
    """The registry host a hosts directory entry stands for (``HOST_PORT_`` is ``HOST:PORT``)."""
    if name.endswith("_") and name.count("_") >= 2:
        head, _, port = name[:-1].rpartition("_")
        if port.isdigit():
            return f"{head}:{port}"
    return name


def _near_misses(host: str, dirs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Host directories for the same host name with another port (or none): the classic
    ``harbor.local/`` for ``harbor.local:8443`` and ``harbor.local:443/`` for
    ``harbor.local``."""
    name, _ = split_host_port(host)
    out: list[tuple[str, str]] = []
    for root in dirs:
        try:
            entries = sorted(os.listdir(root))
        except OSError:
            continue
        for entry in entries:
            meant = dir_host(entry)
            if meant != host and entry != DEFAULT_DIR and split_host_port(meant)[0] == name:
                out.append((os.path.join(root, entry), meant))
    return tuple(out)


def near_misses(ref_host: str, dirs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(directory, the host it is for) of every directory under ``dirs`` for ``ref_host``'s
    name with another port or none — whether or not a directory applied (see
    :class:`HostsLookup` for the near misses of a lookup that found nothing)."""
    return _near_misses(canonical_ref_host(ref_host), dirs)


def _kind(entry: RegistryHost) -> str:
    src = entry.source
    if src.endswith(os.sep + HOSTS_FILE):
        return "hosts.toml"
    if src and src != "default" and os.path.isdir(src):
        return "certs.d"
    if src and src != "default":
        return "cri"
    return "none"


def _looked(lookup: HostsLookup) -> str:
    where = ", ".join(lookup.dirs) or "no hosts directory"
    text = f"no hosts.toml applies to {lookup.ref_host} (looked in {where})"
    for path, meant in lookup.near_misses:
        text += f"; {path} is for {meant}, not {lookup.ref_host}"
    return text


def applied_config(entry: RegistryHost, lookup: HostsLookup | None) -> str:
    """``hosts.toml FILE`` / ``certs.d directory DIR`` / ``CRI config FILE`` / what was
    looked for when nothing applied."""
    kind = _kind(entry)
    if kind == "hosts.toml":
        return f"hosts.toml {entry.source}"
    if kind == "certs.d":
        return f"certs.d directory {entry.source}"
    if kind == "cri":
        return f"CRI registry config {entry.source}"
    return _looked(lookup) if lookup is not None else "no hosts.toml applies"


def _crt_files(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(os.path.join(directory, n) for n in names if n.endswith(".crt"))


def _table(entry: RegistryHost) -> str:
    """Where ``entry`` is written in its hosts.toml: a ``[host."…"]`` table (``is_mirror``), or
    the file's top level (the root entry)."""
    if entry.is_mirror:
        return f'its [host."{entry.scheme}://{entry.host}"] table'
    return "its top level"


def _target(lookup: HostsLookup) -> str:
    """The host directory to create when none applied: ``FIRST_HOSTS_DIR/HOST[:PORT]``."""
    first = lookup.dirs[0] if lookup.dirs else "/etc/containerd/certs.d"
    return host_dir_candidates(first, lookup.ref_host)[-2]


def tls_fix(entry: RegistryHost, lookup: HostsLookup | None, verified_by: str = "") -> str:
    """What to do when the certificate ``entry``'s host presents does not verify;
    ``verified_by`` is a CA file known to verify it (``hosts --check`` tries the CA files it
    finds against the chain the server presents), to name instead of a placeholder."""
    kind = _kind(entry)
    url = f"{entry.scheme}://{entry.host}"
    does = f" (it verifies the certificate {entry.host} presents)" if verified_by else ""
    if kind == "hosts.toml":
        table = _table(entry)
        if entry.ca:
            text = (
                f"{entry.source} applied: its ca {', '.join(entry.ca)} does not verify the "
                f"certificate {entry.host} presents"
            )
            if verified_by:
                return f'{text}; {verified_by} does: write ca = "{verified_by}" in {table}'
            return f"{text} (is it the CA that signed it?), or use --insecure-registry"
        beside = _crt_files(os.path.dirname(entry.source))
        ca = verified_by or (beside[0] if beside else "/path/to/ca.crt")
        text = f'{entry.source} applied and sets no ca for {url}: add ca = "{ca}" to {table}'
        if beside and (not verified_by or verified_by in beside):
            names = ", ".join(os.path.basename(b) for b in beside)
            text += f" ({names} beside a hosts.toml is not read)"
        elif verified_by:
            return text + does
        return text + ", or use --insecure-registry"
    if kind == "certs.d":
        if entry.ca and not verified_by:
            return (
                f"certs.d directory {entry.source} applied: its {', '.join(entry.ca)} does not "
                f"verify the certificate {entry.host} presents, or use --insecure-registry"
            )
        if verified_by:
            target = os.path.join(entry.source, "ca.crt")
            return f"certs.d directory {entry.source} applied: copy {verified_by} to {target}{does}"
        return (
            f"certs.d directory {entry.source} applied and holds no *.crt: put the registry's "
            "CA there as ca.crt, or use --insecure-registry"
        )
    if kind == "cri":
        ca = f' = "{verified_by}"' if verified_by else ""
        return (
            f"CRI registry config {entry.source} applied: set the registry's CA "
            f'(configs."{entry.host}".tls.ca_file{ca}){does}'
            + ("" if verified_by else ", or use --insecure-registry")
        )
    if lookup is None:
        return "add the registry's CA to its hosts.toml (ca = ...), or use --insecure-registry"
    target = _target(lookup)
    where = _looked(lookup)
    ca = f'"{verified_by}"' if verified_by else "..."
    return (
        f"{where}: add the registry's CA in {target}/hosts.toml (ca = {ca}) or as "
        f"{target}/ca.crt{does}" + ("" if verified_by else ", or use --insecure-registry")
    )


def client_fix(entry: RegistryHost, lookup: HostsLookup | None) -> str:
    """What to do when ``entry``'s host wants a client certificate and none is configured."""
    kind = _kind(entry)
    pair = '[["/path/to/client.cert", "/path/to/client.key"]]'
    if kind == "hosts.toml":
        return f"add client = {pair} to {_table(entry)} in {entry.source}"
    if kind == "certs.d":
        return f"put the client certificate and its key in {entry.source} as client.cert/.key"
    if kind == "cri":
        return f'set configs."{entry.host}".tls.cert_file and key_file in {entry.source}'
    if lookup is None:
        return f"add client = {pair} to the registry's hosts.toml"
    target = _target(lookup)
    return (
        f"{_looked(lookup)}: write {target}/hosts.toml with client = {pair}, or put "
        f"client.cert and client.key in {target}"
    )


def endpoint_from(entry: RegistryHost, lookup: HostsLookup | None) -> str:
    """A suffix for connection and auth failures: the configuration that gave ``entry``."""
    return f"endpoint {entry.scheme}://{entry.host} from {applied_config(entry, lookup)}"


class Provenance:
    """Which configuration gave the endpoints of ``ref_host`` their settings (looked up in the
    hosts directories ``dirs`` once, when a message first needs it; None: not known)."""

    def __init__(self, ref_host: str, dirs: Sequence[str] | None) -> None:
        self.ref_host = ref_host
        self.dirs = dirs
        self._lookup: HostsLookup | None = None

    def lookup(self) -> HostsLookup | None:
        if self.dirs is None:
            return None
        if self._lookup is None:
            self._lookup = HostsLookup.of(self.ref_host, self.dirs)
        return self._lookup

    def where(self, entry: RegistryHost) -> str:
        """``endpoint URL from CONFIGURATION``, for connection and auth failures."""
        return endpoint_from(entry, self.lookup())

    def tls_fix(self, entry: RegistryHost, verified_by: str = "") -> str:
        return tls_fix(entry, self.lookup(), verified_by)

    def client_fix(self, entry: RegistryHost) -> str:
        return client_fix(entry, self.lookup())

    def applied(self, entry: RegistryHost) -> str:
        """``hosts.toml FILE`` / ``certs.d directory DIR`` / … / what was looked for."""
        return applied_config(entry, self.lookup())
