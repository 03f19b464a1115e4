"""Registry endpoint configuration: which endpoints to try for a registry host, and how.

This follows containerd's ``hosts.toml`` semantics (``docs/hosts.md``; ``ConfigureHosts`` in
``core/remotes/docker/config``) plus a few pyctl rules from SPEC "Registry configuration":

* hosts directories are searched in order (``--hosts-dir``, else CRI ``config_path``,
  ``/etc/containerd/certs.d``, ``/etc/docker/certs.d``); the first that has a directory for the
  host (``HOST_PORT_``, ``HOST:PORT``, ``_default``) wins;
* a host directory holds ``hosts.toml`` or, without one, docker-style ``*.crt`` / ``*.cert`` +
  ``*.key`` files;
* the last entry, when it names no server, is filled with the default upstream
  (``docker.io`` means ``registry-1.docker.io``; a loopback registry is tried over HTTPS with a
  fallback to plain HTTP);
* a legacy CRI ``registry.mirrors`` / ``registry.configs`` section is honoured when no hosts
  directory matched and no ``config_path`` is set;
* containerd's config is read with its ``imports`` (:mod:`pyctl.registry.containerd_config`),
  and every CRI setting keeps the file it came from.

Unlike containerd, a malformed ``hosts.toml`` is an error (:class:`ConfigError` naming the file),
not a logged warning followed by a silent fallback.

Everything here is pure configuration: no network access. The HTTP client consumes the
:class:`RegistryHost` entries (scheme, TLS material, headers, ``http_fallback``, ``ns`` query).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeGuard

from pyctl.errors import ConfigError
from pyctl.registry import gopath
from pyctl.registry.containerd_config import (
    ContainerdConfig,
    Key,
    dotted_key,
    load_containerd_config,
    toml_key,
)

CAPABILITIES = ("pull", "resolve", "push", "referrers")
ALL_CAPABILITIES: frozenset[str] = frozenset(CAPABILITIES)

DOCKER_HUB = "docker.io"
DOCKER_HUB_LEGACY = "index.docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"

DEFAULT_HOSTS_DIRS = ("/etc/containerd/certs.d", "/etc/docker/certs.d")
HOSTS_FILE = "hosts.toml"
DEFAULT_DIR = "_default"

# CRI registry section, newest layout first.
_CRI_V3_PLUGIN = "io.containerd.cri.v1.images"
_CRI_V2_PLUGIN = "io.containerd.grpc.v1.cri"
_CRI_V1_PLUGIN = "cri"


# --------------------------------------------------------------------------------------------
# Data model


@dataclass(frozen=True)
class RegistryHost:
    """One endpoint to try, in the shape containerd's ``docker.RegistryHost`` has."""

    scheme: str
    host: str
    path: str
    capabilities: frozenset[str]
    ca: tuple[str, ...] = ()
    client: tuple[tuple[str, str], ...] = ()
    skip_verify: bool | None = None
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    override_path: bool = False
    dial_timeout: float | None = None
    http_fallback: bool = False
    is_mirror: bool = False
    source: str = "default"

    def url(self, *parts: str) -> str:
        """``scheme://host`` + ``path.Join("/", path, *parts)``, keeping a trailing ``/``.

        ``url("library/ubuntu", "manifests", "latest")`` on ``/v2`` gives
        ``…/v2/library/ubuntu/manifests/latest``; ``url("r", "blobs/uploads/")`` keeps the
        trailing slash (containerd ``dockerBase.request``).
        """
        joined = gopath.join("/", self.path, *parts)
        if parts and parts[-1].endswith("/") and not joined.endswith("/"):
            joined += "/"
        return f"{self.scheme}://{self.host}{joined}"

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def needs_ns(self, ref_host: str) -> bool:
        """Whether requests to this endpoint carry ``?ns=<ref_host>`` (containerd ``isProxy``)."""
        ref = canonical_ref_host(ref_host)
        if ref == self.host:
            return False
        return not (ref == DOCKER_HUB and self.host == DOCKER_HUB_REGISTRY)

    @property
    def explicit_tls(self) -> bool:
        """``ca``, ``client`` or ``skip_verify`` set: the entry carries its own TLS settings."""
        return bool(self.ca) or bool(self.client) or self.skip_verify is not None

    @property
    def port(self) -> str:
        """The explicit port of ``host`` ("" when none), like Go's ``net.SplitHostPort``."""
        return split_host_port(self.host)[1]


@dataclass(frozen=True)
class CriHostConfig:
    """``registry.configs."HOST"`` of containerd's CRI config: ``tls`` and ``auth``."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False
    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""
    has_tls: bool = False  # a [tls] table was present (then insecure_skip_verify is meaningful)
    has_auth: bool = False  # an [auth] table was present
    tls_from: tuple[str, ...] = ()  # the containerd config file(s) that set the tls table
    auth_from: tuple[str, ...] = ()  # ... and the auth table


@dataclass(frozen=True)
class CriRegistryConfig:
    """The registry settings of containerd's config (CRI plugin), merged over its imports."""

    path: str = ""  # the main config file
    config_path: str = ""
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    configs: Mapping[str, CriHostConfig] = field(default_factory=dict, hash=False)
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    config_path_from: tuple[str, ...] = ()  # the file(s) config_path came from
    mirrors_from: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    @property
    def config_paths(self) -> list[str]:
        """``config_path`` split like Go's ``filepath.SplitList`` (``:``), empties dropped."""
        return [p for p in self.config_path.split(os.pathsep) if p]

    @property
    def has_legacy(self) -> bool:
        return bool(self.mirrors) or bool(self.configs)


# --------------------------------------------------------------------------------------------
# Small helpers shared with other modules


def canonical_ref_host(ref_host: str) -> str:
    """``index.docker.io`` is Docker Hub's legacy name: treat it as ``docker.io``."""
    return DOCKER_HUB if ref_host == DOCKER_HUB_LEGACY else ref_host


def registry_endpoint_hosts(ref_host: str, hosts: Sequence[RegistryHost]) -> frozenset[str]:
    """The hosts that are the registry itself, not mirrors: the image's registry host and its
    ``server``'s. An endpoint on one of them is the registry whatever its place in hosts.toml
    (a ``[host."https://harbor.local:8443"]`` entry for ``server = "https://harbor.local:8443"``
    is common in certs.d files) and gets the registry's credentials; a mirror elsewhere gets
    only its own."""
    ref = canonical_ref_host(ref_host)
    out = {ref, *(h.host for h in hosts if not h.is_mirror)}
    if ref == DOCKER_HUB:
        out.add(DOCKER_HUB_REGISTRY)
    return frozenset(out)


def split_host_port(hostport: str) -> tuple[str, str]:
    """Go ``net.SplitHostPort`` leniently: ``(host, port)``; port "" when there is none.

    ``[::1]:5000`` → ``("::1", "5000")``; ``[::1]`` → ``("::1", "")``; ``::1`` → ``("::1", "")``.
    """
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return hostport, ""
        rest = hostport[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
        return hostport[1:end], port
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport, ""


def is_localhost(hostport: str) -> bool:
    """containerd ``docker.IsLocalhost``: ``localhost`` or a loopback IP, port ignored."""
    host = split_host_port(hostport)[0]
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def parse_go_duration(text: str) -> float:
    """Go ``time.ParseDuration`` → seconds (``"3s"``, ``"500ms"``, ``"1m30s"``, ``"1.5h"``)."""
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        if text in ("0", "+0", "-0"):
            return 0.0
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    for number, unit in _DURATION_PART_RE.findall(m.group(2)):
        total += float(number) * _DURATION_UNITS[unit]
    return -total if m.group(1) == "-" else total


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_UNIT_ALT = "ns|us|\u00b5s|\u03bcs|ms|s|m|h"
_DURATION_PART = rf"(\d+\.?\d*|\.\d+)({_DURATION_UNIT_ALT})"
_DURATION_PART_RE = re.compile(_DURATION_PART)
_DURATION_RE = re.compile(rf"([-+]?)((?:{_DURATION_PART})+)")


# --------------------------------------------------------------------------------------------
# The CRI registry section of containerd's config (merged over its imports)


def load_cri_config(path: str, *, required: bool = False) -> CriRegistryConfig:
    """The CRI registry settings of containerd's config at ``path`` and the files it imports.

    A missing main file is an empty configuration (``path=""``), unless ``required`` (the
    operator named it). See :func:`~pyctl.registry.containerd_config.load_containerd_config`
    for how the files are found, read and merged, and :func:`cri_registry_config` for the
    settings taken from them.
    """
    return cri_registry_config(load_containerd_config(path, required=required))


def cri_registry_config(containerd: ContainerdConfig) -> CriRegistryConfig:
    """The merged ``registry`` section as pyctl uses it, each setting with its file(s).

    A value of the wrong shape is a :class:`ConfigError` naming the file that set it.
    """
    if not containerd.path:
        return CriRegistryConfig()
    registry = containerd.registry

    def bad(key: Key, what: str) -> ConfigError:
        origin = containerd.origin(*key)
        file = origin.file if origin else containerd.path
        table = origin.table if origin else "registry"
        return ConfigError(f"containerd config {file}: {table}.{dotted_key(key)} {what}")

    config_path = registry.get("config_path", "")
    if not isinstance(config_path, str):
        raise bad(("config_path",), "must be a string")

    mirrors: dict[str, tuple[str, ...]] = {}
    for host in _table(registry, ("mirrors",), bad):
        endpoints = _table(registry, ("mirrors", host), bad).get("endpoint", [])
        if not _is_str_list(endpoints):
            raise bad(("mirrors", host, "endpoint"), "must be a list of strings")
        mirrors[host] = tuple(endpoints)

    configs: dict[str, CriHostConfig] = {}
    for host in _table(registry, ("configs",), bad):
        _table(registry, ("configs", host), bad)
        configs[host] = _cri_host_config(registry, host, bad, containerd)

    headers: dict[str, tuple[str, ...]] = {}
    for name, values in _table(registry, ("headers",), bad).items():
        if isinstance(values, str):
            headers[name] = (values,)
        elif _is_str_list(values):
            headers[name] = tuple(values)
        else:
            raise bad(("headers", name), "must be a string or a list of strings")

    return CriRegistryConfig(
        path=containerd.path,
        config_path=config_path,
        mirrors=mirrors,
        configs=configs,
        headers=headers,
        config_path_from=containerd.files_of("config_path"),
        mirrors_from={host: containerd.files_of("mirrors", host) for host in mirrors},
    )


def _table(
    registry: Mapping[str, Any], key: Key, bad: Callable[[Key, str], ConfigError]
) -> dict[str, Any]:
    """The table at ``key`` below ``registry`` ({} when absent)."""
    value: Any = registry
    for name in key:
        value = value.get(name, {})
    if not isinstance(value, dict):
        raise bad(key, "must be a table")
    return value


def _cri_host_config(
    registry: Mapping[str, Any],
    host: str,
    bad: Callable[[Key, str], ConfigError],
    containerd: ContainerdConfig,
) -> CriHostConfig:
    conf = registry["configs"][host]
    values: dict[str, Any] = {}
    for table, keys in (
        ("tls", ("ca_file", "cert_file", "key_file")),
        ("auth", ("username", "password", "auth", "identitytoken")),
    ):
        inner = _table(registry, ("configs", host, table), bad)
        for k in keys:
            v = inner.get(k, "")
            if not isinstance(v, str):
                raise bad(("configs", host, table, k), "must be a string")
            values[k] = v
    skip = conf.get("tls", {}).get("insecure_skip_verify", False)
    if not isinstance(skip, bool):
        raise bad(("configs", host, "tls", "insecure_skip_verify"), "must be a boolean")
    for have, lack in (("cert_file", "key_file"), ("key_file", "cert_file")):
        if values[have] and not values[lack]:
            raise bad(("configs", host, "tls"), f"has {have} {values[have]!r} but no {lack}")
    return CriHostConfig(
        ca_file=values["ca_file"],
        cert_file=values["cert_file"],
        key_file=values["key_file"],
        insecure_skip_verify=skip,
        username=values["username"],
        password=values["password"],
        auth=values["auth"],
        identity_token=values["identitytoken"],
        has_tls="tls" in conf,
        has_auth="auth" in conf,
        tls_from=containerd.files_of("configs", host, "tls"),
        auth_from=containerd.files_of("configs", host, "auth"),
    )


# --------------------------------------------------------------------------------------------
# Hosts directories


def hosts_dirs(explicit: Sequence[str], cri: CriRegistryConfig) -> list[str]:
    """The hosts directories to search, in order (SPEC "Registry configuration").

    Explicit ``--hosts-dir`` / ``hosts_dir`` directories replace the defaults; otherwise the CRI
    ``config_path`` (``:``-separated like containerd's ``filepath.SplitList``), then
    ``/etc/containerd/certs.d``, then ``/etc/docker/certs.d`` (duplicates dropped).
    """
    if explicit:
        return list(explicit)
    out: list[str] = []
    for d in [*cri.config_paths, *DEFAULT_HOSTS_DIRS]:
        if d not in out:
            out.append(d)
    return out


def host_dir_candidates(root: str, host: str) -> list[str]:
    """containerd ``hostPaths`` (unix): ``HOST_PORT_``, ``HOST[:PORT]``, ``_default``."""
    out: list[str] = []
    idx = host.rfind(":")
    if idx > 0:
        out.append(os.path.join(root, f"{host[:idx]}_{host[idx + 1 :]}_"))
    out.append(os.path.join(root, host))
    out.append(os.path.join(root, DEFAULT_DIR))
    return out


def find_host_dir(root: str, host: str) -> str | None:
    """The first existing candidate for ``host`` under ``root`` (A1), or None.

    Existence is ``stat`` succeeding (an empty directory is "found"). A ``stat`` failure other
    than "no such file" is a :class:`ConfigError`.
    """
    if not host or "/" in host or "\0" in host or host in (".", "..", DEFAULT_DIR):
        raise ConfigError(f"invalid registry host {host!r}")
    for candidate in host_dir_candidates(root, host):
        try:
            os.stat(candidate)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(
                f"cannot look up registry host directory {candidate}: {exc.strerror or exc}"
            ) from exc
        return candidate
    return None


def lookup_host_dir(ref_host: str, dirs: Sequence[str]) -> str | None:
    """Search ``dirs`` in order for ``ref_host``'s directory (nerdctl style).

    ``index.docker.io`` is looked up as ``docker.io``; for ``HOST:443`` the bare ``HOST`` is
    tried next in the same root when nothing (not even ``_default``) matched.
    """
    host = canonical_ref_host(ref_host)
    for root in dirs:
        found = find_host_dir(root, host)
        if found is None and host.endswith(":443"):
            found = find_host_dir(root, host[: -len(":443")])
        if found is not None:
            return found
    return None


def load_host_dir(directory: str) -> list[RegistryHost]:
    """Raw entries of one host directory: ``hosts.toml`` if non-empty, else the cert files."""
    hosts_file = os.path.join(directory, HOSTS_FILE)
    try:
        with open(hosts_file, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raw = b""
    except OSError as exc:
        raise ConfigError(f"cannot read {hosts_file}: {exc.strerror or exc}") from exc
    if raw:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{hosts_file}: not UTF-8 text: {exc}") from exc
        return parse_hosts_toml(text, base_dir=directory, source=hosts_file)
    root = load_cert_dir(directory)
    if root is None:
        root = _raw_root(source=directory)
    return [root]


def load_cert_dir(directory: str) -> RegistryHost | None:
    """Docker-style certificate files (A6) as one root entry (host ""), or None if there are none.

    ``*.crt`` are CA files; ``*.cert`` are client certificates whose key is the same basename
    with ``.key`` when that exists, else "" (the key is read from the ``.cert`` file). A lone
    ``*.key`` is ignored. Entries are taken in name order, directories skipped.
    """
    try:
        with os.scandir(directory) as it:
            files = sorted(e.name for e in it if not e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read certificate directory {directory}: {exc}") from exc
    ca: list[str] = []
    client: list[tuple[str, str]] = []
    for name in files:
        if name.endswith(".crt"):
            ca.append(os.path.join(directory, name))
        if name.endswith(".cert"):
            key = os.path.join(directory, name[: -len(".cert")] + ".key")
            try:
                os.stat(key)
            except FileNotFoundError:
                key = ""
            except OSError as exc:
                raise ConfigError(f"cannot read {key}: {exc.strerror or exc}") from exc
            client.append((os.path.join(directory, name), key))
    if not ca and not client:
        return None
    return replace(_raw_root(source=directory), ca=tuple(ca), client=tuple(client))


def _raw_root(*, source: str) -> RegistryHost:
    return RegistryHost(scheme="", host="", path="", capabilities=ALL_CAPABILITIES, source=source)


# --------------------------------------------------------------------------------------------
# hosts.toml


def parse_hosts_toml(text: str, *, base_dir: str, source: str) -> list[RegistryHost]:
    """Raw entries of a ``hosts.toml``: ``[host."…"]`` entries in header order, then the root.

    The root entry (``server`` + top-level keys) is always last; its host is "" when there is
    no ``server`` (it is filled with the default upstream later). Hosts written as dotted keys
    or inline tables are ignored, as containerd ignores them. Relative ``ca`` / ``client``
    paths are made absolute against ``base_dir``. Anything malformed is a :class:`ConfigError`
    naming ``source``.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc

    hosts_table = doc.get("host", {})
    if not isinstance(hosts_table, dict):
        raise ConfigError(f"{source}: 'host' must be a table of [host.\"URL\"] tables")

    for name, conf in hosts_table.items():
        if not isinstance(conf, dict):
            raise ConfigError(f"{source}: host {name!r} must be a [host.{toml_key(name)}] table")
    entries: list[RegistryHost] = []
    for name in _header_host_order(text, source):
        conf = hosts_table[name]
        entries.append(
            _parse_host_entry(name, conf, base_dir=base_dir, source=source, is_mirror=True)
        )
    server = doc.get("server", "")
    if not isinstance(server, str):
        raise ConfigError(f"{source}: 'server' must be a string")
    entries.append(
        _parse_host_entry(server, doc, base_dir=base_dir, source=source, is_mirror=False)
    )
    return entries


def _parse_host_entry(
    server: str, conf: Mapping[str, Any], *, base_dir: str, source: str, is_mirror: bool
) -> RegistryHost:
    where = f"host {server!r}" if is_mirror else "root table"

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: {msg}")

    override_path = conf.get("override_path", False)
    if not isinstance(override_path, bool):
        raise bad("'override_path' must be a boolean")

    scheme = host = path = ""
    if server:
        scheme, host, path = _parse_server_url(server, override_path, bad)

    caps = conf.get("capabilities", [])
    if not _is_str_list(caps):
        raise bad("'capabilities' must be a list of strings")
    capabilities: set[str] = set()
    for cap in caps:
        if cap.lower() not in ALL_CAPABILITIES:
            raise bad(f"unknown capability {cap!r} (known: {', '.join(CAPABILITIES)})")
        capabilities.add(cap.lower())

    skip_verify = conf.get("skip_verify")
    if skip_verify is not None and not isinstance(skip_verify, bool):
        raise bad("'skip_verify' must be a boolean")

    def absolute(p: str, key: str) -> str:
        if not p:
            raise bad(f"empty path in {key!r}")
        if os.path.isabs(p) or not base_dir:
            return p
        return os.path.normpath(os.path.join(base_dir, p))

    ca: list[str] = []
    raw_ca = conf.get("ca")
    if isinstance(raw_ca, str):
        ca.append(absolute(raw_ca, "ca"))
    elif _is_str_list(raw_ca):
        ca.extend(absolute(p, "ca") for p in raw_ca)
    elif raw_ca is not None:
        raise bad(f"invalid type {type(raw_ca).__name__} for 'ca' (want a string or strings)")

    client: list[tuple[str, str]] = []
    raw_client = conf.get("client")
    if isinstance(raw_client, str):
        client.append((absolute(raw_client, "client"), ""))
    elif isinstance(raw_client, list):
        for item in raw_client:
            if isinstance(item, str):
                client.append((absolute(item, "client"), ""))
            elif _is_str_list(item) and len(item) == 2:
                # ["cert", ""]: "" means the key is in the cert file (containerd would turn
                # the "" into the hosts directory path and then fail to read it).
                cert, key = item
                client.append((absolute(cert, "client"), absolute(key, "client") if key else ""))
            else:
                raise bad(f"invalid 'client' entry {item!r} (want a path or a [cert, key] pair)")
    elif raw_client is not None:
        raise bad(f"invalid type {type(raw_client).__name__} for 'client'")

    headers: dict[str, tuple[str, ...]] = {}
    raw_headers = conf.get("header", {})
    if not isinstance(raw_headers, dict):
        raise bad("'header' must be a table")
    for name, value in raw_headers.items():
        if isinstance(value, str):
            headers[name] = (value,)
        elif _is_str_list(value):
            headers[name] = tuple(value)
        else:
            raise bad(f"invalid type {type(value).__name__} for header {name!r}")
        # What HTTP can carry: a token for the name, no line breaks or NULs (header
        # injection) and only Latin-1 in the value.
        if not _HEADER_NAME_RE.fullmatch(name):
            raise bad(f"invalid header name {name!r}")
        for v in headers[name]:
            if any(c in v for c in "\r\n\x00") or not _latin1(v):
                raise bad(f"invalid value {v!r} for header {name!r}")

    dial_timeout: float | None = None
    raw_timeout = conf.get("dial_timeout", "")
    if not isinstance(raw_timeout, str):
        raise bad("'dial_timeout' must be a duration string such as \"3s\"")
    if raw_timeout:
        try:
            dial_timeout = parse_go_duration(raw_timeout)
        except ValueError:
            raise bad(f"invalid dial_timeout {raw_timeout!r} (want e.g. '3s', '500ms')") from None
        if dial_timeout < 0:
            raise bad(f"negative dial_timeout {raw_timeout!r}")

    return RegistryHost(
        scheme=scheme,
        host=host,
        path=path,
        capabilities=frozenset(capabilities) if capabilities else ALL_CAPABILITIES,
        ca=tuple(ca),
        client=tuple(client),
        skip_verify=skip_verify,
        headers=headers,
        override_path=override_path,
        dial_timeout=dial_timeout,
        is_mirror=is_mirror,
        source=source,
    )


_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _parse_server_url(
    server: str, override_path: bool, bad: Callable[[str], ConfigError]
) -> tuple[str, str, str]:
    """``server`` / ``[host."…"]`` URL → (scheme, host[:port], API root path)."""
    url = server if _SCHEME_RE.match(server) else "https://" + server
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (validates the port)
    except ValueError as exc:
        raise bad(f"invalid URL {server!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise bad(f"URL {server!r} must use http or https")
    if not parts.hostname or "@" in parts.netloc:
        raise bad(f"URL {server!r} must name a host (and no user information)")
    if parts.query or parts.fragment:
        raise bad(f"URL {server!r} must not have a query or fragment")
    path = urllib.parse.unquote(parts.path)
    if path:
        path = gopath.clean(path)
        if not path.endswith("/v2") and not override_path:
            path = path.rstrip("/") + "/v2"
    elif not override_path:
        path = "/v2"
    return scheme, parts.netloc, path


def _header_host_order(text: str, source: str) -> list[str]:
    """Hosts named by ``[host."X"…]`` table headers, in file order, each once.

    containerd's ``getSortedHosts`` walks the top-level table headers; ``[host."X".header]``
    names ``X`` too. ``[[…]]`` array tables, dotted keys and inline tables do not count.
    """
    order: list[str] = []
    try:
        headers = _TomlHeaderScanner(text).headers()
    except (IndexError, ValueError) as exc:  # pragma: no cover - tomllib validated the text
        raise ConfigError(f"{source}: cannot read the table headers: {exc}") from exc
    for kind, key in headers:
        if kind == "table" and len(key) >= 2 and key[0] == "host" and key[1] not in order:
            order.append(key[1])
    return order


class _TomlHeaderScanner:
    """Finds the table headers of a TOML document already validated by ``tomllib``.

    Only the structure needed to tell a header line from the inside of a value is tracked:
    strings (four kinds), comments, and ``[]`` / ``{}`` nesting of values.
    """

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def headers(self) -> list[tuple[str, list[str]]]:
        out: list[tuple[str, list[str]]] = []
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r\n":
                self.i += 1
            elif c == "#":
                self._skip_comment()
            elif c == "[":
                kind = "array" if s.startswith("[[", self.i) else "table"
                self.i += 2 if kind == "array" else 1
                key = self._key()
                self.i += 2 if kind == "array" else 1  # "]" / "]]"
                out.append((kind, key))
            else:
                self._key()
                self.i += 1  # "="
                self._value_to_eol()
        return out

    def _skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def _skip_comment(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = len(self.s) if end < 0 else end

    def _key(self) -> list[str]:
        parts: list[str] = []
        s = self.s
        while True:
            self._skip_ws()
            c = s[self.i]
            if c == '"':
                start = self.i
                self._skip_basic_string()
                parts.append(str(tomllib.loads("k = " + s[start : self.i])["k"]))
            elif c == "'":
                end = s.index("'", self.i + 1)
                parts.append(s[self.i + 1 : end])
                self.i = end + 1
            else:
                start = self.i
                while self.i < len(s) and (s[self.i].isalnum() or s[self.i] in "_-"):
                    self.i += 1
                parts.append(s[start : self.i])
            self._skip_ws()
            if self.i < len(s) and s[self.i] == ".":
                self.i += 1
                continue
            return parts

    def _skip_basic_string(self) -> None:
        s = self.s
        self.i += 1
        while s[self.i] != '"':
            self.i += 2 if s[self.i] == "\\" else 1
        self.i += 1

    def _skip_multiline(self, quote: str) -> None:
        s = self.s
        delim = quote * 3
        self.i += 3
        while not s.startswith(delim, self.i):
            self.i += 2 if quote == '"' and s[self.i] == "\\" else 1
        self.i += 3
        # up to two quote characters may sit right before the closing delimiter
        while self.i < len(s) and s[self.i] == quote:
            self.i += 1

    def _value_to_eol(self) -> None:
        s = self.s
        depth = 0
        while self.i < len(s):
            c = s[self.i]
            if c == "\n" and depth == 0:
                return
            if c == "#":
                self._skip_comment()
            elif s.startswith('"""', self.i):
                self._skip_multiline('"')
            elif s.startswith("'''", self.i):
                self._skip_multiline("'")
            elif c == '"':
                self._skip_basic_string()
            elif c == "'":
                self.i = s.index("'", self.i + 1) + 1
            else:
                if c in "[{":
                    depth += 1
                elif c in "]}":
                    depth -= 1
                self.i += 1


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# --------------------------------------------------------------------------------------------
# Default filling and the scheme / HTTP-fallback rules


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
    hosts = [_raw_root(source="default")] if entries is None else list(entries)
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
            h = replace(h, scheme="https", http_fallback=True)
        if default_tls is not None and h.skip_verify is None:
            h = replace(h, skip_verify=default_tls)
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
    return replace(
        entry,
        scheme=scheme,
        host=host,
        path="/v2",
        capabilities=ALL_CAPABILITIES,
        skip_verify=skip_verify,
        is_mirror=False,
    )


# --------------------------------------------------------------------------------------------
# Legacy CRI registry.mirrors / registry.configs


def legacy_cri_hosts(ref_host: str, cri: CriRegistryConfig) -> list[RegistryHost]:
    """Raw entries from the legacy CRI ``registry.mirrors`` / ``registry.configs``.

    The endpoints of ``mirrors[ref_host]`` (else ``mirrors["*"]``) in order, then the default
    upstream (an unfilled root entry) unless an endpoint already is the upstream. An endpoint
    without a scheme gets ``http`` for a loopback host, else ``https``; an empty (or ``/``)
    path means ``/v2``, another path is used as written. ``configs[ENDPOINT_HOST].tls`` gives
    the CA / client pair / skip_verify of each endpoint (the upstream's is looked up once it is
    filled, see :func:`resolve_hosts`). Mirrors can pull, resolve and fetch referrers; an
    endpoint that is the upstream itself can do everything.
    """
    ref = canonical_ref_host(ref_host)
    key = ref if ref in cri.mirrors else "*"
    endpoints = cri.mirrors.get(key, ())
    source = sources_text(cri.mirrors_from.get(key, ())) or cri.path
    upstream = {ref, DOCKER_HUB_REGISTRY if ref == DOCKER_HUB else ref}
    entries: list[RegistryHost] = []
    has_upstream = False

    def bad(endpoint: str, msg: str) -> ConfigError:
        return ConfigError(f"{source}: registry mirror endpoint {endpoint!r} for {ref}: {msg}")

    for endpoint in endpoints:
        url = endpoint
        if "://" not in url:
            host_only = url.split("/", 1)[0]
            url = ("http://" if is_localhost(host_only) else "https://") + url
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018  (validates the port)
        except ValueError as exc:
            raise bad(endpoint, str(exc)) from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise bad(endpoint, "want http(s)://HOST[:PORT][/PATH]")
        path = urllib.parse.unquote(parts.path)
        if path in ("", "/"):
            path = "/v2"
        is_upstream = parts.netloc in upstream
        has_upstream = has_upstream or is_upstream
        entries.append(
            RegistryHost(
                scheme=scheme,
                host=parts.netloc,
                path=path,
                capabilities=(
                    ALL_CAPABILITIES if is_upstream else frozenset({"pull", "resolve", "referrers"})
                ),
                is_mirror=not is_upstream,
                source=source,
            )
        )
    if not has_upstream:
        entries.append(_raw_root(source="default"))
    return entries


def apply_cri_tls(entry: RegistryHost, cri: CriRegistryConfig) -> RegistryHost:
    """Apply ``configs[entry.host].tls`` (CA file, client pair, insecure_skip_verify)."""
    conf = cri.configs.get(entry.host)
    if conf is None or not conf.has_tls:
        return entry
    return replace(
        entry,
        ca=(*entry.ca, conf.ca_file) if conf.ca_file else entry.ca,
        client=(*entry.client, (conf.cert_file, conf.key_file)) if conf.cert_file else entry.client,
        skip_verify=conf.insecure_skip_verify,
        # a mirror's endpoint list comes from one file; its tls table may come from others
        source=sources_text([entry.source if entry.source != "default" else "", *conf.tls_from]),
    )


def sources_text(files: Sequence[str]) -> str:
    """Files a setting came from, for ``RegistryHost.source`` and messages: each once."""
    return ", ".join(dict.fromkeys(f for f in files if f))


# --------------------------------------------------------------------------------------------
# The entry point


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
    if found is not None:
        hosts = load_host_dir(found)
        legacy_cri = None
    elif cri is not None and not cri.config_paths and cri.has_legacy:
        hosts = legacy_cri_hosts(ref, cri)
        legacy_cri = cri
    else:
        hosts = [_raw_root(source="default")]
        legacy_cri = None

    hosts = _fill_last(hosts, ref, "http" if insecure else "")
    if legacy_cri is not None:
        # configs."HOST".tls is keyed by the endpoint host, so it applies after filling.
        hosts = [apply_cri_tls(h, legacy_cri) for h in hosts]
    out = _scheme_rules(hosts, True if insecure else None)
    if insecure:
        out = [replace(h, skip_verify=True) for h in out]
    return out
