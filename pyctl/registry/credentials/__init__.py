"""Registry credentials, as keychains (go-containerregistry's ``authn.Keychain``): each source
answers "what are the credentials for this host?", and a run asks them in order.

* :mod:`.docker_config`: docker's ``config.json`` (``auths``; ``credsStore`` and
  ``credHelpers`` through :mod:`.helpers`), read and written as ``docker login`` does;
* :mod:`.helpers`: the ``docker-credential-*`` helper protocol;
* :mod:`.cri`: the ``auth`` section of containerd's CRI registry config;
* :mod:`.keys`: which key docker files a registry's credentials under.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

REDACTED = "<redacted>"


@dataclass(frozen=True, repr=False)
class Credential:
    """A username and secret for one registry.

    ``identity_token`` means ``secret`` is an OAuth2 refresh token (docker's ``identitytoken``),
    to be exchanged with ``grant_type=refresh_token``; ``username`` is then usually "".
    """

    username: str
    secret: str
    identity_token: bool = False
    source: str = ""

    def __repr__(self) -> str:
        return (
            f"Credential(username={self.username!r}, secret={REDACTED if self.secret else ''!r}, "
            f"identity_token={self.identity_token!r}, source={self.source!r})"
        )

    __str__ = __repr__

    def describe(self) -> str:
        """Whose credentials and from where, never the secret: ``user alice from
        /root/.docker/config.json``, ``identity token from credential helper …``."""
        who = "identity token" if self.identity_token else f"user {self.username}"
        return f"{who} from {self.source}" if self.source else who

    def basic_authorization(self) -> str:
        """The ``Authorization`` header value for HTTP Basic auth."""
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


class Keychain(Protocol):
    def resolve(self, host: str) -> Credential | None:
        """The credentials stored for registry ``host`` (``host[:port]``), or None."""
        ...


class Keychains(NamedTuple):
    """Keychains asked in order: the first that has credentials for a host answers."""

    chain: Sequence[Keychain]

    def resolve(self, host: str) -> Credential | None:
        for keychain in self.chain:
            cred = keychain.resolve(host)
            if cred is not None:
                return cred
        return None


def text_field(doc: Mapping[str, Any], name: str) -> str:
    """``doc[name]`` when it is a string, else "" (JSON documents from files and helpers)."""
    value = doc.get(name)
    return value if isinstance(value, str) else ""
