"""Helpers for the pull/push integration tests: seeding registries with skopeo, reading what
containerd holds (content labels, snapshots, records) and what a registry serves."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration.faultproxy import FaultProxy
from integration.helpers import ERROR_PREFIX, assert_ok, ctr_image_digests
from integration.images import Archive
from integration.testbed import Containerd, Registry, skopeo

SOURCE_LABEL = "containerd.io/distribution.source.127.0.0.1"
SNAPSHOT_LABEL_PREFIX = "containerd.io/gc.ref.snapshot."
UNCOMPRESSED = "containerd.io/uncompressed"


class Skopeo:
    """skopeo with a private HOME and auth file, so host credentials never leak in; each
    command may take ``timeout`` seconds."""

    def __init__(self, tmp: Path, *, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self.env = dict(os.environ)
        home, run = tmp / "sk-home", tmp / "sk-run"
        home.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        self.env.update(
            HOME=str(home), XDG_RUNTIME_DIR=str(run), REGISTRY_AUTH_FILE=str(tmp / "sk-auth.json")
        )

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return skopeo(*args, check=check, env=self.env, timeout=self.timeout)

    def seed(
        self,
        archive: Path,
        dest: str,
        *,
        all_platforms: bool = False,
        creds: str | None = None,
        cert_dir: Path | None = None,
    ) -> None:
        """Copy an OCI archive to ``docker://dest``."""
        args = ["copy"]
        if all_platforms:
            args.append("--all")
        if creds:
            args += ["--dest-creds", creds]
        if cert_dir is not None:
            args += ["--dest-cert-dir", str(cert_dir)]
        else:
            args.append("--dest-tls-verify=false")
        self(*args, f"oci-archive:{archive}", f"docker://{dest}")

    def raw(self, ref: str, *, creds: str | None = None, cert_dir: Path | None = None) -> bytes:
        """``skopeo inspect --raw``: the manifest bytes the registry serves for ``ref``."""
        args = ["inspect", "--raw"]
        if creds:
            args += ["--creds", creds]
        if cert_dir is not None:
            args += ["--cert-dir", str(cert_dir)]
        else:
            args.append("--tls-verify=false")
        return self(*args, f"docker://{ref}").stdout.encode()


def seed(
    reg: Registry | FaultProxy,
    repo: str,
    archive: Archive,
    *tags: str,
    creds: str | None = None,
    cert_dir: Path | None = None,
) -> None:
    """Push ``archive`` into ``reg`` as ``repo:TAG`` for each tag (``latest`` without tags) with
    skopeo under a throw-away HOME; ``cert_dir`` verifies the registry, else TLS is not."""
    with tempfile.TemporaryDirectory(prefix="pyctl-seed-") as home:
        sk = Skopeo(Path(home))
        for tag in tags or ("latest",):
            sk.seed(archive.path, f"{reg.host}/{repo}:{tag}", creds=creds, cert_dir=cert_dir)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(diff_ids: Sequence[str]) -> str:
    """identity.ChainID of a layer stack."""
    chain = diff_ids[0]
    for d in diff_ids[1:]:
        chain = sha256(f"{chain} {d}".encode())
    return chain


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain ID of every prefix of a layer stack (the snapshots an unpack commits)."""
    return [chain_id(diff_ids[: i + 1]) for i in range(len(diff_ids))]


# --- what a pyctl run printed ---------------------------------------------------------------------


def assert_success(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """Exit 0, no error line, no traceback; returns stdout lines (progress is on stderr)."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert ERROR_PREFIX not in proc.stderr, proc.stderr
    return proc.stdout.splitlines()


_PROGRESS_LINE = re.compile(r"^[0-9a-f]{12}: \S.*$")


def assert_failure(proc: subprocess.CompletedProcess[str], *fragments: str, code: int = 1) -> str:
    """Exit ``code``, nothing on stdout, and on stderr exactly one ``pyctl: error: …`` line,
    the last one, holding every fragment; anything before it is progress (one line per blob
    that finished before the failure). Returns the message."""
    assert proc.returncode == code, (
        f"exit {proc.returncode} (wanted {code})\n--- stdout ---\n{proc.stdout}\n"
        f"--- stderr ---\n{proc.stderr}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.splitlines()
    assert lines and lines[-1].startswith(ERROR_PREFIX), proc.stderr
    for line in lines[:-1]:
        assert _PROGRESS_LINE.match(line), f"unexpected stderr line {line!r}\n{proc.stderr}"
    for fragment in fragments:
        assert fragment in lines[-1], f"{fragment!r} not in {lines[-1]!r}"
    return lines[-1][len(ERROR_PREFIX) :]


# --- what containerd holds -----------------------------------------------------------------------

_LABEL_SPLIT = re.compile(r",(?=containerd\.io/|io\.cri-containerd\.)")


def _labels(text: str) -> dict[str, str]:
    if text in ("", "-"):
        return {}
    out = {}
    for item in _LABEL_SPLIT.split(text):
        k, _, v = item.partition("=")
        out[k] = v
    return out


def content_labels(containerd: Containerd, namespace: str) -> dict[str, dict[str, str]]:
    """``ctr content ls``: digest -> labels."""
    out: dict[str, dict[str, str]] = {}
    for line in containerd.ctr("content", "ls", namespace=namespace).stdout.splitlines()[1:]:
        if not line.strip():
            continue
        fields = line.split("\t")
        out[fields[0]] = _labels(fields[-1].strip() if len(fields) > 3 else "")
    return out


@dataclass(frozen=True)
class CtrImage:
    name: str
    media_type: str
    digest: str
    platforms: str
    labels: dict[str, str]


def ctr_images(containerd: Containerd, namespace: str) -> dict[str, CtrImage]:
    """``ctr images ls``: name -> record."""
    out: dict[str, CtrImage] = {}
    for line in containerd.ctr("images", "ls", namespace=namespace).stdout.splitlines()[1:]:
        f = line.split()
        if not f:
            continue
        # REF TYPE DIGEST SIZE(2 fields) PLATFORMS LABELS
        out[f[0]] = CtrImage(f[0], f[1], f[2], f[5], _labels(f[6]))
    return out


def snapshot_keys(containerd: Containerd, namespace: str) -> list[str]:
    lines = containerd.ctr("snapshots", "ls", namespace=namespace).stdout.splitlines()[1:]
    return [ln.split()[0] for ln in lines if ln.strip()]


def snapshot_info(containerd: Containerd, namespace: str, key: str) -> dict[str, object]:
    info: dict[str, object] = json.loads(
        containerd.ctr("snapshots", "info", key, namespace=namespace).stdout
    )
    return info


def leases(containerd: Containerd, namespace: str) -> list[str]:
    return containerd.lines("leases", "ls", "-q", namespace=namespace)


# --- client configuration ----------------------------------------------------------------------

_HELPER = """\
#!{python}
import json, os, sys
STORE = {store!r}
LOG = {log!r}
action = sys.argv[1] if len(sys.argv) > 1 else ""
data = sys.stdin.read()
with open(LOG, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "stdin": data}}) + "\\n")
db = json.load(open(STORE)) if os.path.exists(STORE) else {{}}
def save():
    with open(STORE, "w") as f:
        json.dump(db, f)
if action == "store":
    d = json.loads(data)
    db[d["ServerURL"]] = {{"Username": d["Username"], "Secret": d["Secret"]}}
    save()
elif action == "get":
    url = data.strip()
    if url not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(dict(ServerURL=url, **db[url])))
elif action == "erase":
    url = data.strip()
    if url not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    del db[url]
    save()
elif action == "list":
    print(json.dumps({{k: v["Username"] for k, v in db.items()}}))
else:
    print("unknown action")
    sys.exit(1)
"""


@dataclass
class Helper:
    """``docker-credential-pyctltest`` in ``bin``: a credential helper keeping its store in a
    JSON file and logging every call (put :meth:`env` into pyctl's environment)."""

    bin: Path
    store: Path
    log: Path

    @classmethod
    def install(cls, directory: Path) -> Helper:
        (directory / "bin").mkdir(parents=True)
        h = cls(directory / "bin", directory / "store.json", directory / "calls.log")
        script = h.bin / "docker-credential-pyctltest"
        script.write_text(_HELPER.format(python=sys.executable, store=str(h.store), log=str(h.log)))
        script.chmod(0o755)
        return h

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}

    def db(self) -> dict[str, Any]:
        data = json.loads(self.store.read_text())
        assert isinstance(data, dict)
        return data


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def auth_entry(user: str, password: str) -> dict[str, str]:
    """A config.json ``auths`` entry: base64 ``user:password``."""
    return {"auth": b64(f"{user}:{password}")}


def write_docker_config(directory: Path, doc: Mapping[str, Any]) -> Path:
    """``DIRECTORY/config.json`` holding ``doc``; returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(doc))
    return path


def docker_config(directory: Path, auths: Mapping[str, tuple[str, str]]) -> Path:
    """A DOCKER_CONFIG directory whose config.json (mode 0600) has base64 ``auth`` for each
    host."""
    doc = {"auths": {host: auth_entry(u, p) for host, (u, p) in auths.items()}}
    write_docker_config(directory, doc).chmod(0o600)
    return directory


def hosts_dir(directory: Path, hosts: Mapping[str, Path]) -> Path:
    """A containerd hosts directory: ``DIR/<host>/hosts.toml`` with ``ca = "<path>"``."""
    for host, ca in hosts.items():
        d = directory / host
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts.toml").write_text(f'server = "https://{host}"\nca = "{ca}"\n')
    return directory


def ingest_offsets(containerd: Containerd, namespace: str) -> dict[str, int]:
    """The namespace's unfinished ingests (``ctr content active``): ref -> bytes written so far,
    read from containerd's ingest directories (``ctr`` prints rounded sizes)."""
    refs = [
        ln.split()[0]
        for ln in containerd.ctr("content", "active", namespace=namespace).stdout.splitlines()[1:]
        if ln.strip()
    ]
    base = containerd.root / "io.containerd.content.v1.content" / "ingest"
    sizes: dict[str, int] = {}
    if base.is_dir():
        for d in base.iterdir():
            with contextlib.suppress(OSError):
                # the backend ref is "<namespace>/<sequence>/<ref>"
                key = (d / "ref").read_text().strip()
                ns, _, rest = key.partition("/")
                if ns == namespace:
                    sizes[rest.partition("/")[2]] = (d / "data").stat().st_size
    return {ref: sizes.get(ref, -1) for ref in refs}


def images_check(containerd: Containerd, namespace: str) -> dict[str, tuple[str, bool]]:
    """``ctr images check``: name -> (status word, unpacked); status is ``complete`` when
    every blob the image needs is in the content store."""
    out: dict[str, tuple[str, bool]] = {}
    for line in containerd.ctr("images", "check", namespace=namespace).stdout.splitlines()[1:]:
        f = line.split()
        if f:
            # REF TYPE DIGEST STATUS (n/n) SIZE… UNPACKED
            out[f[0]] = (f[3], f[-1] == "true")
    return out


def non_loopback_address() -> str:
    """An IPv4 address of this machine that is not a loopback address (a /32 ``host LOCAL``
    route outside 127.0.0.0/8), for registries that must not count as loopback ones; traffic
    to it stays on this machine. Fails the test when there is none."""
    import ipaddress
    import itertools

    lines = Path("/proc/net/fib_trie").read_text().splitlines()
    for prev, line in itertools.pairwise(lines):
        if line.strip() == "/32 host LOCAL" and "|--" in prev:
            ip = ipaddress.ip_address(prev.split("|--", 1)[1].strip())
            if not ip.is_loopback:
                return str(ip)
    raise AssertionError("this machine has no non-loopback IPv4 address (see /proc/net/fib_trie)")


def assert_pulled(
    proc: subprocess.CompletedProcess[str],
    containerd: Containerd,
    namespace: str,
    name: str,
    digest: str | None = None,
) -> None:
    """Exit 0, stdout is the full reference, no error on stderr, and ctr has the record (which
    targets ``digest`` when given)."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout == name + "\n", proc.stdout
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr.lower(), proc.stderr
    records = ctr_image_digests(containerd, namespace)
    if digest is None:
        assert name in records, records
    else:
        assert records.get(name) == digest


def assert_not_pulled(containerd: Containerd, namespace: str) -> None:
    assert ctr_image_digests(containerd, namespace) == {}


JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")  # a JWT's header + claims


def assert_no_secrets(proc: subprocess.CompletedProcess[str], *secrets: str) -> None:
    """No secret, plain or base64, and no token (JWT) on stdout or stderr."""
    out = proc.stdout + proc.stderr
    for secret in secrets:
        assert secret not in out, f"secret {secret[:4]}… in the output"
        assert b64(secret) not in out, f"secret {secret[:4]}… in the output, base64"
    assert not JWT.search(out), f"a token in the output: {JWT.search(out)}"


def hosts_check(
    runner: Callable[..., subprocess.CompletedProcess[str]],
    target: str,
    *args: str,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """``pyctl ARGS hosts --check --format json [--timeout T] TARGET``: nothing on stderr; the
    exit status and the document."""
    more = ["--timeout", str(timeout)] if timeout is not None else []
    proc = runner(*args, "hosts", "--check", "--format", "json", *more, target, env=env)
    assert proc.stderr == "", proc.stderr
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return proc.returncode, doc


def hosts_json(
    runner: Callable[..., subprocess.CompletedProcess[str]], *args: str
) -> dict[str, Any]:
    """``pyctl ARGS --format json`` (for ``hosts``): exit 0, the JSON object it prints."""
    doc = json.loads(assert_ok(runner(*args, "--format", "json")))
    assert isinstance(doc, dict)
    return doc
