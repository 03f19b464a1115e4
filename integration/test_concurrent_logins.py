"""Many `pyctl login` / `logout` runs at once (CI jobs sharing a machine and a config.json):
every one that says it succeeded is in the file afterwards, every logout took its entry away,
and nothing else in the file was lost."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from integration.conftest import PyctlRunner, SecureRegistry
from integration.registry_helpers import b64

NAMES = [f"ci-{i:02d}.example" for i in range(12)]


def _all_at_once(
    runs: list[tuple[str, ...]], pyctl: PyctlRunner, env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    def one(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        password = "testpassword\n" if args[0] == "login" else None
        return pyctl(*args, input=password, env=env)

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(one, runs))


def test_concurrent_logins_and_logouts_lose_no_entry(
    pyctl: PyctlRunner, basic_registry: SecureRegistry, tmp_path: Path
) -> None:
    # Every name reaches the same registry through a _default hosts.toml (with its CA).
    hosts = tmp_path / "certs.d"
    (hosts / "_default").mkdir(parents=True)
    assert basic_registry.ca_path is not None
    (hosts / "_default" / "hosts.toml").write_text(
        f'server = "https://{basic_registry.host}"\nca = "{basic_registry.ca_path}"\n'
    )
    docker = tmp_path / "docker"
    docker.mkdir()
    config = docker / "config.json"
    kept = {"auth": b64("someone:else")}
    config.write_text(json.dumps({"auths": {"kept.example": kept}, "psFormat": "table"}))
    config.chmod(0o600)
    env = {"DOCKER_CONFIG": str(docker)}
    login = ("login", "--hosts-dir", str(hosts), "-u", "testuser", "--password-stdin")
    entry = {"auth": b64("testuser:testpassword")}

    # 12 logins at once, each to its own registry name
    procs = _all_at_once([(*login, name) for name in NAMES], pyctl, env)
    for proc in procs:
        assert proc.returncode == 0 and proc.stdout == "Login Succeeded\n", proc
    doc = json.loads(config.read_text())
    assert sorted(doc["auths"]) == sorted([*NAMES, "kept.example"])
    assert all(doc["auths"][name] == entry for name in NAMES)
    assert doc["auths"]["kept.example"] == kept and doc["psFormat"] == "table"

    # 6 logouts and 6 logins to new names, all at once
    gone, staying = NAMES[:6], NAMES[6:]
    later = [f"later-{i}.example" for i in range(6)]
    runs = [("logout", name) for name in gone] + [(*login, name) for name in later]
    procs = _all_at_once(runs, pyctl, env)
    for name, proc in zip(gone, procs[:6], strict=True):
        assert proc.returncode == 0, proc
        assert proc.stdout == f"Removing login credentials for {name}\n", proc
    for proc in procs[6:]:
        assert proc.returncode == 0 and proc.stdout == "Login Succeeded\n", proc
    doc = json.loads(config.read_text())
    assert sorted(doc["auths"]) == sorted([*staying, *later, "kept.example"])
    assert doc["psFormat"] == "table"
    assert config.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in docker.iterdir()) == ["config.json"]  # no lock or temp left
