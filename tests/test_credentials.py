"""Credentials: config.json, credential helpers, CRI auth."""

from __future__ import annotations

import base64
import errno
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pyctl.errors import ConfigError, CredentialHelperError, CredentialsNotFound, PyctlError
from pyctl.registry.credentials import Credential
from pyctl.registry.credentials.cri import cri_credential
from pyctl.registry.credentials.docker_config import DockerConfig, docker_config_path
from pyctl.registry.credentials.helpers import run_helper
from pyctl.registry.credentials.keys import DOCKER_HUB_KEY, auth_key, convert_to_hostname


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_config(tmp_path: Path, data: Any) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def load(tmp_path: Path, data: Any) -> DockerConfig:
    return DockerConfig.load(write_config(tmp_path, data))


# ---------------------------------------------------------------------------------------------
# Credential / paths / keys
# ---------------------------------------------------------------------------------------------


def test_credential_repr_hides_secret() -> None:
    cred = Credential("alice", "hunter2-secret", source="/x/config.json")
    for text in (repr(cred), str(cred), f"{cred}", repr([cred])):
        assert "hunter2-secret" not in text
        assert "alice" in text
    assert cred.basic_authorization() == "Basic " + b64("alice:hunter2-secret")


def test_docker_config_path() -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/etc/dc", "HOME": "/h"}) == "/etc/dc/config.json"
    assert docker_config_path({"DOCKER_CONFIG": "", "HOME": "/h"}) == "/h/.docker/config.json"
    assert docker_config_path({"HOME": "/home/bob"}) == "/home/bob/.docker/config.json"
    assert docker_config_path({}).endswith("/.docker/config.json")


@pytest.mark.parametrize(
    ("server", "key"),
    [
        ("docker.io", DOCKER_HUB_KEY),
        ("index.docker.io", DOCKER_HUB_KEY),
        ("registry-1.docker.io", DOCKER_HUB_KEY),
        ("registry-1.docker.io:443", DOCKER_HUB_KEY),
        ("Index.Docker.IO", DOCKER_HUB_KEY),
        ("https://index.docker.io/v1/", DOCKER_HUB_KEY),
        ("https://index.docker.io/v1", DOCKER_HUB_KEY),
        ("https://registry-1.docker.io/v2/", DOCKER_HUB_KEY),
        ("docker.io/library/ubuntu", DOCKER_HUB_KEY),
        ("", DOCKER_HUB_KEY),
        ("harbor.local", "harbor.local"),
        ("harbor.local:5000", "harbor.local:5000"),
        ("harbor.local:443", "harbor.local:443"),  # ports are not normalized in the key
        ("https://harbor.local", "harbor.local"),
        ("https://harbor.local:8443/v2/", "harbor.local:8443"),
        ("http://harbor.local/", "harbor.local"),
        ("https://user:pw@harbor.local/v2/", "harbor.local"),
        ("https://[::1]:6555/v2/", "[::1]:6555"),
        ("harbor.local/team/app", "harbor.local"),
        ("docker.io:5000", "docker.io:5000"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_auth_key(server: str, key: str) -> None:
    assert auth_key(server) == key


def test_convert_to_hostname() -> None:
    assert convert_to_hostname("https://example.com:6555/v2/") == "example.com:6555"
    assert convert_to_hostname("http://example.com") == "example.com"
    assert convert_to_hostname("example.com/foo/bar") == "example.com"
    assert convert_to_hostname("example.com") == "example.com"
    assert convert_to_hostname("https://example.com?x=1") == "example.com"


# ---------------------------------------------------------------------------------------------
# Loading and file lookup
# ---------------------------------------------------------------------------------------------


def test_missing_file_is_empty_config(tmp_path: Path) -> None:
    cfg = DockerConfig.load(str(tmp_path / "nope" / "config.json"))
    assert cfg.data == {}
    assert cfg.resolve("harbor.local") is None
    assert cfg.helper_for("harbor.local") is None


def test_empty_file_is_empty_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("  \n")
    assert DockerConfig.load(str(path)).data == {}


def test_default_path_from_docker_config_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_config(tmp_path, {"auths": {"h.example": {"auth": b64("u:p")}}})
    cfg = DockerConfig.load()
    assert cfg.path == str(tmp_path / "config.json")
    assert cfg.resolve("h.example") == Credential("u", "p", source=cfg.path)


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[1, 2]",
        '"x"',
        '{"auths": []}',
        '{"auths": {"h": 3}}',
        '{"auths": {"h": {"auth": 1}}}',
        '{"credsStore": 5}',
        '{"credHelpers": {"h": 1}}',
        '{"credHelpers": "x"}',
        "\xff\xfe{",
    ],
)
def test_malformed_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^parsing config file .*config\.json: "):
        DockerConfig.load(str(path))


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reading config file"):
        DockerConfig.load(str(tmp_path))  # a directory


def test_auths_lookup_basic(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "auths": {
                DOCKER_HUB_KEY: {"auth": b64("hubuser:hubpass")},
                "harbor.local:5000": {"auth": b64("alice:pa:ss:word")},
                "nul.example": {"auth": b64("bob:secret\x00\x00")},
                "fields.example": {"username": "carol", "password": "pw"},
                "override.example": {"username": "x", "password": "y", "auth": b64("real:pw")},
                "empty.example": {},
                "null.example": None,
            },
            "HttpHeaders": {"X-Meta": "v"},
        },
    )
    for hub in ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY):
        assert cfg.resolve(hub) == Credential("hubuser", "hubpass", source=cfg.path)
    assert cfg.resolve("harbor.local:5000") == Credential("alice", "pa:ss:word", source=cfg.path)
    assert cfg.resolve("harbor.local") is None  # other port
    assert cfg.resolve("nul.example") == Credential("bob", "secret", source=cfg.path)
    assert cfg.resolve("fields.example") == Credential("carol", "pw", source=cfg.path)
    assert cfg.resolve("override.example") == Credential("real", "pw", source=cfg.path)
    assert cfg.resolve("empty.example") is None
    assert cfg.resolve("null.example") is None
    assert cfg.resolve("unknown.example") is None


def test_auths_lookup_by_hostname_and_nerdctl_identifiers(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "auths": {
                "https://url.example/v2/": {"auth": b64("u1:p1")},
                "http://plain.example": {"auth": b64("u2:p2")},
                "port443.example:443": {"auth": b64("u3:p3")},
                "noport.example": {"auth": b64("u4:p4")},
                "https://hub-url.example": {"auth": b64("u5:p5")},
                "https://registry-1.docker.io/v2/": {"auth": b64("hub:pw")},
            }
        },
    )
    assert cfg.resolve("url.example") is not None and cfg.resolve("url.example").username == "u1"  # type: ignore[union-attr]
    assert cfg.resolve("plain.example").username == "u2"  # type: ignore[union-attr]
    # nerdctl: host and host:443 are the same registry
    assert cfg.resolve("port443.example").username == "u3"  # type: ignore[union-attr]
    assert cfg.resolve("noport.example:443").username == "u4"  # type: ignore[union-attr]
    assert cfg.resolve("docker.io").username == "hub"  # type: ignore[union-attr]
    assert cfg.resolve("url.example:5000") is None


def test_exact_key_wins_and_fallback_is_sorted(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "auths": {
                "https://h.example/v1/": {"auth": b64("second:p")},
                "h.example/some/path": {"auth": b64("first:p")},
            }
        },
    )
    assert cfg.resolve("h.example").username == "first"  # type: ignore[union-attr]
    cfg2 = load(
        tmp_path,
        {
            "auths": {
                "https://h.example/v1/": {"auth": b64("url:p")},
                "https://h.example": {"auth": b64("ident:p")},
                "h.example": {"auth": b64("exact:p")},
            }
        },
    )
    assert cfg2.resolve("h.example").username == "exact"  # type: ignore[union-attr]
    del cfg2.data["auths"]["h.example"]
    assert cfg2.resolve("h.example").username == "ident"  # type: ignore[union-attr]


def test_empty_entry_does_not_hide_other_keys(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {"auths": {"h.example": {}, "https://h.example": {"auth": b64("u:p")}}},
    )
    assert cfg.resolve("h.example") == Credential("u", "p", source=cfg.path)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("not base64!", "invalid base64"),
        (b64("user:passw").rstrip("="), "invalid base64"),  # padding required
        (b64("nocolon"), "non-empty username"),
        (b64(":password"), "non-empty username"),
        (base64.b64encode(b"\xff\xfe:pw").decode(), "UTF-8"),
    ],
)
def test_bad_auth_field(tmp_path: Path, value: str, why: str) -> None:
    if value.startswith(b64("user:passw")[:8]):
        assert b64("user:passw").endswith("=")  # really needs padding
    cfg = load(tmp_path, {"auths": {"h.example": {"auth": value}}})
    with pytest.raises(ConfigError, match="invalid auth configuration file") as info:
        cfg.resolve("h.example")
    assert why in str(info.value)
    assert cfg.path in str(info.value)
    # a broken entry for another registry does not matter
    assert cfg.resolve("other.example") is None


def test_identity_token(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "auths": {
                "id.example": {"auth": b64("alice:"), "identitytoken": "refresh-xyz"},
                "onlytoken.example": {"identitytoken": "tok2"},
                "regtoken.example": {"registrytoken": "ignored"},
            }
        },
    )
    cred = cfg.resolve("id.example")
    assert cred == Credential("", "refresh-xyz", identity_token=True, source=cfg.path)
    assert cfg.resolve("onlytoken.example") == Credential(
        "", "tok2", identity_token=True, source=cfg.path
    )
    assert cfg.resolve("regtoken.example") is None


def test_registries(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "auths": {DOCKER_HUB_KEY: {}, "https://h.example/v2/": {}, "b.example:5000": {}},
            "credHelpers": {"ecr.example": "ecr-login"},
        },
    )
    assert cfg.registries() == ["b.example:5000", "docker.io", "ecr.example", "h.example"]
    assert "DockerConfig" in repr(cfg) and "auths" not in repr(cfg)


# ---------------------------------------------------------------------------------------------
# Credential helpers
# ---------------------------------------------------------------------------------------------

FAKE_HELPER = r"""#!{python}
import json, os, sys
log, state = {log!r}, {state!r}
action = sys.argv[1] if len(sys.argv) > 1 else ""
data = sys.stdin.read()
with open(log, "a") as f:
    record = {{"argv": sys.argv, "stdin": data, "env": os.environ.get("HELPER_ENV", "")}}
    f.write(json.dumps(record) + "\n")
store = {{}}
if os.path.exists(state):
    with open(state) as f:
        store = json.load(f)
def save():
    with open(state, "w") as f:
        json.dump(store, f)
if action == "store":
    d = json.loads(data)
    if d["ServerURL"] == "broken.example":
        print("store failed: keychain locked")
        sys.exit(1)
    store[d["ServerURL"]] = [d["Username"], d["Secret"]]
    save()
elif action == "get":
    url = data.strip()
    if url == "broken.example":
        print("  internal helper error  ")
        sys.exit(3)
    if url == "garbage.example":
        print("this is not json")
        sys.exit(0)
    if url not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = store[url]
    print(json.dumps({{"ServerURL": url, "Username": user, "Secret": secret}}))
elif action == "erase":
    url = data.strip()
    if url not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    del store[url]
    save()
elif action == "sleep":
    import time
    time.sleep(30)
else:
    print("unknown action")
    sys.exit(1)
"""


@dataclass
class FakeHelper:
    bindir: Path
    log: Path
    state: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stored(self) -> dict[str, list[str]]:
        if not self.state.exists():
            return {}
        result: dict[str, list[str]] = json.loads(self.state.read_text())
        return result


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHelper]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = FakeHelper(bindir, tmp_path / "helper.log", tmp_path / "helper-state.json")
    script = bindir / "docker-credential-fake"
    script.write_text(
        FAKE_HELPER.format(python=sys.executable, log=str(fake.log), state=str(fake.state))
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    yield fake


def assert_secret_never_in_argv(fake: FakeHelper, *secrets: str) -> None:
    calls = fake.calls()
    assert calls
    for call in calls:
        for secret in secrets:
            assert all(secret not in arg for arg in call["argv"])
        assert len(call["argv"]) == 2


def test_helper_round_trip(tmp_path: Path, helper: FakeHelper) -> None:
    cfg = load(tmp_path, {"credsStore": "fake", "psFormat": "table {{.ID}}"})
    assert cfg.helper_for("harbor.local") == "fake"
    where = cfg.store("harbor.local", Credential("alice", "s3cr3t-pw"))
    assert where == "credential helper docker-credential-fake"
    assert helper.stored() == {"harbor.local": ["alice", "s3cr3t-pw"]}
    # config.json keeps a secret-less entry and the unknown keys
    on_disk = json.loads(Path(cfg.path).read_text())
    assert on_disk == {
        "credsStore": "fake",
        "psFormat": "table {{.ID}}",
        "auths": {"harbor.local": {}},
    }
    assert "s3cr3t-pw" not in Path(cfg.path).read_text()

    again = DockerConfig.load(cfg.path)
    assert again.resolve("harbor.local") == Credential(
        "alice", "s3cr3t-pw", source="credential helper docker-credential-fake"
    )
    assert again.resolve("https://harbor.local/v2/") is not None
    assert again.erase("harbor.local") is True
    assert helper.stored() == {}
    assert again.resolve("harbor.local") is None
    assert json.loads(Path(cfg.path).read_text())["auths"] == {}
    assert again.erase("harbor.local") is False

    assert_secret_never_in_argv(helper, "s3cr3t-pw", "alice")
    actions = [c["argv"][1] for c in helper.calls()]
    assert actions == ["store", "get", "get", "erase", "get", "erase"]
    store_call = helper.calls()[0]
    assert json.loads(store_call["stdin"]) == {
        "ServerURL": "harbor.local",
        "Username": "alice",
        "Secret": "s3cr3t-pw",
    }
    assert helper.calls()[1]["stdin"] == "harbor.local"


def test_helper_docker_hub_and_identity_token(tmp_path: Path, helper: FakeHelper) -> None:
    cfg = load(tmp_path, {"credHelpers": {DOCKER_HUB_KEY: "fake"}})
    assert cfg.helper_for("docker.io") == "fake"
    assert cfg.helper_for("registry-1.docker.io") == "fake"
    assert cfg.helper_for("ghcr.io") is None
    cfg.store("docker.io", Credential("", "refresh-tok", identity_token=True))
    assert helper.stored() == {DOCKER_HUB_KEY: ["<token>", "refresh-tok"]}
    cred = cfg.resolve("registry-1.docker.io")
    assert cred == Credential(
        "", "refresh-tok", identity_token=True, source="credential helper docker-credential-fake"
    )
    assert_secret_never_in_argv(helper, "refresh-tok")


def test_cred_helpers_over_creds_store_over_auths(tmp_path: Path, helper: FakeHelper) -> None:
    helper.state.write_text(json.dumps({"a.example": ["ha", "hp"]}))
    cfg = load(
        tmp_path,
        {
            "credsStore": "absent-store",
            "credHelpers": {"a.example": "fake", "file.example": ""},
            "auths": {
                "a.example": {"auth": b64("filea:fp")},
                "file.example": {"auth": b64("fileb:fp")},
                "b.example": {"auth": b64("filec:fp")},
            },
        },
    )
    assert cfg.resolve("a.example") == Credential(
        "ha", "hp", source="credential helper docker-credential-fake"
    )
    # an empty credHelpers entry selects the file, not credsStore
    assert cfg.helper_for("file.example") is None
    assert cfg.resolve("file.example") == Credential("fileb", "fp", source=cfg.path)
    # credsStore applies to everything else; its helper is missing → a clear error
    assert cfg.helper_for("b.example") == "absent-store"
    with pytest.raises(PyctlError) as info:
        cfg.resolve("b.example")
    assert str(info.value) == (
        "credential helper docker-credential-absent-store not found in PATH "
        f"(configured in {cfg.path})"
    )


def test_helper_not_found_does_not_fall_back_to_auths(tmp_path: Path, helper: FakeHelper) -> None:
    cfg = load(tmp_path, {"credsStore": "fake", "auths": {"h.example": {"auth": b64("u:p")}}})
    assert cfg.resolve("h.example") is None
    assert [c["argv"][1] for c in helper.calls()] == ["get"]


def test_helper_port_443_falls_back_to_portless(tmp_path: Path, helper: FakeHelper) -> None:
    helper.state.write_text(json.dumps({"h.example": ["u", "p"]}))
    cfg = load(tmp_path, {"credHelpers": {"h.example": "fake"}})
    assert cfg.helper_for("h.example:443") == "fake"
    assert cfg.resolve("h.example:443") == Credential(
        "u", "p", source="credential helper docker-credential-fake"
    )


def test_helper_errors(tmp_path: Path, helper: FakeHelper) -> None:
    cfg = load(tmp_path, {"credsStore": "fake"})
    with pytest.raises(CredentialHelperError) as info:
        cfg.resolve("broken.example")
    assert str(info.value) == (
        "credential helper docker-credential-fake get failed: internal helper error"
    )
    assert not isinstance(info.value, CredentialsNotFound)
    with pytest.raises(PyctlError, match="invalid JSON"):
        cfg.resolve("garbage.example")
    before = Path(cfg.path).read_text()
    with pytest.raises(PyctlError, match="keychain locked"):
        cfg.store("broken.example", Credential("u", "never-in-file"))
    assert Path(cfg.path).read_text() == before


def test_run_helper_directly(helper: FakeHelper, tmp_path: Path) -> None:
    with pytest.raises(CredentialsNotFound) as info:
        run_helper("fake", "get", "nothing.example")
    assert info.value.action == "get"
    with pytest.raises(PyctlError, match=r"did not finish within 0\.5s"):
        run_helper("fake", "sleep", "", timeout=0.5)
    with pytest.raises(PyctlError, match=r"not found in PATH$"):
        run_helper("fake", "get", "x", env={"PATH": str(tmp_path / "empty")})
    with pytest.raises(PyctlError, match="invalid credential helper name"):
        run_helper("../fake", "get", "x")
    env = {"PATH": str(helper.bindir), "HELPER_ENV": "custom"}
    with pytest.raises(CredentialHelperError):
        run_helper("fake", "get", "x", env=env)
    assert helper.calls()[-1]["env"] == "custom"


def test_helper_not_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "docker-credential-noexec").write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(PyctlError, match="docker-credential-noexec not found in PATH"):
        run_helper("noexec", "get", "x")


# ---------------------------------------------------------------------------------------------
# Storing in the file, erasing
# ---------------------------------------------------------------------------------------------


def test_store_in_file_and_round_trip(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {"other.example": {"auth": b64("o:p")}}, "x": [1]})
    cfg = DockerConfig.load(path)
    assert cfg.store("docker.io", Credential("hubuser", "hub:pass")) == path
    assert cfg.store("https://harbor.local:8443/v2/", Credential("al", "pw")) == path
    text = Path(path).read_text()
    assert '\n\t"auths": {' in text
    data = json.loads(text)
    assert data["x"] == [1]
    assert data["auths"] == {
        "other.example": {"auth": b64("o:p")},
        DOCKER_HUB_KEY: {"auth": b64("hubuser:hub:pass")},
        "harbor.local:8443": {"auth": b64("al:pw")},
    }
    again = DockerConfig.load(path)
    assert again.resolve("registry-1.docker.io") == Credential("hubuser", "hub:pass", source=path)
    assert again.resolve("harbor.local:8443") == Credential("al", "pw", source=path)


def test_store_identity_token_in_file(tmp_path: Path) -> None:
    path = str(tmp_path / "config.json")
    cfg = DockerConfig.load(path)
    cfg.store("h.example", Credential("", "tok", identity_token=True))
    cfg.store("k.example", Credential("alice", "tok2", identity_token=True))
    data = json.loads(Path(path).read_text())
    assert data["auths"]["h.example"] == {"identitytoken": "tok"}
    assert data["auths"]["k.example"] == {"auth": b64("alice:"), "identitytoken": "tok2"}
    again = DockerConfig.load(path)
    assert again.resolve("h.example") == Credential("", "tok", identity_token=True, source=path)
    assert again.resolve("k.example") == Credential("", "tok2", identity_token=True, source=path)


def test_store_rejects_unusable_credentials(tmp_path: Path) -> None:
    cfg = DockerConfig.load(str(tmp_path / "config.json"))
    with pytest.raises(PyctlError, match="without a username"):
        cfg.store("h.example", Credential("", "pw"))
    with pytest.raises(PyctlError, match="must not contain"):
        cfg.store("h.example", Credential("a:b", "pw"))
    with pytest.raises(PyctlError, match="empty identity token"):
        cfg.store("h.example", Credential("", "", identity_token=True))
    assert not (tmp_path / "config.json").exists()


def test_store_unchanged_does_not_rewrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DockerConfig.load(str(tmp_path / "config.json"))
    cfg.store("h.example", Credential("u", "p"))
    replaced: list[object] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda *a: replaced.append(a) or real_replace(*a))
    cfg.store("h.example", Credential("u", "p"))
    assert replaced == []
    cfg.store("h.example", Credential("u", "p2"))
    assert len(replaced) == 1


def _store_one(path: str, host: str) -> None:
    DockerConfig.load(path).store(host, Credential("u", host))


def test_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    """Processes that each loaded the file before any of them wrote it (logins running at
    once) all land: each write re-reads the file under the lock."""
    import multiprocessing

    path = write_config(tmp_path, {"auths": {"kept.example": {"auth": b64("k:p")}}})
    hosts = [f"r{i}.example" for i in range(12)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_store_one, args=(path, h)) for h in hosts]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * len(hosts)
    auths = json.loads(Path(path).read_text())["auths"]
    assert sorted(auths) == sorted([*hosts, "kept.example"])
    assert all(auths[h] == {"auth": b64(f"u:{h}")} for h in hosts)
    assert leftovers(tmp_path) == []  # no lock file, no temporary file


def test_a_writer_changes_only_its_entry(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"auths": {}})
    early = DockerConfig.load(path)  # loaded before the other writes
    DockerConfig.load(path).store("other.example", Credential("o", "p"))
    early.store("mine.example", Credential("m", "p"))
    assert sorted(json.loads(Path(path).read_text())["auths"]) == ["mine.example", "other.example"]
    assert early.resolve("other.example") is not None  # it sees the file as it is now
    DockerConfig.load(path).erase("other.example")
    early.erase("mine.example")
    assert json.loads(Path(path).read_text())["auths"] == {}


def test_erase_from_file_removes_every_matching_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "auths": {
                "h.example": {"auth": b64("a:1")},
                "https://h.example": {"auth": b64("b:2")},
                "https://h.example/v2/": {"auth": b64("c:3")},
                "h.example:443": {"auth": b64("d:4")},
                "h.example:5000": {"auth": b64("keep:5")},
                "other.example": {"auth": b64("keep:6")},
            },
            "credHelpers": {},
        },
    )
    cfg = DockerConfig.load(path)
    assert cfg.erase("h.example") is True
    assert cfg.resolve("h.example") is None
    data = json.loads(Path(path).read_text())
    assert sorted(data["auths"]) == ["h.example:5000", "other.example"]
    assert data["credHelpers"] == {}
    assert cfg.erase("h.example") is False


def test_erase_docker_hub(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {"auths": {DOCKER_HUB_KEY: {"auth": b64("a:1")}, "docker.io": {"auth": b64("b:2")}}},
    )
    cfg = DockerConfig.load(path)
    assert cfg.erase("docker.io") is True
    assert json.loads(Path(path).read_text()) == {"auths": {}}


# ---------------------------------------------------------------------------------------------
# Writes: locked, atomic
# ---------------------------------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "config.json")


def test_save_new_file_mode_0600_and_creates_dir(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "new" / "deeper" / "config.json"
        DockerConfig.load(str(path)).store("h.example", Credential("u", "p"))
    finally:
        os.umask(old)
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert json.loads(path.read_text()) == {"auths": {"h.example": {"auth": b64("u:p")}}}
    assert path.read_text().startswith('{\n\t"auths": {\n\t\t"h.example": {')
    assert leftovers(path.parent) == []


def test_save_tightens_mode_to_0600_and_keeps_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    doc = {"auths": {}, "HttpHeaders": {"X": "y"}, "plugins": {"a": {"b": "c"}}, "ünï": "çødé"}
    path.write_text(json.dumps(doc))
    path.chmod(0o644)
    cfg = DockerConfig.load(str(path))
    cfg.store("h.example", Credential("u", "p"))
    assert mode_of(path) == 0o600
    data = json.loads(path.read_text(encoding="utf-8"))
    assert {k: v for k, v in data.items() if k != "auths"} == {
        k: v for k, v in doc.items() if k != "auths"
    }
    assert leftovers(tmp_path) == []


def test_save_follows_symlink(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "docker-config.json"
    target.write_text(json.dumps({"keep": 1}))
    target.chmod(0o640)
    link_dir = tmp_path / "home" / ".docker"
    link_dir.mkdir(parents=True)
    link = link_dir / "config.json"
    link.symlink_to(os.path.relpath(target, link_dir))
    cfg = DockerConfig.load(str(link))
    cfg.store("h.example", Credential("u", "p"))
    assert link.is_symlink()
    assert json.loads(target.read_text())["auths"]["h.example"] == {"auth": b64("u:p")}
    assert json.loads(target.read_text())["keep"] == 1
    assert mode_of(target) == 0o600
    assert sorted(os.listdir(real_dir)) == ["docker-config.json"]
    assert sorted(os.listdir(link_dir)) == ["config.json"]


def test_save_dangling_symlink_creates_target(tmp_path: Path) -> None:
    link = tmp_path / "config.json"
    target = tmp_path / "elsewhere" / "cfg.json"
    target.parent.mkdir()
    link.symlink_to(target)
    cfg = DockerConfig.load(str(link))
    assert cfg.data == {}
    cfg.store("h.example", Credential("u", "p"))
    assert link.is_symlink()
    assert target.is_file()
    assert mode_of(target) == 0o600
    again = DockerConfig.load(str(link))
    assert again.resolve("h.example") == Credential("u", "p", source=str(link))


ORIGINAL = {"auths": {"h.example": {"auth": b64("orig:pw")}}, "other": True}


def failing_setup(tmp_path: Path) -> tuple[Path, DockerConfig, bytes]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(ORIGINAL, indent=2))
    path.chmod(0o600)
    before = path.read_bytes()
    return path, DockerConfig.load(str(path)), before


def enospc(*args: object, **kwargs: object) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("what", ["write", "fsync", "replace", "fchmod"])
def test_save_failure_leaves_original_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    path, cfg, before = failing_setup(tmp_path)
    monkeypatch.setattr(os, what, enospc)
    with pytest.raises(ConfigError) as info:
        cfg.store("h.example", Credential("new", "pw"))
    monkeypatch.undo()
    message = str(info.value)
    assert message.startswith(f"writing config file {path}: ")
    assert "No space left on device" in message
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    # the in-memory document is rolled back too
    assert cfg.resolve("h.example") == Credential("orig", "pw", source=str(path))


def test_save_short_write_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def one_byte(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:1]))

    path, cfg, _ = failing_setup(tmp_path)
    monkeypatch.setattr(os, "write", one_byte)
    cfg.store("h.example", Credential("new", "pw"))
    monkeypatch.undo()
    assert DockerConfig.load(str(path)).resolve("h.example") == Credential(
        "new", "pw", source=str(path)
    )


def test_save_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, cfg, before = failing_setup(tmp_path)

    def denied(*args: object, **kwargs: object) -> Any:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(ConfigError, match=r"writing config file .*: Permission denied$"):
        cfg.erase("h.example")
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_save_cannot_create_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = DockerConfig(str(blocker / "sub" / "config.json"), {})
    with pytest.raises(ConfigError, match="writing config file"):
        cfg.store("h.example", Credential("u", "p"))


# ---------------------------------------------------------------------------------------------
# CRI credentials
# ---------------------------------------------------------------------------------------------


@dataclass
class CriAuth:
    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""
    source: str = ""


def test_cri_credential() -> None:
    assert cri_credential(CriAuth()) is None
    assert cri_credential(object()) is None
    cred = cri_credential(
        CriAuth(username="u", password="p", auth=b64("x:y"), source="/etc/c.toml")
    )
    assert cred == Credential("u", "p", source="CRI config /etc/c.toml")
    assert cri_credential(CriAuth(identity_token="tok", auth=b64("x:y"))) == Credential(
        "", "tok", identity_token=True, source="CRI config"
    )
    assert cri_credential(CriAuth(auth=b64("x:y\x00"))) == Credential("x", "y", source="CRI config")
    # containerd accepts an empty username inside auth
    assert cri_credential(CriAuth(auth=b64(":y"))) == Credential("", "y", source="CRI config")
    assert cri_credential(CriAuth(username="u"), source="CRI config /x") == Credential(
        "u", "", source="CRI config /x"
    )
    with pytest.raises(ConfigError, match="invalid base64"):
        cri_credential(CriAuth(auth="%%%"))
    with pytest.raises(ConfigError, match="no ':'"):
        cri_credential(CriAuth(auth=b64("nocolon")))
