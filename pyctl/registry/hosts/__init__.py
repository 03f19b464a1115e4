"""Registry endpoint configuration: which endpoints to try for a registry host, and how.

containerd's ``hosts.toml`` semantics (``docs/hosts.md``; ``ConfigureHosts`` in
``core/remotes/docker/config``) plus pyctl's rules from SPEC "Registry configuration", one
file a step:

* :mod:`.model`: :class:`RegistryHost` (one endpoint), the CRI registry settings' shape;
* :mod:`.certsd`: the hosts directories, searched in order, and a host's directory in them
  (``HOST_PORT_``, ``HOST:PORT``, ``_default``): a ``hosts.toml``, or docker-style cert files;
* :mod:`.hosts_toml`: ``hosts.toml`` parsing;
* :mod:`.containerd_config` and :mod:`.cri`: containerd's own config (with its ``imports``)
  and its CRI registry section, legacy ``registry.mirrors`` / ``registry.configs`` included;
* :mod:`.resolve`: the endpoints in order, default upstream filled, HTTPS-first rules;
* :mod:`.provenance`: which of these gave an endpoint its settings, for error messages;
* :mod:`.golang`: the Go rules all of it follows (paths, globs, host:port, durations).

Everything here is configuration: no network access.
"""

from pyctl.registry.hosts.model import CriRegistryConfig, RegistryHost, registry_endpoint_hosts
from pyctl.registry.hosts.resolve import resolve_hosts

__all__ = ["CriRegistryConfig", "RegistryHost", "registry_endpoint_hosts", "resolve_hosts"]
