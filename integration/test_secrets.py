"""Secrets: what ``--debug`` prints, where Basic credentials may travel, and config.json on a
full or read-only disk.

* ``--debug`` pull/push with credentials from config.json (a base64 ``auth`` field for a Basic
  registry, an ``identitytoken`` for a token registry): no password, ``auth`` value, refresh
  token or access token (JWT) appears — the Authorization header is logged, its value is not —
  not even in the traceback ``--debug`` adds to a failure. (test_login.py covers login with
  passwords and credential helpers, which get the secret on stdin, never in argv.)
* Basic credentials go over plain HTTP only where the operator allowed plain HTTP: with
  ``--insecure-registry``, an ``http://`` host in hosts.toml, or for a loopback registry
  (127.0.0.0/8, ::1, localhost: pyctl treats those as insecure, as docker does). A registry on
  another address that redirects to ``http://`` on the same host gets no credentials.
* config.json: a login that cannot write (tmpfs full, then remounted read-only) fails with
  one line and leaves the file byte for byte as it was, mode 0600, no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.conftest import ImageFactory, PyctlRunner, SecureRegistry
from integration.faultproxy import FaultProxy
from integration.registry_helpers import (
    Skopeo,
    assert_failure,
    assert_no_secrets,
    assert_success,
    b64,
    ctr_images,
    docker_config,
)
from integration.testbed import CertAuthority, Containerd, write_cert_dir


def _seed(image_factory: ImageFactory, reg: SecureRegistry, repo: str, variant: str = "s") -> None:
    arc = image_factory("example.test/secret:1", runnable=False, variant_content=variant)
    reg.seed(arc, repo, "1")


# --- --debug ---------------------------------------------------------------------------------


def test_debug_output_redacts_auth_fields_identity_and_access_tokens(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    token_registry: SecureRegistry,
    image_factory: ImageFactory,
    sk: Skopeo,
    tmp_path: Path,
) -> None:
    _seed(image_factory, basic_registry, "team/app")
    _seed(image_factory, token_registry, "team/app")
    refresh = token_registry.token_server.new_refresh_token("alice")
    auth = b64("testuser:testpassword")
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    basic_registry.host: {"auth": auth},
                    token_registry.host: {"auth": b64("alice:"), "identitytoken": refresh},
                }
            }
        )
    )
    hosts = tmp_path / "certs.d"
    for reg in (basic_registry, token_registry):
        write_cert_dir(hosts / reg.host, ca=reg.cert_dir / "ca.crt")
    env = {"DOCKER_CONFIG": str(cfg)}
    secrets = ("testpassword", auth, refresh, "wonderland")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return pyctl("--debug", "--hosts-dir", str(hosts), *args, namespace=namespace, env=env)

    basic_ref = basic_registry.ref("team/app", "1")
    proc = run("pull", basic_ref)
    assert assert_success(proc)[-1] == basic_ref
    assert re.search(r'"Authorization": "Basic <redacted>"', proc.stderr), proc.stderr
    assert_no_secrets(proc, *secrets)

    token_ref = token_registry.ref("team/app", "1")
    ts = token_registry.token_server
    ts.clear()
    proc = run("pull", token_ref)
    assert assert_success(proc)[-1] == token_ref
    assert re.search(r'"Authorization": "Bearer <redacted>"', proc.stderr), proc.stderr
    assert {r.grant_type for r in ts.requests} == {"refresh_token"}  # the identity token
    assert_no_secrets(proc, *secrets)

    pushed = token_registry.ref("team/copy", "1")
    assert_success(pyctl("tag", token_ref, pushed, namespace=namespace))
    proc = run("push", pushed)
    assert proc.returncode == 0, proc
    assert_no_secrets(proc, *secrets)
    assert token_registry.tags("team/copy") == ["1"]

    # a failure prints a traceback with --debug: still nothing secret in it
    (cfg / "config.json").write_text(
        json.dumps({"auths": {basic_registry.host: {"auth": b64("testuser:wrong-secret")}}})
    )
    proc = run("pull", basic_ref)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr  # --debug shows it
    assert_no_secrets(proc, "wrong-secret", b64("testuser:wrong-secret"))
    assert ctr_images(containerd, namespace).keys() == {basic_ref, token_ref, pushed}


# --- Basic credentials and plain HTTP ------------------------------------------------------------


@pytest.fixture
def plain_proxy(basic_registry: SecureRegistry, non_loopback_ip: str) -> Iterator[FaultProxy]:
    """Plain HTTP on a non-loopback address, in front of the (HTTPS, htpasswd) registry."""
    with FaultProxy(basic_registry, host=non_loopback_ip) as proxy:
        yield proxy


def test_basic_credentials_stay_off_plain_http_unless_allowed(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    basic_registry: SecureRegistry,
    plain_proxy: FaultProxy,
    cert_authority: CertAuthority,
    image_factory: ImageFactory,
    sk: Skopeo,
    tmp_path: Path,
) -> None:
    _seed(image_factory, basic_registry, "team/app")
    loopback = FaultProxy(basic_registry).start()
    here = plain_proxy.bind_host
    tls = cert_authority.issue_server_cert(f"nl-{uuid.uuid4().hex[:8]}", hosts=(here,))
    https = FaultProxy(basic_registry, tls=tls, host=here).start()
    try:
        cfg = docker_config(
            tmp_path / "docker",
            {p.host: ("testuser", "testpassword") for p in (plain_proxy, loopback, https)},
        )
        env = {"DOCKER_CONFIG": str(cfg)}
        no_hosts = ["--hosts-dir", str(tmp_path / "empty")]

        # 1. a plain-HTTP registry on a non-loopback address: tried over HTTPS only
        ref = plain_proxy.ref("team/app", "1")
        proc = pyctl(*no_hosts, "pull", ref, namespace=namespace, env=env)
        assert_failure(proc, f"pull {ref}:", "does not speak TLS", "--insecure-registry")
        assert not plain_proxy.authorization_seen()
        assert ctr_images(containerd, namespace) == {}

        # 2. --insecure-registry allows plain HTTP, and the credentials with it
        proc = pyctl(*no_hosts, "--insecure-registry", "pull", ref, namespace=namespace, env=env)
        assert assert_success(proc)[-1] == ref
        assert {r.auth_scheme for r in plain_proxy.requests if r.has_authorization} == {"basic"}

        # 3. so does an http:// server in hosts.toml
        plain_proxy.clear()
        hosts = tmp_path / "http.d"
        (hosts / plain_proxy.host).mkdir(parents=True)
        (hosts / plain_proxy.host / "hosts.toml").write_text(
            f'server = "http://{plain_proxy.host}"\n'
        )
        ref3 = plain_proxy.ref("team/app", "1")
        proc = pyctl("--hosts-dir", str(hosts), "pull", ref3, namespace=namespace, env=env)
        assert_success(proc)
        assert plain_proxy.authorization_seen()

        # 4. a loopback registry counts as insecure (docker's 127.0.0.0/8 rule): HTTPS is
        #    tried first, then plain HTTP, with the credentials
        ref4 = loopback.ref("team/app", "1")
        proc = pyctl(*no_hosts, "pull", ref4, namespace=namespace, env=env)
        assert assert_success(proc)[-1] == ref4
        assert {r.auth_scheme for r in loopback.requests if r.has_authorization} == {"basic"}

        # 5. an HTTPS registry (non-loopback, verified) redirecting blobs to http:// on its
        #    own host and port: pyctl does not follow with the password
        _seed(image_factory, basic_registry, "team/other", variant="redirected")
        hosts5 = tmp_path / "tls.d"
        write_cert_dir(hosts5 / https.host, ca=cert_authority.cert_path)
        https.redirect(f"http://{https.host}", method="GET", path=r"/blobs/sha256:", times=None)
        ref5 = https.ref("team/other", "1")
        proc = pyctl("--hosts-dir", str(hosts5), "pull", ref5, namespace=namespace, env=env)
        assert_failure(
            proc, f"pull {ref5}:", f"refusing to send credentials to {https.host} over plain HTTP"
        )
        assert ref5 not in ctr_images(containerd, namespace)
        assert all(r.status == 302 for r in https.blob_requests())
    finally:
        loopback.stop()
        https.stop()


# --- config.json on a full and on a read-only disk -------------------------------------------


@contextlib.contextmanager
def _tmpfs(directory: Path, size: str = "64k") -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        check=True,
    )
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem is full."""
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert path.stat().st_size > 0


def test_config_json_survives_a_full_and_a_read_only_disk(
    pyctl: PyctlRunner, basic_registry: SecureRegistry, tmp_path: Path
) -> None:
    host = basic_registry.host
    with _tmpfs(tmp_path / "docker") as docker:
        config = docker / "config.json"
        before = json.dumps(
            {"auths": {"other.example": {"auth": b64("someone:s3cret")}}, "psFormat": "table"},
            indent="\t",
        ).encode()
        config.write_bytes(before)
        config.chmod(0o600)
        env = {"DOCKER_CONFIG": str(docker)}

        def login() -> subprocess.CompletedProcess[str]:
            return pyctl(
                "--hosts-dir",
                str(basic_registry.certs_d),
                "login",
                host,
                "-u",
                "testuser",
                "--password-stdin",
                input="testpassword\n",
                env=env,
            )

        def unchanged() -> None:
            assert config.read_bytes() == before
            assert stat.S_IMODE(config.stat().st_mode) == 0o600
            assert sorted(os.listdir(docker)) in (["config.json"], ["config.json", "filler"])

        # full: the new file cannot be written; the old one is untouched
        _fill(docker / "filler")
        proc = login()
        assert_failure(
            proc, f"login {host}:", f"writing config file {config}", "No space left on device"
        )
        unchanged()

        # read-only: the same
        (docker / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(docker)], check=True)
        proc = login()
        assert_failure(proc, f"login {host}:", f"writing config file {config}", "Read-only")
        unchanged()
        proc = pyctl("logout", "other.example", env=env)
        assert_failure(
            proc, "logout other.example:", f"writing config file {config}", "Read-only file system"
        )
        unchanged()

        # writable again: the login lands, the rest of the file is kept, still 0600
        subprocess.run(["mount", "-o", "remount,rw", str(docker)], check=True)
        proc = login()
        assert proc.returncode == 0 and proc.stdout == "Login Succeeded\n", proc
        doc = json.loads(config.read_text())
        assert doc["auths"][host] == {"auth": b64("testuser:testpassword")}
        assert doc["auths"]["other.example"] == {"auth": b64("someone:s3cret")}
        assert doc["psFormat"] == "table"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert os.listdir(docker) == ["config.json"]
