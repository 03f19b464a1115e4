"""Registry credentials and authentication primitives.

* Docker's ``config.json`` (``auths``, ``credsStore``, ``credHelpers``), read and written the way
  ``docker login`` / ``nerdctl login`` do, including the ``docker-credential-*`` helper protocol
  (the secret travels on the helper's stdin, never in its argv). Every write takes an exclusive
  lock (``flock`` on a lock file beside the file), reads the file again, changes one entry and
  replaces the file atomically: logins running at once all land.
* Credentials from the CRI plugin's ``auth`` section (duck-typed, see :func:`cri_credential`).
* ``WWW-Authenticate`` challenges, bearer-token responses and token scopes.
* Redaction of secrets for ``--debug`` logging.

Everything here is pure stdlib and does no network I/O.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from pyctl.errors import ConfigError, PyctlError

__all__ = [
    "DOCKER_HUB_KEY",
    "HELPER_NOT_FOUND",
    "Challenge",
    "Credential",
    "CredentialHelperError",
    "DockerConfig",
    "Scopes",
    "Token",
    "auth_key",
    "convert_to_hostname",
    "cri_credential",
    "docker_config_path",
    "merge_scopes",
    "parse_token_response",
    "parse_www_authenticate",
    "redact_headers",
    "redact_text",
    "repository_scope",
    "run_helper",
]

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# What every docker-credential-helper prints (exit 1) when it has nothing for a server.
HELPER_NOT_FOUND = "credentials not found in native keychain"
# The username under which helpers keep an identity token (docker/cli native_store.go).
_TOKEN_USERNAME = "<token>"

REDACTED = "<redacted>"


# --------------------------------------------------------------------------------------------
# Credential
# --------------------------------------------------------------------------------------------


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

    def basic_authorization(self) -> str:
        """The ``Authorization`` header value for HTTP Basic auth."""
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------------------------
# Keys and hostnames
# --------------------------------------------------------------------------------------------


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


def _split_port(host: str) -> tuple[str, str | None]:
    """``host:port`` → (host, port); IPv6 literals keep their brackets."""
    if host.startswith("["):
        close = host.find("]")
        tail = host[close + 1 :] if close != -1 else ""
        if tail.startswith(":") and tail[1:].isdigit():
            return host[: close + 1], tail[1:]
        return host, None
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        if port.isdigit():
            return name, port
    return host, None


def _is_hub(hostname: str) -> bool:
    name, port = _split_port(hostname.lower())
    return name in _HUB_HOSTS and port in (None, "443")


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


def _equivalent_hosts(server: str) -> list[str]:
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
    name, port = _split_port(host)
    if port == "443":
        return [host, name]
    if port is None:
        return [host, host + ":443"]
    return [host]


def _lookup_keys(server: str) -> list[str]:
    """Exact ``auths`` keys to try, in order (docker's key, then nerdctl's identifiers)."""
    keys = [auth_key(server)]
    for host in _equivalent_hosts(server):
        keys.extend((host, "https://" + host, "http://" + host))
    return list(dict.fromkeys(keys))


# --------------------------------------------------------------------------------------------
# Credential helpers
# --------------------------------------------------------------------------------------------


class CredentialHelperError(PyctlError):
    """A ``docker-credential-*`` helper failed (or is missing)."""

    def __init__(self, message: str, helper: str, action: str, output: str = "") -> None:
        super().__init__(message)
        self.helper = helper
        self.action = action
        self.output = output

    @property
    def credentials_not_found(self) -> bool:
        return self.output.strip() == HELPER_NOT_FOUND


def _helper_program(name: str) -> str:
    return f"docker-credential-{name}"


def run_helper(
    name: str,
    action: str,
    payload: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 30,
    config_path: str | None = None,
) -> str:
    """Run ``docker-credential-NAME ACTION`` with ``payload`` on stdin; return its stdout.

    The payload (which may hold the secret) is only ever written to stdin. The helper's stderr
    is inherited (as docker does: helpers may talk to the terminal). Failures raise
    :class:`CredentialHelperError`; for ``get``/``erase`` check ``credentials_not_found``.
    """
    program = _helper_program(name)
    where = f" (configured in {config_path})" if config_path else ""
    if not name or "/" in name or os.sep in name or "\x00" in name:
        raise CredentialHelperError(f"invalid credential helper name {name!r}{where}", name, action)
    environ: Mapping[str, str] = os.environ if env is None else env
    path = shutil.which(program, path=environ.get("PATH", os.defpath))
    if path is None:
        raise CredentialHelperError(
            f"credential helper {program} not found in PATH{where}", name, action
        )
    try:
        proc = subprocess.run(
            [path, action],
            input=payload.encode("utf-8"),
            stdout=subprocess.PIPE,
            env=None if env is None else dict(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(
            f"credential helper {program} {action} did not finish within {timeout:g}s",
            name,
            action,
        ) from None
    except OSError as exc:
        raise CredentialHelperError(
            f"running credential helper {program}: {exc.strerror or exc}{where}", name, action
        ) from None
    out = proc.stdout.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        message = out.strip() or f"exit status {proc.returncode}"
        raise CredentialHelperError(
            f"credential helper {program} {action} failed: {message}", name, action, out
        )
    return out


# --------------------------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------------------------


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


def _str_field(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    return value if isinstance(value, str) else ""


def _encode_auth_field(username: str, secret: str) -> str:
    return base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")


class DockerConfig:
    """A docker ``config.json`` document; keys pyctl does not know are kept as they are."""

    def __init__(self, path: str, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = {} if data is None else data

    def __repr__(self) -> str:  # never show the document: it holds secrets
        return f"DockerConfig(path={self.path!r})"

    # loading ---------------------------------------------------------------------------------

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
        key = auth_key(host)
        candidates = [key]
        name, port = _split_port(key)
        if port == "443":
            candidates.append(name)
        for candidate in candidates:
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

    def get(self, host: str) -> Credential | None:
        """The credentials for registry ``host`` (``host[:port]``, a Docker Hub spelling, or an
        URL), or None.

        With a helper configured for the host only the helper is asked (as docker does: the
        file's ``auths`` are then ignored for that host). Otherwise ``auths`` is searched:
        docker's key, nerdctl's identifiers (``host``, ``https://host``, ``http://host``, with
        ``:443`` and without), then any key whose hostname matches (sorted, for determinism).
        """
        helper = self.helper_for(host)
        if helper is not None:
            return self._helper_get(helper, host)
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
        username = _str_field(entry, "username")
        password = _str_field(entry, "password")
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

    def _helper_get(self, helper: str, host: str) -> Credential | None:
        key = auth_key(host)
        keys = [key]
        name, port = _split_port(key)
        if port == "443":
            keys.append(name)
        for server_url in keys:
            out = self._run_helper(helper, "get", server_url)
            if out is None or not out.strip():
                continue
            try:
                answer = json.loads(out)
            except (json.JSONDecodeError, RecursionError):
                answer = None
            if not isinstance(answer, dict):
                raise CredentialHelperError(
                    f"credential helper {_helper_program(helper)} get returned invalid JSON",
                    helper,
                    "get",
                )
            username = _str_field(answer, "Username")
            secret = _str_field(answer, "Secret")
            if not secret:
                continue
            source = f"credential helper {_helper_program(helper)}"
            if username == _TOKEN_USERNAME:
                return Credential("", secret, identity_token=True, source=source)
            return Credential(username, secret, source=source)
        return None

    def _run_helper(self, helper: str, action: str, payload: str) -> str | None:
        """Run a helper; None when it answers "credentials not found"."""
        try:
            return run_helper(helper, action, payload, config_path=self.path)
        except CredentialHelperError as exc:
            if exc.credentials_not_found and action in ("get", "erase"):
                return None
            raise

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
            username = _TOKEN_USERNAME if cred.identity_token else cred.username
            payload = json.dumps({"ServerURL": key, "Username": username, "Secret": cred.secret})
            self._run_helper(helper, "store", payload)
            # Like docker's native store: keep a secret-less entry so the registry is listed.
            self._update(lambda doc: _set_entry(doc, key, {}))
            return f"credential helper {_helper_program(helper)}"
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
            removed = self._run_helper(helper, "erase", auth_key(server)) is not None
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
    exact = [k for k in _lookup_keys(host) if k in auths]
    wanted = set(_equivalent_hosts(host))
    rest = sorted(k for k in auths if k not in exact and convert_to_hostname(k).lower() in wanted)
    return exact + rest


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


# --------------------------------------------------------------------------------------------
# CRI config credentials
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# WWW-Authenticate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: lower-cased scheme and parameter names."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        """The raw ``scope`` parameter (may hold several scopes separated by spaces)."""
        return self.params.get("scope")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple((self.scope or "").split())

    @property
    def error(self) -> str | None:
        return self.params.get("error")

    @property
    def error_description(self) -> str | None:
        return self.params.get("error_description")


_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t\r\n"
_SCHEME_RANK = {"bearer": 0, "basic": 1}


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str | None:
        """After an opening quote; None if the string is unterminated."""
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\":
                if self.pos >= len(self.text):
                    return None
                out.append(self.text[self.pos])
                self.pos += 1
            elif ch == '"':
                return "".join(out)
            else:
                out.append(ch)
        return None

    def bare_value(self) -> str:
        # Lenient: everything up to a comma or whitespace (so an unquoted realm URL works).
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ',"' + _WS:
            self.pos += 1
        return self.text[start : self.pos]

    def skip_element(self) -> None:
        """Skip to just after the next top-level comma (or to the end)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"':
                if self.quoted() is None:
                    self.pos = len(self.text)
                continue
            self.pos += 1
            if ch == ",":
                return


def _parse_header_value(value: str) -> list[Challenge]:
    """Challenges in one header value. One challenge per value is the norm; several
    comma-separated challenges (RFC 7235, and what a client library produces when it joins
    repeated headers) are also recognised: after a comma, a token not followed by ``=``
    starts a new challenge."""
    sc = _Scanner(value)
    result: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}

    def finish() -> None:
        if scheme is not None:
            result.append(Challenge(scheme, dict(params)))

    first_after_scheme = False
    while True:
        sc.skip_ws()
        if sc.pos >= len(sc.text):
            break
        if sc.peek() == ",":
            sc.pos += 1
            first_after_scheme = False
            continue
        name = sc.token()
        if not name:
            # Garbage where a scheme or parameter should be: drop this list element.
            sc.skip_element()
            first_after_scheme = False
            continue
        after_name = sc.pos
        sc.skip_ws()
        if sc.peek() == "=" and scheme is not None:
            sc.pos += 1
            sc.skip_ws()
            if sc.peek() == '"':
                quoted = sc.quoted()
                if quoted is None:  # unterminated: ignore the rest of the value
                    break
                val = quoted
            else:
                val = sc.bare_value()
            params[name.lower()] = val
            first_after_scheme = False
            sc.skip_ws()
            if sc.peek() not in ("", ","):
                # junk after a value: skip to the next element
                sc.skip_element()
            continue
        if sc.peek() == "=" and scheme is None:
            # "key=value" with no scheme before it: not a challenge.
            sc.skip_element()
            continue
        if first_after_scheme:
            # token68 (e.g. "Negotiate abc==" / "Basic dXNlcg=="): not used by registries.
            sc.pos = after_name
            while sc.pos < len(sc.text) and sc.text[sc.pos] not in "," + _WS:
                sc.pos += 1
            first_after_scheme = False
            continue
        # A token not followed by "=": a new challenge's scheme.
        finish()
        scheme, params = name.lower(), {}
        first_after_scheme = True
    finish()
    return result


def parse_www_authenticate(values: Sequence[str] | str | None) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (one challenge per value, as containerd does;
    comma-joined challenges are split too). Unparseable parts are skipped, never raised.
    Returns bearer challenges first, then basic, then other schemes, otherwise in order."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    found: list[Challenge] = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            continue
        found.extend(_parse_header_value(value))
    return sorted(found, key=lambda c: _SCHEME_RANK.get(c.scheme, 2))


# --------------------------------------------------------------------------------------------
# Scopes
# --------------------------------------------------------------------------------------------


def repository_scope(path: str, actions: str | Iterable[str] = "pull") -> str:
    """``repository:<path>:<actions>``, e.g. ``repository:library/ubuntu:pull``. ``path`` is
    the repository path without the registry host; ``actions`` a string (``"pull,push"``) or
    an iterable of actions (joined with ``,`` in the order given)."""
    action_text = actions if isinstance(actions, str) else ",".join(actions)
    if not path or not action_text:
        raise PyctlError(f"invalid token scope for repository {path!r} ({action_text!r})")
    return f"repository:{path}:{action_text}"


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """Union of scope lists, sorted lexicographically, exact-string dedup (containerd's
    ``GetTokenScopes``: ``...:pull`` and ``...:pull,push`` are both kept). Elements holding
    several space-separated scopes (a challenge's ``scope``) are split."""
    merged: set[str] = set()
    for group in groups:
        if isinstance(group, str):
            group = [group]
        for item in group:
            merged.update(item.split())
    return tuple(sorted(merged))


class Scopes:
    """Namespace for scope helpers (containerd's action spellings)."""

    PULL = "pull"
    PUSH = "pull,push"
    repository = staticmethod(repository_scope)
    merge = staticmethod(merge_scopes)

    @staticmethod
    def pull(path: str) -> str:
        return repository_scope(path, Scopes.PULL)

    @staticmethod
    def push(path: str) -> str:
        return repository_scope(path, Scopes.PUSH)


# --------------------------------------------------------------------------------------------
# Token responses
# --------------------------------------------------------------------------------------------

DEFAULT_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True, repr=False)
class Token:
    token: str
    expires_at: float | None
    refresh_token: str | None = None

    def __repr__(self) -> str:
        return (
            f"Token(token={REDACTED!r}, expires_at={self.expires_at!r}, "
            f"refresh_token={(REDACTED if self.refresh_token else None)!r})"
        )

    __str__ = __repr__

    def valid_at(self, now: float, margin: float = 0.0) -> bool:
        return self.expires_at is None or now + margin < self.expires_at


def parse_token_response(body: bytes, now: float) -> Token:
    """A token server's JSON answer (GET or OAuth2 POST). ``access_token`` wins over
    ``token``; ``expires_in`` missing/invalid/≤0 means the spec's default of 60 s; the expiry
    counts from ``now`` (``issued_at`` is ignored, as containerd does: clocks differ)."""
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PyctlError(
            "authorization server returned an invalid token response (not JSON)"
        ) from None
    if not isinstance(data, dict):
        raise PyctlError("authorization server returned an invalid token response (not an object)")
    token: str | None = None
    for name in ("access_token", "token"):
        value = data.get(name)
        if isinstance(value, str) and value:
            token = value
            break
    if token is None:
        raise PyctlError("authorization server did not include a token in the response")
    expires_in = data.get("expires_in")
    lifetime = DEFAULT_TOKEN_LIFETIME
    if (
        isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and 0 < expires_in < float("inf")
    ):
        lifetime = float(expires_in)
    refresh = data.get("refresh_token")
    return Token(
        token=token,
        expires_at=now + lifetime,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
    )


# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
_OPAQUE_SECRET_HEADERS = frozenset({"cookie", "set-cookie", "x-registry-auth"})


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` safe to log: ``Authorization``/``Proxy-Authorization`` keep only
    their scheme (``Bearer <redacted>``); cookies are replaced entirely."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname in _SECRET_HEADERS:
            scheme, sep, _ = str(value).strip().partition(" ")
            out[name] = f"{scheme} {REDACTED}" if sep and scheme else REDACTED
        elif lname in _OPAQUE_SECRET_HEADERS:
            out[name] = REDACTED
        else:
            out[name] = value
    return out


def redact_text(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each non-empty secret in ``text`` — verbatim, URL-encoded
    (query strings and form bodies) and JSON-escaped — with ``<redacted>``."""
    variants: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        variants.add(secret)
        variants.add(quote_plus(secret))
        variants.add(quote(secret, safe=""))
        variants.add(json.dumps(secret)[1:-1])
        variants.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    variants.discard("")
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, REDACTED)
    return text
