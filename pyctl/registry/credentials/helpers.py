"""The ``docker-credential-*`` helper protocol: ``get``, ``store`` and ``erase`` with the
payload (which may hold the secret) on the helper's stdin, never in its argv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from pyctl.errors import CredentialHelperError, CredentialsNotFound
from pyctl.registry.credentials import Credential, text_field

# What every docker-credential-helper prints (exit 1) when it has nothing for a server.
HELPER_NOT_FOUND = "credentials not found in native keychain"
# The username under which helpers keep an identity token (docker/cli native_store.go).
TOKEN_USERNAME = "<token>"


def helper_program(name: str) -> str:
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
    :class:`CredentialHelperError`, :class:`CredentialsNotFound` when it has nothing for the
    server (its standard answer).
    """
    program = helper_program(name)
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
        cls = CredentialsNotFound if message == HELPER_NOT_FOUND else CredentialHelperError
        raise cls(f"credential helper {program} {action} failed: {message}", name, action, out)
    return out


def _run(helper: str, action: str, payload: str, config_path: str) -> str | None:
    """Run a helper; None when it answers "credentials not found" to a get or an erase."""
    try:
        return run_helper(helper, action, payload, config_path=config_path)
    except CredentialsNotFound:
        if action in ("get", "erase"):
            return None
        raise


def helper_credential(helper: str, keys: Sequence[str], config_path: str) -> Credential | None:
    """What ``helper`` holds under the first of ``keys`` it knows (``docker-credential-NAME
    get``); an identity token is filed under the username ``<token>``."""
    for server_url in keys:
        out = _run(helper, "get", server_url, config_path)
        if out is None or not out.strip():
            continue
        try:
            answer = json.loads(out)
        except (json.JSONDecodeError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise CredentialHelperError(
                f"credential helper {helper_program(helper)} get returned invalid JSON",
                helper,
                "get",
            )
        username = text_field(answer, "Username")
        secret = text_field(answer, "Secret")
        if not secret:
            continue
        source = f"credential helper {helper_program(helper)}"
        if username == TOKEN_USERNAME:
            return Credential("", secret, identity_token=True, source=source)
        return Credential(username, secret, source=source)
    return None


def helper_store(helper: str, key: str, cred: Credential, config_path: str) -> None:
    username = TOKEN_USERNAME if cred.identity_token else cred.username
    payload = json.dumps({"ServerURL": key, "Username": username, "Secret": cred.secret})
    _run(helper, "store", payload, config_path)


def helper_erase(helper: str, key: str, config_path: str) -> bool:
    """True when the helper had something for ``key``."""
    return _run(helper, "erase", key, config_path) is not None
