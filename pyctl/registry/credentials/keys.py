"""Which key docker files a registry's credentials under in ``config.json`` (``auths``,
``credHelpers``), and the other spellings of that registry a lookup accepts (nerdctl's)."""

from __future__ import annotations

import re

from pyctl.registry.hosts.golang import split_host_port

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def convert_to_hostname(maybe_url: str) -> str:
    """docker/cli ``ConvertToHostname``: a URL's ``host[:port]``; otherwise the text before the
    first ``/``. ``https://example.com:6555/v2/`` → ``example.com:6555``."""
    text = maybe_url.strip()
    if "://" in text:
        rest = text.split("://", 1)[1]
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        authority = authority.rsplit("@", 1)[-1]  # drop user:password@
        if authority and not authority.startswith(":"):
            return authority
    return text.split("/", 1)[0]


def _is_hub(hostname: str) -> bool:
    name, port = split_host_port(hostname.lower())
    return name in _HUB_HOSTS and port in ("", "443")


def without_port_443(host: str) -> str | None:
    """``host`` without its port when that is 443 (``h:443`` → ``h``), else None."""
    return host.removesuffix(":443") if split_host_port(host)[1] == "443" else None


def auth_key(server: str) -> str:
    """The ``auths`` / ``credHelpers`` key docker uses for ``server``.

    Docker Hub in any spelling (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``,
    optionally ``:443``, or an URL of one of them) and "" → :data:`DOCKER_HUB_KEY`; anything
    else → ``ConvertToHostname(server)`` (``https://harbor.local:8443/v2/`` → ``harbor.local:8443``,
    ``harbor.local`` unchanged).
    """
    text = server.strip()
    if text == "" or text == DOCKER_HUB_KEY:
        return DOCKER_HUB_KEY
    host = convert_to_hostname(text)
    if _is_hub(host):
        return DOCKER_HUB_KEY
    return host


def equivalent_hosts(server: str) -> list[str]:
    """Lower-cased hostnames that name the same registry as ``server`` for lookups: nerdctl
    treats ``host`` and ``host:443`` alike; every Docker Hub spelling is one registry."""
    key = auth_key(server)
    if key == DOCKER_HUB_KEY:
        return [
            "index.docker.io",
            "registry-1.docker.io",
            "docker.io",
            "index.docker.io:443",
            "registry-1.docker.io:443",
            "docker.io:443",
        ]
    host = key.lower()
    port = split_host_port(host)[1]
    if port == "443":
        return [host, host.removesuffix(":443")]
    if not port:
        return [host, host + ":443"]
    return [host]


def lookup_keys(server: str) -> list[str]:
    """Exact ``auths`` keys to try, in order (docker's key, then nerdctl's identifiers)."""
    keys = [auth_key(server)]
    for host in equivalent_hosts(server):
        keys.extend((host, "https://" + host, "http://" + host))
    return list(dict.fromkeys(keys))
