"""``hosts.toml``, as containerd reads it (``docs/hosts.md``; ``parseHostsFile``): the
``[host."…"]`` entries in the order the file first names them, then the root entry (``server``
and the top-level keys). Unlike containerd, a malformed file is an error naming it, not a
logged warning followed by a silent fallback."""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from pyctl.errors import ConfigError
from pyctl.registry.hosts import golang
from pyctl.registry.hosts.containerd_config import toml_key
from pyctl.registry.hosts.model import ALL_CAPABILITIES, CAPABILITIES, RegistryHost


def parse_hosts_toml(text: str, *, base_dir: str, source: str) -> list[RegistryHost]:
    """Raw entries of a ``hosts.toml``: ``[host."…"]`` entries in the order the file first
    names them, then the root.

    That is the order ``tomllib`` keeps, and containerd's: 2.x walks the ``[host."X"…]``
    headers (``[host."X".header]`` names X too), 1.6 sorts the hosts by the line that first
    made their table. (Hosts written as dotted keys or inline tables, which no hosts.toml in
    the wild does, are taken in file order here; containerd 2.x skips them and 1.6 puts inline
    ones first.) The root entry (``server`` + top-level keys) is always last; its host is ""
    when there is no ``server`` (it is filled with the default upstream later). Relative
    ``ca`` / ``client`` paths are made absolute against ``base_dir``. Anything malformed is a
    :class:`ConfigError` naming ``source``.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc

    hosts_table = doc.get("host", {})
    if not isinstance(hosts_table, dict):
        raise ConfigError(f"{source}: 'host' must be a table of [host.\"URL\"] tables")

    entries: list[RegistryHost] = []
    for name, conf in hosts_table.items():
        if not isinstance(conf, dict):
            raise ConfigError(f"{source}: host {name!r} must be a [host.{toml_key(name)}] table")
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
    if not is_str_list(caps):
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
    elif is_str_list(raw_ca):
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
            elif is_str_list(item) and len(item) == 2:
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
        elif is_str_list(value):
            headers[name] = tuple(value)
        else:
            raise bad(f"invalid type {type(value).__name__} for header {name!r}")
        # What HTTP can carry: a token for the name, no line breaks or NULs (header
        # injection) and only Latin-1 in the value.
        if not _HEADER_NAME_RE.fullmatch(name):
            raise bad(f"invalid header name {name!r}")
        for v in headers[name]:
            if any(c in v for c in "\r\n\x00") or not _latin1(v):
                # (the value itself is not shown: it may be a secret, an API key)
                raise bad(
                    f"invalid value for header {name!r}: a line break, NUL or a character "
                    "outside Latin-1"
                )

    dial_timeout: float | None = None
    raw_timeout = conf.get("dial_timeout", "")
    if not isinstance(raw_timeout, str):
        raise bad("'dial_timeout' must be a duration string such as \"3s\"")
    if raw_timeout:
        try:
            dial_timeout = golang.parse_go_duration(raw_timeout)
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
        path = golang.clean(path)
        if not path.endswith("/v2") and not override_path:
            path = path.rstrip("/") + "/v2"
    elif not override_path:
        path = "/v2"
    return scheme, parts.netloc, path


def is_str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
