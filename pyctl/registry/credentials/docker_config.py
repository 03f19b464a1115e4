"""Docker's ``config.json`` (``auths``, ``credsStore``, ``credHelpers``) as a keychain, read and
written the way ``docker login`` / ``nerdctl login`` do.

Every write (a login, a logout) takes an exclusive lock (``flock`` on a lock file beside the
file), reads the file again, changes the one entry and replaces the file atomically: logins
running at once, each for its own registry, all land (docker loses all but one of them).
Keys pyctl does not know are kept as they are.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pyctl.errors import ConfigError, PyctlError
from pyctl.registry.credentials import Credential, text_field
from pyctl.registry.credentials.helpers import (
    helper_credential,
    helper_erase,
    helper_program,
    helper_store,
)
from pyctl.registry.credentials.keys import (
    DOCKER_HUB_KEY,
    auth_key,
    convert_to_hostname,
    equivalent_hosts,
    lookup_keys,
    without_port_443,
)


def docker_config_path(env: Mapping[str, str] | None = None) -> str:
    """``$DOCKER_CONFIG/config.json`` if DOCKER_CONFIG is set and non-empty, else
    ``$HOME/.docker/config.json`` (the passwd entry's home when HOME is unset)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    directory = environ.get("DOCKER_CONFIG", "")
    if not directory:
        home = environ.get("HOME", "")
        if not home:
            try:
                import pwd

                home = pwd.getpwuid(os.getuid()).pw_dir
            except (ImportError, KeyError, OSError):
                home = os.path.expanduser("~")
        directory = os.path.join(home, ".docker")
    return os.path.join(directory, "config.json")


class DockerConfig:
    """A docker ``config.json`` document (as read when the command started) and the way to
    change it."""

    def __init__(self, path: str, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = {} if data is None else data

    def __repr__(self) -> str:  # never show the document: it holds secrets
        return f"DockerConfig(path={self.path!r})"

    @classmethod
    def load(cls, path: str | None = None) -> DockerConfig:
        """Read ``path`` (default :func:`docker_config_path`). A missing or empty file is an
        empty config; unreadable or malformed → :class:`ConfigError`."""
        if path is None:
            path = docker_config_path()
        return cls(path, _read(path))

    # accessors -------------------------------------------------------------------------------

    @property
    def auths(self) -> dict[str, Any]:
        return _auths(self.data)

    @property
    def creds_store(self) -> str | None:
        value = self.data.get("credsStore")
        return value if isinstance(value, str) and value else None

    @property
    def cred_helpers(self) -> dict[str, str]:
        helpers = self.data.get("credHelpers")
        if not isinstance(helpers, dict):
            return {}
        return {k: v for k, v in helpers.items() if isinstance(v, str)}

    def helper_for(self, host: str) -> str | None:
        """``credHelpers[auth_key(host)]`` (also the port-less key for ``host:443``), else
        ``credsStore``, else None. An empty ``credHelpers`` value selects the file."""
        helpers = self.cred_helpers
        for candidate in _with_port_443_alias(auth_key(host)):
            if candidate in helpers:
                return helpers[candidate] or None
        return self.creds_store

    def registries(self) -> list[str]:
        """Registry hostnames mentioned in ``auths`` and ``credHelpers`` (for completion);
        Docker Hub as ``docker.io``."""
        names: set[str] = set()
        for key in [*self.auths, *self.cred_helpers]:
            host = auth_key(key)
            names.add("docker.io" if host == DOCKER_HUB_KEY else host)
        names.discard("")
        return sorted(names)

    # lookup ----------------------------------------------------------------------------------

    def resolve(self, host: str) -> Credential | None:
        """The credentials for registry ``host`` (``host[:port]``, a Docker Hub spelling, or an
        URL), or None.

        With a helper configured for the host only the helper is asked (as docker does: the
        file's ``auths`` are then ignored for that host). Otherwise ``auths`` is searched:
        docker's key, nerdctl's identifiers (``host``, ``https://host``, ``http://host``, with
        ``:443`` and without), then any key whose hostname matches (sorted, for determinism).
        """
        helper = self.helper_for(host)
        if helper is not None:
            keys = _with_port_443_alias(auth_key(host))
            return helper_credential(helper, keys, self.path)
        for key in _matching_keys(self.auths, host):
            cred = self._entry_credential(key)
            if cred is not None:
                return cred
        return None

    def _entry_credential(self, key: str) -> Credential | None:
        entry = self.auths.get(key)
        if not isinstance(entry, dict):
            return None
        token = entry.get("identitytoken")
        if isinstance(token, str) and token:
            return Credential("", token, identity_token=True, source=self.path)
        username = text_field(entry, "username")
        password = text_field(entry, "password")
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                username, password = _decode_auth_field(encoded)
            except ValueError as exc:
                raise ConfigError(
                    f"invalid auth configuration file {self.path}: entry {key!r}: {exc}"
                ) from None
        if not username and not password:
            return None
        return Credential(username, password, source=self.path)

    # writing ---------------------------------------------------------------------------------

    def store(self, server: str, cred: Credential) -> str:
        """Store ``cred`` for ``server``: in its credential helper if one is configured, else
        as base64 ``auth`` in ``auths[auth_key(server)]``. Returns where, for the operator
        (the config path, or ``credential helper docker-credential-NAME``)."""
        key = auth_key(server)
        if cred.identity_token:
            if not cred.secret:
                raise PyctlError("cannot store an empty identity token")
        elif not cred.username:
            raise PyctlError("cannot store credentials without a username")
        elif ":" in cred.username:
            raise PyctlError(f"invalid username {cred.username!r}: it must not contain ':'")
        helper = self.helper_for(server)
        if helper is not None:
            helper_store(helper, key, cred, self.path)
            # Like docker's native store: keep a secret-less entry so the registry is listed.
            self._update(lambda doc: _set_entry(doc, key, {}))
            return f"credential helper {helper_program(helper)}"
        entry: dict[str, str] = {}
        if cred.identity_token:
            if cred.username:
                entry["auth"] = _encode_auth_field(cred.username, "")
            entry["identitytoken"] = cred.secret
        else:
            entry["auth"] = _encode_auth_field(cred.username, cred.secret)
        self._update(lambda doc: _set_entry(doc, key, entry))
        return self.path

    def erase(self, server: str) -> bool:
        """Forget the credentials for ``server``: in its helper, and every ``auths`` entry a
        lookup for it would use. True if anything was removed."""
        removed = False
        helper = self.helper_for(server)
        if helper is not None:
            removed = helper_erase(helper, auth_key(server), self.path)
        if not _matching_keys(self.auths, server):
            return removed  # nothing of it in the file: no need to write it

        def forget(doc: dict[str, Any]) -> bool:
            doomed = set(_matching_keys(_auths(doc), server))
            if doomed:
                doc["auths"] = {k: v for k, v in _auths(doc).items() if k not in doomed}
            return bool(doomed)

        return self._update(forget) or removed

    def _update(self, change: Callable[[dict[str, Any]], bool]) -> bool:
        """Apply ``change`` to the file as it is now, under the lock, and write it back when
        ``change`` says it changed something. The document in memory becomes the file's."""
        target = os.path.realpath(self.path) if os.path.islink(self.path) else self.path
        shown = self.path if target == self.path else f"{self.path} (-> {target})"
        try:
            # A dangling link creates its target, where the link says.
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
            os.makedirs(os.path.dirname(os.path.abspath(target)), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"writing config file {shown}: {exc.strerror or exc}") from None
        with _locked(target + ".lock", shown):
            doc = _read(self.path)
            changed = change(doc)
            if changed:
                _replace(target, shown, json.dumps(doc, indent="\t", ensure_ascii=False))
            self.data = doc
        return changed


def _auths(doc: Mapping[str, Any]) -> dict[str, Any]:
    auths = doc.get("auths")
    return auths if isinstance(auths, dict) else {}


def _set_entry(doc: dict[str, Any], key: str, entry: dict[str, str]) -> bool:
    auths = _auths(doc)
    if key in auths and auths[key] == entry:
        return False  # unchanged: don't rewrite the file (docker's file store does the same)
    doc["auths"] = {**auths, key: entry}
    return True


def _matching_keys(auths: Mapping[str, Any], host: str) -> list[str]:
    """The ``auths`` keys a lookup for ``host`` uses: exact spellings first, then any key whose
    hostname matches (sorted)."""
    exact = [k for k in lookup_keys(host) if k in auths]
    wanted = set(equivalent_hosts(host))
    rest = sorted(k for k in auths if k not in exact and convert_to_hostname(k).lower() in wanted)
    return exact + rest


def _with_port_443_alias(key: str) -> list[str]:
    """``key``, and for ``host:443`` also ``host`` (helpers may have either)."""
    alias = without_port_443(key)
    return [key] if alias is None else [key, alias]


def _decode_auth_field(value: str) -> tuple[str, str]:
    """Docker's ``decodeAuth``: std base64 (padding required), split at the first ``:``."""
    cleaned = value.replace("\r", "").replace("\n", "")
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 in auth: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("auth is not valid UTF-8") from None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ValueError("auth must be base64 of USERNAME:PASSWORD with a non-empty username")
    return user, password.strip("\x00")


def _encode_auth_field(username: str, secret: str) -> str:
    return base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")


# --------------------------------------------------------------------------------------------
# The file


def _read(path: str) -> dict[str, Any]:
    """The document at ``path``: {} when it is missing or empty."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"reading config file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
        data = json.loads(text) if text.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"parsing config file {path}: {exc}") from None
    problem = _validate(data)
    if problem:
        raise ConfigError(f"parsing config file {path}: {problem}")
    assert isinstance(data, dict)
    return data


@contextlib.contextmanager
def _locked(lock_path: str, shown: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``; the file is removed when released.

    A writer that waited for the lock checks that the file it locked is still the one at
    ``lock_path`` (the holder before it removed that one), and tries again when it is not:
    so only one process at a time holds the lock that counts."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"writing config file {shown}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(lock_path)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


def _replace(target: str, shown: str, text: str) -> None:
    """Write ``target`` atomically (docker's ``configfile.Save``): a temporary file in the
    same directory, mode 0600 and the existing file's owner, fsynced, renamed over it. On any
    failure the original file is untouched and the temporary file removed."""
    content = text.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(target))
    tmp: str | None = None
    fd = -1
    try:
        owner = None
        try:
            st = os.stat(target)
        except FileNotFoundError:
            pass
        else:
            if st.st_uid > 0 and st.st_gid > 0:
                owner = (st.st_uid, st.st_gid)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(target) + ".", dir=directory)
        view = memoryview(content)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "short write")
            view = view[written:]
        os.fchmod(fd, 0o600)  # SPEC: 0600, even where an older file was looser
        if owner is not None:
            with contextlib.suppress(OSError):
                os.fchown(fd, *owner)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(directory)
    except OSError as exc:
        raise ConfigError(f"writing config file {shown}: {exc.strerror or exc}") from None
    finally:
        if fd != -1:
            with contextlib.suppress(OSError):
                os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _validate(data: object) -> str | None:
    """Type-check the parts of config.json pyctl reads (Go's unmarshalling would reject them)."""
    if not isinstance(data, dict):
        return "the document is not a JSON object"
    auths = data.get("auths")
    if auths is not None:
        if not isinstance(auths, dict):
            return '"auths" is not an object'
        for key, entry in auths.items():
            if entry is None:
                continue
            if not isinstance(entry, dict):
                return f'"auths" entry {key!r} is not an object'
            for name in ("auth", "username", "password", "identitytoken", "registrytoken"):
                value = entry.get(name)
                if value is not None and not isinstance(value, str):
                    return f'"auths" entry {key!r}: {name!r} is not a string'
    store = data.get("credsStore")
    if store is not None and not isinstance(store, str):
        return '"credsStore" is not a string'
    helpers = data.get("credHelpers")
    if helpers is not None:
        if not isinstance(helpers, dict):
            return '"credHelpers" is not an object'
        for key, value in helpers.items():
            if not isinstance(value, str):
                return f'"credHelpers" entry {key!r} is not a string'
    return None
