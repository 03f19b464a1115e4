"""The registry settings of containerd's CRI plugin (merged over the config's ``imports``, see
:mod:`pyctl.registry.hosts.containerd_config`) and the legacy ``registry.mirrors`` /
``registry.configs`` endpoints pyctl honours when no hosts directory applies."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from pyctl.errors import ConfigError
from pyctl.registry.hosts.containerd_config import (
    ContainerdConfig,
    Key,
    dotted_key,
)
from pyctl.registry.hosts.golang import is_localhost
from pyctl.registry.hosts.hosts_toml import is_str_list
from pyctl.registry.hosts.model import (
    ALL_CAPABILITIES,
    DOCKER_HUB,
    DOCKER_HUB_REGISTRY,
    CriHostConfig,
    CriRegistryConfig,
    RegistryHost,
    canonical_ref_host,
    sources_text,
)


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
        if not is_str_list(endpoints):
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
        elif is_str_list(values):
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


def legacy_cri_hosts(ref_host: str, cri: CriRegistryConfig) -> list[RegistryHost]:
    """Raw entries from the legacy CRI ``registry.mirrors`` / ``registry.configs``.

    The endpoints of ``mirrors[ref_host]`` (else ``mirrors["*"]``) in order, then the default
    upstream (an unfilled root entry) unless an endpoint already is the upstream. An endpoint
    without a scheme gets ``http`` for a loopback host, else ``https``; an empty (or ``/``)
    path means ``/v2``, another path is used as written. ``configs[ENDPOINT_HOST].tls`` gives
    the CA / client pair / skip_verify of each endpoint (the unfilled upstream's under the host
    it will be filled with). Mirrors can pull, resolve and fetch referrers; an endpoint that
    is the upstream itself can do everything.
    """
    ref = canonical_ref_host(ref_host)
    key = ref if ref in cri.mirrors else "*"
    endpoints = cri.mirrors.get(key, ())
    source = sources_text(cri.mirrors_from.get(key, ())) or cri.path
    upstream_host = DOCKER_HUB_REGISTRY if ref == DOCKER_HUB else ref
    upstream = {ref, upstream_host}
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
        if path == "":  # containerd adds /v2 to an empty path only ("/" stays "/")
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
        entries.append(RegistryHost.unfilled("default"))
    return [_with_cri_tls(e, cri, e.host or upstream_host) for e in entries]


def _with_cri_tls(entry: RegistryHost, cri: CriRegistryConfig, host: str) -> RegistryHost:
    """Apply ``configs[host].tls`` (CA file, client pair, insecure_skip_verify)."""
    conf = cri.configs.get(host)
    if conf is None or not conf.has_tls:
        return entry
    return entry._replace(
        ca=(*entry.ca, conf.ca_file) if conf.ca_file else entry.ca,
        client=(*entry.client, (conf.cert_file, conf.key_file)) if conf.cert_file else entry.client,
        skip_verify=conf.insecure_skip_verify,
        # a mirror's endpoint list comes from one file; its tls table may come from others
        source=sources_text([entry.source if entry.source != "default" else "", *conf.tls_from]),
    )
