"""Credentials from the ``auth`` section of containerd's CRI registry config
(``registry.configs."HOST".auth``), as containerd's ``ParseAuth`` reads them."""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from pyctl.errors import ConfigError
from pyctl.registry.credentials import Credential
from pyctl.registry.hosts.model import CriRegistryConfig, sources_text


def cri_credential(cfg: object, source: str | None = None) -> Credential | None:
    """Credentials from a CRI ``registry.configs."HOST".auth`` section, as containerd's
    ``ParseAuth``: ``username`` (with ``password``) wins, then ``identity_token``, then the
    base64 ``auth``; nothing set → None (anonymous).

    ``cfg`` is any object with ``username``, ``password``, ``auth`` and ``identity_token``
    string attributes (missing ones count as ""). The source is ``source``, else the object's
    ``source`` / ``path`` attribute, shown as ``CRI config FILE``.
    """

    def attr(name: str) -> str:
        value = getattr(cfg, name, "")
        return value if isinstance(value, str) else ""

    if source is None:
        origin = attr("source") or attr("path") or attr("file")
        if origin.startswith("CRI"):
            source = origin
        else:
            source = f"CRI config {origin}" if origin else "CRI config"
    username = attr("username")
    if username:
        return Credential(username, attr("password"), source=source)
    token = attr("identity_token")
    if token:
        return Credential("", token, identity_token=True, source=source)
    encoded = attr("auth")
    if encoded:
        try:
            raw = base64.b64decode(encoded.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"invalid auth in {source}: invalid base64: {exc}") from None
        text = raw.decode("utf-8", errors="replace")
        user, sep, password = text.partition(":")
        if not sep:
            raise ConfigError(f"invalid auth in {source}: decoded auth has no ':'")
        return Credential(user, password.strip("\x00"), source=source)
    return None


class CriKeychain(NamedTuple):
    """The CRI config's ``auth`` for a host, named by the file(s) it came from."""

    cri: CriRegistryConfig

    def resolve(self, host: str) -> Credential | None:
        cfg = self.cri.configs.get(host)
        if cfg is None:
            return None
        return cri_credential(cfg, f"CRI config {sources_text(cfg.auth_from) or self.cri.path}")
