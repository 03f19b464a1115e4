"""`pyctl login` / `logout` against real registries (htpasswd and token auth, HTTPS), and
the stored credentials used by later pulls and pushes: config.json content and mode,
credential helpers (``credsStore``, ``credHelpers``), symlinked and foreign config files,
and secrets never showing up in output, ``--debug`` included."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integration.conftest import PyctlRunner, SecureRegistry
from integration.helpers import assert_error, assert_ok, ctr_image_digests
from integration.images import Archive
from integration.registry_helpers import (
    JWT,
    Helper,
    assert_no_secrets,
    assert_pulled,
    b64,
    seed,
)
from integration.testbed import Containerd, HtpasswdAuth, Registry, skopeo

LOGIN_OK = "Login Succeeded\n"


# --- helpers --------------------------------------------------------------------------------------


@dataclass
class Client:
    """pyctl with its own DOCKER_CONFIG directory and a given hosts dir."""

    run: PyctlRunner
    docker: Path
    hosts_dir: Path
    cri: str

    @property
    def config(self) -> Path:
        return self.docker / "config.json"

    def __call__(
        self,
        *args: str,
        namespace: str | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        base = ["--hosts-dir", str(self.hosts_dir), "--containerd-config", self.cri]
        return self.run(*base, *args, namespace=namespace, input=input, env=env)

    def login(
        self, host: str, user: str, password: str, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self(
            *extra, "login", host, "-u", user, "--password-stdin", input=password + "\n", env=env
        )

    def doc(self) -> dict[str, Any]:
        data = json.loads(self.config.read_text())
        assert isinstance(data, dict)
        return data


def make_client(pyctl: PyctlRunner, tmp_path: Path, hosts_dir: Path) -> Client:
    docker = tmp_path / "docker-config"
    runner = pyctl.with_docker_config(docker)
    no_cri = tmp_path / "containerd-config-without-cri.toml"
    no_cri.touch()
    return Client(runner, docker, hosts_dir, str(no_cri))


def assert_login_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout == LOGIN_OK
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- basic auth -----------------------------------------------------------------------------------


def test_login_basic_stores_auth_and_pull_push_use_it(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    seed(basic_registry, "team/app", tiny, "1", creds=basic_registry.creds())
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    host = basic_registry.host
    ref = basic_registry.ref("team/app", "1")

    # not logged in: the pull is refused, one line
    proc = c("pull", ref, namespace=namespace)
    msg = assert_error(proc, f"pull {ref}", stdout=None)
    assert re.search(r"unauthorized|authentication required", msg), msg
    assert f"run pyctl login {host}" in msg, msg
    assert not c.config.exists()

    # wrong password: nothing written
    proc = c.login(host, "testuser", "nope")
    msg = assert_error(proc, f"login {host}", "incorrect username or password")
    assert "nope" not in proc.stderr
    assert not c.config.exists() and list(c.docker.iterdir()) == []

    proc = c.login(host, "testuser", "testpassword")
    assert_login_ok(proc)
    assert c.doc() == {"auths": {host: {"auth": b64("testuser:testpassword")}}}
    assert file_mode(c.config) == 0o600
    assert "testpassword" not in proc.stdout + proc.stderr

    # a wrong password later leaves the stored file byte-identical
    before = c.config.read_bytes()
    assert_error(c.login(host, "testuser", "wrong"), f"login {host}")
    assert c.config.read_bytes() == before

    # pull and push use the stored credentials
    assert_pulled(c("pull", ref, namespace=namespace), containerd, namespace, ref)
    pushed = basic_registry.ref("team/copy", "2")
    assert_ok(c("tag", ref, pushed, namespace=namespace))
    proc = c("push", pushed, namespace=namespace)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"size: {tiny.single.manifest.size}")
    assert f"digest: {tiny.digest}" in proc.stdout
    assert basic_registry.tags("team/copy") == ["2"]


def test_login_through_hosts_toml_name(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    """``pyctl login harbor.local`` where hosts.toml maps the name to the registry (with its
    CA): the credentials are stored for ``harbor.local`` and a pull of ``harbor.local/…``
    uses them."""
    seed(basic_registry, "team/app", tiny, "1", creds=basic_registry.creds())
    certs = tmp_path / "certs.d"
    (certs / "harbor.local").mkdir(parents=True)
    assert basic_registry.ca_path is not None
    (certs / "harbor.local" / "ca.crt").write_bytes(basic_registry.ca_path.read_bytes())
    (certs / "harbor.local" / "hosts.toml").write_text(
        f'server = "https://{basic_registry.host}"\nca = "ca.crt"\n'
    )
    c = make_client(pyctl, tmp_path, certs)
    assert_login_ok(c.login("harbor.local", "testuser", "testpassword"))
    assert c.doc() == {"auths": {"harbor.local": {"auth": b64("testuser:testpassword")}}}
    ref = "harbor.local/team/app:1"
    assert_pulled(c("pull", ref, namespace=namespace), containerd, namespace, ref)
    doc = json.loads(assert_ok(c("hosts", "harbor.local", "--format", "json")))
    assert doc["Endpoints"][-1]["Credentials"] == f"user testuser from {c.config}"
    assert "testpassword" not in json.dumps(doc)


def test_login_password_flag_warns(
    pyctl: PyctlRunner, basic_registry: SecureRegistry, tmp_path: Path
) -> None:
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    proc = c("login", basic_registry.host, "-u", "testuser", "-p", "testpassword")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == LOGIN_OK
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "WARNING" in lines[0] and "--password-stdin" in lines[0]
    assert "insecure" in lines[0]
    assert c.doc()["auths"][basic_registry.host]["auth"] == b64("testuser:testpassword")


def test_login_needs_a_password_without_a_terminal(
    pyctl: PyctlRunner, basic_registry: SecureRegistry, tmp_path: Path
) -> None:
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    for args in (["-u", "testuser"], []):
        proc = c("login", basic_registry.host, *args)
        assert_error(proc, "--password-stdin", "terminal")
    # --password-stdin with an empty stdin
    proc = c("login", basic_registry.host, "-u", "testuser", "--password-stdin", input="")
    assert_error(proc, "no password on stdin")
    # usage errors: exit status 2
    proc = c("login", basic_registry.host, "-u", "u", "-p", "x", "--password-stdin", input="y\n")
    assert_error(proc, "mutually exclusive", code=2)
    proc = c("login", basic_registry.host, "--password-stdin", input="y\n")
    assert_error(proc, "--username", code=2)
    assert not c.config.exists()


def test_logout(pyctl: PyctlRunner, basic_registry: SecureRegistry, tmp_path: Path) -> None:
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    host = basic_registry.host
    other = {"auth": b64("someone:else")}
    c.config.write_text(json.dumps({"auths": {"other.example": other}, "psFormat": "table"}))
    c.config.chmod(0o600)

    proc = c("logout", host)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert proc.stdout == f"Not logged in to {host}\n"

    assert_login_ok(c.login(host, "testuser", "testpassword"))
    assert set(c.doc()["auths"]) == {"other.example", host}
    assert_ok_out = assert_ok(c("logout", host))
    assert assert_ok_out == f"Removing login credentials for {host}\n"
    assert c.doc() == {"auths": {"other.example": other}, "psFormat": "table"}
    # an URL spelling of the same registry
    assert_login_ok(c.login(f"https://{host}/v2/", "testuser", "testpassword"))
    assert set(c.doc()["auths"]) == {"other.example", host}
    assert assert_ok(c("logout", f"https://{host}")) == f"Removing login credentials for {host}\n"
    assert set(c.doc()["auths"]) == {"other.example"}


def test_symlinked_config_and_unknown_keys_survive(
    pyctl: PyctlRunner, basic_registry: SecureRegistry, tmp_path: Path
) -> None:
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    original = {
        "auths": {"other.example": {"auth": b64("a:b"), "email": "x@example.com"}},
        "HttpHeaders": {"X-Meta": "v"},
        "psFormat": "table {{.ID}}",
        "plugins": {"scan": {"enabled": "false"}},
        "currentContext": "default",
        "experimental": "enabled",
    }
    real.write_text(json.dumps(original, indent=2))
    real.chmod(0o600)
    c.config.symlink_to(real)

    host = basic_registry.host
    assert_login_ok(c.login(host, "testuser", "testpassword"))
    assert c.config.is_symlink() and os.readlink(c.config) == str(real)
    doc = json.loads(real.read_text())
    want = dict(original)
    want["auths"] = {**original["auths"], host: {"auth": b64("testuser:testpassword")}}  # type: ignore[dict-item]
    assert doc == want
    assert file_mode(real) == 0o600
    assert sorted(os.listdir(c.docker)) == ["config.json"]  # no temporary files left
    assert sorted(os.listdir(real.parent)) == ["docker.json"]

    assert assert_ok(c("logout", host)) == f"Removing login credentials for {host}\n"
    assert c.config.is_symlink()
    assert json.loads(real.read_text()) == original


def test_malformed_config_json(
    pyctl: PyctlRunner, basic_registry: SecureRegistry, tmp_path: Path
) -> None:
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    c.config.write_text('{"auths": ')
    proc = c.login(basic_registry.host, "testuser", "testpassword")
    assert_error(proc, str(c.config))
    assert c.config.read_text() == '{"auths": '


# --- loopback plain HTTP with basic auth ----------------------------------------------------------


def test_login_plain_http_loopback_registry(
    containerd: Containerd, namespace: str, pyctl: PyctlRunner, tiny: Archive, tmp_path: Path
) -> None:
    """A loopback registry without TLS (docker treats 127.0.0.0/8 as insecure): login over
    the HTTP fallback works and the pull authenticates."""
    auth = HtpasswdAuth(users={"testuser": "testpassword"})
    (tmp_path / "empty").mkdir()
    with Registry(auth=auth) as reg:
        seed(reg, "team/app", tiny, "1", creds="testuser:testpassword")
        c = make_client(pyctl, tmp_path, tmp_path / "empty")
        assert_error(c.login(reg.host, "testuser", "bad"), "incorrect username or password")
        assert_login_ok(c.login(reg.host, "testuser", "testpassword"))
        ref = reg.ref("team/app", "1")
        assert_pulled(c("pull", ref, namespace=namespace), containerd, namespace, ref)


# --- token auth -----------------------------------------------------------------------------------


def test_token_login_push_pull_and_permissions(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    token_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    seed(token_registry, "team/app", tiny, "1", creds=token_registry.creds("alice"))
    ts = token_registry.token_server
    c = make_client(pyctl, tmp_path, token_registry.certs_d)
    host = token_registry.host
    ref = token_registry.ref("team/app", "1")

    assert JWT.match(ts.issue("alice", [])), "the leak check must recognise a token"
    ts.clear()
    proc = c.login(host, "alice", "nothere")
    assert_error(proc, f"login {host}", "incorrect username or password")
    assert "run pyctl login" not in proc.stderr
    assert not c.config.exists()
    assert ts.requests and {r.status for r in ts.requests} == {401}

    ts.clear()
    assert_login_ok(c.login(host, "alice", "wonderland", "--debug"))
    assert c.doc() == {"auths": {host: {"auth": b64("alice:wonderland")}}}
    assert ts.requests and all(r.username == "alice" for r in ts.requests)

    # pull and push as alice, with --debug: neither the password nor a token is shown
    ts.clear()
    proc = c("--debug", "pull", ref, namespace=namespace)
    assert_pulled_debug(proc, containerd, namespace, ref)
    assert ts.requests and all(r.username == "alice" for r in ts.requests)
    pushed = token_registry.ref("team/alices", "1")
    assert_ok(c("tag", ref, pushed, namespace=namespace))
    proc = c("--debug", "push", pushed, namespace=namespace)
    assert proc.returncode == 0, proc.stderr
    assert_no_secrets(proc, "wonderland")
    assert token_registry.tags("team/alices") == ["1"]

    # bob may pull but not push
    assert_login_ok(c.login(host, "bob", "builder"))
    assert c.doc() == {"auths": {host: {"auth": b64("bob:builder")}}}
    bobs = token_registry.ref("team/bobs", "1")
    assert_ok(c("tag", ref, bobs, namespace=namespace))
    proc = c("push", bobs, namespace=namespace)
    msg = assert_error(proc, f"push {bobs}", stdout=None)
    assert "denied: requested access to the resource is denied" in msg, msg
    assert "builder" not in proc.stderr
    assert token_registry.tags("team/bobs") == []
    assert_ok(c("rmi", ref, namespace=namespace))
    assert_pulled(c("pull", ref, namespace=namespace), containerd, namespace, ref)


def assert_pulled_debug(
    proc: subprocess.CompletedProcess[str], containerd: Containerd, namespace: str, name: str
) -> None:
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == name + "\n"
    assert "debug:" in proc.stderr and "Traceback" not in proc.stderr
    assert_no_secrets(proc, "wonderland", "testpassword")
    assert name in ctr_image_digests(containerd, namespace)


def test_debug_output_has_no_secrets(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    token_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    seed(basic_registry, "team/app", tiny, "1", creds=basic_registry.creds())
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    for password in ("testpassword", "wrong-pass"):
        proc = c.login(basic_registry.host, "testuser", password, "--debug")
        assert "debug:" in proc.stderr
        assert_no_secrets(proc, "testpassword", "wrong-pass")
    ref = basic_registry.ref("team/app", "1")
    proc = c("--debug", "pull", ref, namespace=namespace)
    assert_pulled_debug(proc, containerd, namespace, ref)
    assert "Authorization" in proc.stderr  # the header is logged, its value is not

    (tmp_path / "t").mkdir()
    c2 = make_client(pyctl, tmp_path / "t", token_registry.certs_d)
    proc = c2.login(token_registry.host, "alice", "wrong-pass", "--debug")
    assert proc.returncode == 1
    assert_no_secrets(proc, "wrong-pass")
    proc = c2.login(token_registry.host, "alice", "wonderland", "--debug")
    assert_login_ok_debug(proc)


def assert_login_ok_debug(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == LOGIN_OK
    assert_no_secrets(proc, "wonderland")


# --- credential helpers ---------------------------------------------------------------------------


def test_creds_store_helper(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
    helper: Helper,
) -> None:
    seed(basic_registry, "team/app", tiny, "1", creds=basic_registry.creds())
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    host = basic_registry.host
    c.config.write_text(json.dumps({"credsStore": "pyctltest"}))
    env = helper.env()

    proc = c.login(host, "testuser", "testpassword", env=env)
    assert_login_ok(proc)
    doc = c.doc()
    assert doc["credsStore"] == "pyctltest"
    assert "testpassword" not in c.config.read_text()
    assert b64("testuser:testpassword") not in c.config.read_text()
    assert doc.get("auths", {}).get(host, {}) == {}
    assert helper.db() == {host: {"Username": "testuser", "Secret": "testpassword"}}
    stores = [call for call in helper.calls() if call["argv"] == ["store"]]
    assert len(stores) == 1
    assert json.loads(stores[0]["stdin"]) == {
        "ServerURL": host,
        "Username": "testuser",
        "Secret": "testpassword",
    }
    for call in helper.calls():
        assert len(call["argv"]) == 1
        assert not any("testpassword" in a for a in call["argv"])

    # the pull asks the helper
    ref = basic_registry.ref("team/app", "1")
    before = len(helper.calls())
    assert_pulled(c("pull", ref, namespace=namespace, env=env), containerd, namespace, ref)
    gets = [call for call in helper.calls()[before:] if call["argv"] == ["get"]]
    assert gets and {g["stdin"].strip() for g in gets} == {host}

    # hosts shows where the credentials come from
    doc = json.loads(assert_ok(c("hosts", host, "--format", "json", env=env)))
    assert doc["Endpoints"][-1]["Credentials"] == (
        "user testuser from credential helper docker-credential-pyctltest"
    )

    # logout erases in the helper
    assert assert_ok(c("logout", host, env=env)) == f"Removing login credentials for {host}\n"
    assert helper.db() == {}
    assert [call["stdin"].strip() for call in helper.calls() if call["argv"] == ["erase"]] == [host]
    assert host not in c.doc().get("auths", {})

    # a helper missing from PATH: one line naming it
    proc = c.login(host, "testuser", "testpassword")
    assert_error(proc, "docker-credential-pyctltest", "PATH")


def test_cred_helpers_override_creds_store(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
    helper: Helper,
) -> None:
    seed(basic_registry, "team/app", tiny, "1", creds=basic_registry.creds())
    c = make_client(pyctl, tmp_path, basic_registry.certs_d)
    host = basic_registry.host
    c.config.write_text(
        json.dumps({"credsStore": "does-not-exist", "credHelpers": {host: "pyctltest"}})
    )
    env = helper.env()
    assert_login_ok(c.login(host, "testuser", "testpassword", env=env))
    assert helper.db() == {host: {"Username": "testuser", "Secret": "testpassword"}}
    assert "testpassword" not in c.config.read_text()
    ref = basic_registry.ref("team/app", "1")
    assert_pulled(c("pull", ref, namespace=namespace, env=env), containerd, namespace, ref)
    assert any(call["argv"] == ["get"] for call in helper.calls())


# --- a certs.d layout nodes have: a [host] entry for the server itself ---------------------------


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_host_entry_for_the_server_is_the_registry(
    kind: str,
    request: pytest.FixtureRequest,
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    tmp_path: Path,
    tiny: Archive,
) -> None:
    """``server = "https://HOST"`` plus ``[host."https://HOST"]`` holding the CA (what
    ``ctr --hosts-dir`` pulls with): login verifies through that entry with its CA, and pull
    and push give it the registry's credentials, as the entry *is* the registry's host."""
    reg: SecureRegistry = request.getfixturevalue(f"{kind}_registry")
    user = "testuser" if kind == "basic" else "alice"
    seed(reg, "team/app", tiny, "1", creds=reg.creds(user))
    host = reg.host
    entry = tmp_path / "certs.d" / host
    entry.mkdir(parents=True)
    ca = entry / "ca.crt"
    ca.write_bytes((reg.cert_dir / "ca.crt").read_bytes())
    (entry / "hosts.toml").write_text(
        f'server = "https://{host}"\n'
        f'[host."https://{host}"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n'
        f'  ca = "{ca}"\n'
    )
    c = make_client(pyctl, tmp_path, entry.parent)

    proc = c.login(host, user, "wrong-" + reg.users[user])
    assert proc.returncode == 1 and "incorrect username or password" in proc.stderr, proc.stderr
    assert_login_ok(c.login(host, user, reg.users[user]))

    ref, pushed = reg.ref("team/app", "1"), reg.ref("team/app", "2")
    assert_pulled(c("pull", ref, namespace=namespace), containerd, namespace, ref)
    assert c("tag", ref, pushed, namespace=namespace).returncode == 0
    proc = c("push", pushed, namespace=namespace)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith(f"{pushed}: digest: {tiny.digest}")
    raw = skopeo(
        "inspect",
        "--raw",
        "--creds",
        reg.creds(user),
        "--cert-dir",
        str(reg.cert_dir),
        f"docker://{pushed}",
    ).stdout.encode()
    assert hashlib.sha256(raw).hexdigest() == tiny.digest.split(":", 1)[1]

    doc = json.loads(c("hosts", host, "--format", "json").stdout)
    assert [(e["URL"], e["Role"]) for e in doc["Endpoints"]] == [
        (f"https://{host}/v2", "registry"),
        (f"https://{host}/v2", "registry"),
    ]
    for e in doc["Endpoints"]:
        assert e["Credentials"].startswith(f"user {user} from "), e
