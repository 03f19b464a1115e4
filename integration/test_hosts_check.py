"""``pyctl hosts --check``, the offline lint (issue 12, item 1), run as a command on real files.

Each test asserts the exact finding (severity, file, line, message, fix) and, where it is
cheap, that containerd really does what the finding says — and that the fix fixes it:

* ``containerd --config F config dump`` of the test bed's containerd (``PYCTL_TEST_CONTAINERD_BIN``:
  CI runs the suite against each release) (the ``plugin.`` typo, a registry under the wrong
  key);
* a private containerd started with the same registry section (``config_path`` beside
  ``mirrors``: containerd runs, its CRI plugin does not load) or pulling through legacy
  mirrors over its CRI ImageService (an endpoint whose path is not the API root);
* ``ctr images pull --hosts-dir`` (containerd's own hosts.toml code) before and after the fix
  for each hosts.toml case, against the test bed's TLS and mutual-TLS registries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from integration.conftest import PyctlRunner, SecureRegistry
from integration.containerd_helpers import Binary, cri_pull, dump
from integration.helpers import assert_ok, write
from integration.images import Archive
from integration.registry_helpers import Skopeo, hosts_check
from integration.testbed import CertAuthority, Containerd, Registry, TestbedError

HARBOR = "harbor.local"
REF = f"{HARBOR}/team/app:1"
CRI2 = 'plugins."io.containerd.grpc.v1.cri"'
CRI3 = 'plugins."io.containerd.cri.v1.images"'
IGNORED = 'containerd 1.6/1.7 ignore it without a word, 2.x logs "Ignoring unknown key in TOML'
PULLS = f"containerd fails every pull from {HARBOR}"
NOT_PEM_FIX = (
    "replace it with the registry CA's certificate in PEM form (-----BEGIN CERTIFICATE-----)"
)

Problem = tuple[str, str, int | None, str, str]


def check(runner: PyctlRunner, *args: str, ref: str = REF) -> tuple[int, dict[str, Any]]:
    """``pyctl ARGS hosts --check --format json REF``: exit status and the document."""
    return hosts_check(runner, ref, *args)


def problems(doc: dict[str, Any]) -> list[Problem]:
    return [
        (f["severity"], f["file"], f["line"], f["message"], f["fix"])
        for f in doc["config"]
        if f["severity"] != "ok"
    ]


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of ``path`` that starts with ``text``."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(text):
            return n
    raise AssertionError(f"no line starting with {text!r} in {path}")


# --- containerd's config -------------------------------------------------------------------------


def test_plugin_typo(
    isolated: PyctlRunner,
    tmp_path: Path,
    binaries: Callable[[str], Binary],
) -> None:
    main = write(
        tmp_path / "config.toml",
        'version = 2\n\n[plugin."io.containerd.grpc.v1.cri".registry.mirrors."harbor.local"]\n'
        '  endpoint = ["https://mirror.example"]\n',
    )
    code, doc = check(isolated, "--containerd-config", str(main), "--hosts-dir", str(tmp_path))
    assert (code, problems(doc)) == (
        1,
        [
            (
                "FAIL",
                str(main),
                3,
                '[plugin."io.containerd.grpc.v1.cri".registry.mirrors."harbor.local"]: '
                "containerd has no top-level 'plugin' table (plugin settings live under "
                f'"plugins"): {IGNORED}" and ignores it; none of its registry settings apply',
                "write [plugins.…] for [plugin.…] in every table header (the registry of this "
                f"config is [{CRI2}.registry])",
            )
        ],
    )
    # containerd itself: no mirror for harbor.local, in any version; 2.x says so in its log
    for release in ["bed"]:
        binary = binaries(release)
        status, registry, stderr = dump(binary, main, tmp_path)
        assert status == 0, stderr
        assert HARBOR not in registry.get("mirrors", {}), (binary, registry)
        if binary.version[0] >= 2:
            assert "Ignoring unknown key in TOML" in stderr and "plugin io.containerd" in stderr


@pytest.mark.parametrize("version", [3, 4])
def test_registry_under_the_wrong_key_for_the_version(
    isolated: PyctlRunner,
    tmp_path: Path,
    binaries: Callable[[str], Binary],
    version: int,
) -> None:
    main = write(
        tmp_path / "config.toml",
        f'version = {version}\n\n[{CRI2}.registry]\n  config_path = "/etc/containerd/certs.d"\n',
    )
    code, doc = check(isolated, "--containerd-config", str(main), "--hosts-dir", str(tmp_path))
    logs = (
        '(they log "Ignoring unknown key in TOML for plugin" io.containerd.grpc.v1.cri: registry)'
    )
    why = {
        3: f"containerd 2.0, 2.1 and 2.2 ignore it {logs}; only 2.3 and later move it to "
        "io.containerd.cri.v1.images when they migrate a version 3 config",
        4: f"containerd 2.3 and later ignore it in a version 4 config {logs}",
    }[version]
    assert (code, problems(doc)) == (
        1,
        [
            (
                "FAIL",
                str(main),
                3,
                f"[{CRI2}.registry] in a version {version} config: {why}",
                f"write it as [{CRI3}.registry]",
            )
        ],
    )
    # containerd 2.3 migrates a version 3 config and reads it, ignores it in version 4; 1.7
    # does not start with either version; 1.6.20 reads both as version 2 (it checks no
    # version). 2.0-2.2, which ignore it in version 3, are not in the test matrix.
    for release in ["bed"]:
        binary = binaries(release)
        status, registry, stderr = dump(binary, main, tmp_path)
        if binary.version[:2] == (1, 7):
            assert status != 0 and f"unsupported config version `{version}`" in stderr
        elif binary.version[0] == 1:
            assert registry["config_path"] == "/etc/containerd/certs.d"
        elif binary.version >= (2, 3, 0):
            read = registry.get("config_path", "") == "/etc/containerd/certs.d"
            assert read is (version == 3), (binary, registry, stderr)


def test_config_path_beside_mirrors(
    containerd: Containerd, isolated: PyctlRunner, tmp_path: Path
) -> None:
    """The finding for the very config a private containerd then runs with: containerd answers,
    its CRI plugin does not load."""
    key = CRI3 if containerd.version >= (2, 0, 0) else CRI2
    extra = (
        f"  [{key}.registry]\n    config_path = {json.dumps(str(tmp_path / 'certs.d'))}\n"
        f'  [{key}.registry.mirrors."docker.io"]\n    endpoint = ["https://mirror.gcr.io"]\n'
    )
    (tmp_path / "certs.d").mkdir()
    node = Containerd(tmp_path / "node", extra_config=extra)  # its log outlives it
    main = write(tmp_path / "config.toml", node.render_config())
    code, doc = check(isolated, "--containerd-config", str(main))
    line = line_of(main, f'[{key}.registry.mirrors."docker.io"]')
    assert (code, problems(doc)) == (
        1,
        [
            (
                "FAIL",
                str(main),
                line,
                f"registry.mirrors.\"docker.io\" is set beside config_path = '{tmp_path}/certs.d' "
                f"(from {main}): containerd's CRI plugin does not load (\"`mirrors` cannot be set "
                'when `config_path` is provided"; 1.6, 1.7 and 2.x alike): containerd runs, but '
                "the kubelet can pull and run nothing (pyctl follows config_path)",
                f"delete the mirrors tables and write {tmp_path}/certs.d/docker.io/hosts.toml with "
                'a [host."ENDPOINT"] table per mirror (capabilities = ["pull", "resolve"])',
            )
        ],
    )
    with pytest.raises(TestbedError) as failed:
        node.start()  # answers ctr, then the bed finds its CRI plugin in error
    assert " is error\n" in str(failed.value)
    assert "`mirrors` cannot be set when `config_path` is provided" in node.log_path.read_text()


def test_legacy_endpoint_with_a_path_and_no_scheme(
    containerd: Containerd,
    isolated: PyctlRunner,
    tmp_path: Path,
    registry: Registry,
    tiny: Archive,
) -> None:
    """The aliyun pattern: containerd adds the scheme but uses the path as the API root, so the
    mirror never answers; the endpoint the fix gives pulls through the same registry."""
    Skopeo(tmp_path / "skopeo").seed(tiny.path, registry.ref("google_containers/pause", "1"))
    key = CRI3 if containerd.version >= (2, 0, 0) else CRI2
    broken = f"{registry.host}/google_containers"
    main = write(
        tmp_path / "config.toml",
        f'version = {3 if key == CRI3 else 2}\n[{key}.registry.mirrors."k8s.test"]\n'
        f'  endpoint = ["{broken}"]\n',
    )
    code, doc = check(
        isolated,
        "--containerd-config",
        str(main),
        "--hosts-dir",
        str(tmp_path),
        ref="k8s.test/pause:1",
    )
    fixed = f"http://{registry.host}/v2/google_containers"
    assert (code, problems(doc)) == (
        1,
        [
            (
                "FAIL",
                str(main),
                3,
                f'registry.mirrors."k8s.test" endpoint {broken!r} has no scheme (containerd makes '
                f"it http://{broken}) and has the path '/google_containers', which containerd uses "
                "as the registry API root as written (no /v2 added): requests go to "
                f"http://{broken}/<name>/manifests/<tag>, where no registry answers, and every "
                "pull falls through to k8s.test",
                f'write "{fixed}"',
            )
        ],
    )
    extra = (
        f'  [{key}.registry.mirrors."k8s.test"]\n    endpoint = ["{broken}"]\n'
        f'  [{key}.registry.mirrors."fixed.test"]\n    endpoint = ["{fixed}"]\n'
    )
    with Containerd(extra_config=extra) as node:
        with pytest.raises(grpc.RpcError):
            cri_pull(node.address, "k8s.test/pause:1")
        assert cri_pull(node.address, "fixed.test/pause:1").startswith("sha256:")


# --- hosts.toml, against containerd's own hosts.toml code (ctr --hosts-dir) ----------------------


@dataclass
class HostsCase:
    """A hosts directory for harbor.local that is wrong one way: ``write(d, reg)`` makes it
    below ``d`` and returns the file the finding names; ``finding(d, reg)`` is the expected
    finding; ``fix(d, reg)`` applies the finding's fix; ``ctr`` is what ctr's failure says."""

    write: Callable[[Path, SecureRegistry], Path]
    finding: Callable[[Path, SecureRegistry], Problem]
    fix: Callable[[Path, SecureRegistry], object]
    ctr: str


def good_toml(reg: SecureRegistry, **extra: str) -> str:
    lines = [
        f'server = "https://{reg.host}"',
        f'[host."https://{reg.host}"]',
        '  capabilities = ["pull", "resolve", "push"]',
        f'  ca = "{reg.tls.ca}"' if reg.tls else "",
        *(f"  {k} = {v}" for k, v in extra.items()),
    ]
    return "\n".join(line for line in lines if line) + "\n"


def hosts_file(d: Path, name: str = HARBOR) -> Path:
    return d / name / "hosts.toml"


def _replace(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


CASES: dict[str, HostsCase] = {
    "unknown key": HostsCase(
        write=lambda d, reg: write(
            hosts_file(d),
            f'server = "https://{reg.host}"\n[host."https://{reg.host}"]\n'
            '  capabilities = ["pull", "resolve"]\n  skip_verfy = true\n',
        ),
        finding=lambda d, reg: (
            "FAIL",
            str(hosts_file(d)),
            4,
            f"[host.\"https://{reg.host}\"]: containerd does not know the key 'skip_verfy' and "
            "ignores it (it knows capabilities, ca, client, skip_verify, header, override_path, "
            "dial_timeout)",
            "rename it to 'skip_verify'",
        ),
        fix=lambda d, reg: _replace(hosts_file(d), "skip_verfy", "skip_verify"),
        ctr="x509: certificate signed by unknown authority",
    ),
    "unknown capability": HostsCase(
        write=lambda d, reg: write(hosts_file(d), good_toml(reg).replace('"push"', '"mirror"')),
        finding=lambda d, reg: (
            "FAIL",
            str(hosts_file(d)),
            3,
            f"[host.\"https://{reg.host}\"] capabilities: unknown capability 'mirror' (containerd "
            "knows pull, resolve, push, and referrers since 2.2); containerd rejects the whole "
            'file (it logs "failed to decode hosts.toml") and uses only the *.crt / *.cert files '
            f"of {d}/{HARBOR}: every mirror, server and ca in it is ignored",
            'write capabilities = ["pull", "resolve"]',
        ),
        fix=lambda d, reg: _replace(hosts_file(d), ', "mirror"', ""),
        ctr="harbor.local/v2/team/app/manifests/1",  # not the registry: the name itself
    ),
    "port 443 directory": HostsCase(
        write=lambda d, reg: write(hosts_file(d, f"{HARBOR}:443"), good_toml(reg)),
        finding=lambda d, reg: (
            "FAIL",
            str(d / f"{HARBOR}:443"),
            None,
            f"is for {HARBOR}:443: containerd looks up {HARBOR}/ (then _default/) for {HARBOR} "
            "and never matches it",
            f"rename it to {d / HARBOR}",
        ),
        fix=lambda d, reg: (d / f"{HARBOR}:443").rename(d / HARBOR),
        ctr="harbor.local/v2/team/app/manifests/1",
    ),
    "missing ca": HostsCase(
        write=lambda d, reg: write(
            hosts_file(d), good_toml(reg).replace(str(reg.tls.ca if reg.tls else ""), "ca.crt")
        ),
        finding=lambda d, reg: (
            "FAIL",
            str(hosts_file(d)),
            4,
            f'[host."https://{reg.host}"] ca {d}/{HARBOR}/ca.crt does not exist: {PULLS}',
            f"put the registry's CA certificate (PEM) at {d}/{HARBOR}/ca.crt, or fix the path",
        ),
        fix=lambda d, reg: (d / HARBOR / "ca.crt").write_bytes(
            reg.tls.ca.read_bytes() if reg.tls else b""
        ),
        ctr="unable to read CA cert",
    ),
    "ca not PEM": HostsCase(
        write=lambda d, reg: (
            write(d / HARBOR / "ca.crt", "MIIB...not a PEM file\n"),
            write(
                hosts_file(d), good_toml(reg).replace(str(reg.tls.ca if reg.tls else ""), "ca.crt")
            ),
        )[1],
        finding=lambda d, reg: (
            "FAIL",
            str(hosts_file(d)),
            4,
            f'[host."https://{reg.host}"] ca {d}/{HARBOR}/ca.crt holds no PEM certificate: {PULLS}',
            NOT_PEM_FIX,
        ),
        fix=lambda d, reg: (d / HARBOR / "ca.crt").write_bytes(
            reg.tls.ca.read_bytes() if reg.tls else b""
        ),
        ctr="unable to load CA cert",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hosts_toml_findings_and_their_fixes(
    case: str,
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    tls_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    c = CASES[case]
    tls_registry.seed(tiny, "team/app", "1")
    d = tmp_path / "certs.d"
    c.write(d, tls_registry)
    fix_fixes_it(
        containerd,
        namespace,
        isolated,
        d,
        c.finding(d, tls_registry),
        c.ctr,
        lambda: c.fix(d, tls_registry),
    )


def fix_fixes_it(
    containerd: Containerd,
    namespace: str,
    runner: PyctlRunner,
    d: Path,
    finding: Problem,
    ctr_says: str | tuple[str, ...],
    fix: Callable[[], object],
) -> None:
    """The lint of hosts directory ``d`` is exactly ``finding``, and ``ctr images pull`` fails
    saying ``ctr_says`` (or one of them); after ``fix``, the lint finds nothing and ctr
    pulls."""
    args = ("--containerd-config", "", "--hosts-dir", str(d))
    code, doc = check(runner, *args)
    assert (code, problems(doc)) == (1, [finding])
    pull = ("images", "pull", "--hosts-dir", str(d), REF)
    failed = containerd.ctr(*pull, namespace=namespace, check=False)
    says = (ctr_says,) if isinstance(ctr_says, str) else ctr_says
    assert failed.returncode != 0 and any(s in failed.stderr for s in says), failed.stderr
    fix()
    code, doc = check(runner, *args)
    assert (code, problems(doc)) == (0, [])
    containerd.ctr(*pull, namespace=namespace)


def test_no_host_table(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    tls_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    """containerd 1.6 and 1.7 before 1.7.32 reject a hosts.toml without [host]: a warning."""
    tls_registry.seed(tiny, "team/app", "1")
    d = tmp_path / "certs.d"
    assert tls_registry.tls is not None
    path = write(
        hosts_file(d), f'server = "https://{tls_registry.host}"\nca = "{tls_registry.tls.ca}"\n'
    )
    code, doc = check(isolated, "--containerd-config", "", "--hosts-dir", str(d))
    assert (code, problems(doc)) == (
        0,
        [
            (
                "warn",
                str(path),
                None,
                'has no [host."…"] table: containerd 1.6 (all releases; Debian 12 ships 1.6.20) '
                'and 1.7 before 1.7.32 reject it ("invalid `host` tree") and use only the *.crt / '
                f"*.cert files of {d}/{HARBOR}, so its server and ca are ignored there",
                f'add [host."https://{tls_registry.host}"] with capabilities = ["pull", "resolve", '
                '"push"] and the ca of the top level',
            )
        ],
    )
    pull = containerd.ctr(
        "images", "pull", "--hosts-dir", str(d), REF, namespace=namespace, check=False
    )
    v = containerd.version
    if v < (1, 7, 32):
        assert pull.returncode != 0 and "invalid `host` tree" in pull.stderr, pull.stderr
    else:
        assert pull.returncode == 0, pull.stderr


# --- certificates ------------------------------------------------------------------------------


def expiry(cert: Path) -> str:
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    return f"{c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"


def test_expired_ca_certificate(
    isolated: PyctlRunner, cert_authority: CertAuthority, tmp_path: Path
) -> None:
    old = cert_authority.issue_server_cert("old-ca", ("harbor.local",), expired=True)
    d = tmp_path / "certs.d"
    path = write(
        hosts_file(d),
        f'server = "https://{HARBOR}"\n[host."https://{HARBOR}"]\n  ca = "{old.cert}"\n',
    )
    code, doc = check(isolated, "--containerd-config", "", "--hosts-dir", str(d))
    assert (code, problems(doc)) == (
        1,
        [
            (
                "FAIL",
                str(path),
                3,
                f'[host."https://{HARBOR}"] ca {old.cert}: certificate CN=harbor.local expired on '
                f"{expiry(old.cert)}: no server certificate verifies through it",
                f"replace {old.cert} with the CA's current certificate",
            )
        ],
    )


@pytest.mark.parametrize("case", ["key does not match", "expired client certificate"])
def test_client_certificates(
    case: str,
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    mtls_registry: SecureRegistry,
    cert_authority: CertAuthority,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    reg = mtls_registry
    reg.seed(tiny, "team/app", "1")
    good = reg.client_cert
    assert good is not None
    ctr: str | tuple[str, ...]
    if case == "key does not match":
        cert, key = good.cert, cert_authority.issue_client_cert("other-client").key
        finding = (
            f'[host."https://{reg.host}"] client {cert}: the key in {key} does not belong to '
            f'this certificate: {PULLS} ("tls: private key does not match public key")',
            f"pair {cert} with the key it was issued for",
        )
        ctr = "tls: private key does not match public key"
    else:
        old = cert_authority.issue_client_cert("old-client", expired=True)
        cert, key = old.cert, old.key
        finding = (
            f'[host."https://{reg.host}"] client {cert}: client certificate '
            f"CN=pyctl-test-client expired on {expiry(cert)}: the registry refuses it",
            f"renew the client certificate {cert}",
        )
        # the registry refuses it: Go's TLS alert ("bad certificate"), or, when the alert
        # loses the race with the client's first write (TLS 1.3), a reset connection
        ctr = ("remote error: tls: ", "connection reset by peer")
    d = tmp_path / "certs.d"
    path = write(hosts_file(d), good_toml(reg, client=json.dumps([[str(cert), str(key)]])))
    right = good_toml(reg, client=json.dumps([[str(good.cert), str(good.key)]]))
    fix_fixes_it(
        containerd,
        namespace,
        isolated,
        d,
        ("FAIL", str(path), 5, *finding),
        ctr,
        lambda: write(path, right),
    )


# --- a healthy node ------------------------------------------------------------------------------


def test_a_healthy_setup(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    tls_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    """config_path in containerd's config, a hosts.toml with a [host] table and its CA: all ok,
    exit 0, the JSON document in its documented shape — and the pull works."""
    tls_registry.seed(tiny, "team/app", "1")
    d = tmp_path / "certs.d"
    hosts = write(hosts_file(d), good_toml(tls_registry))
    main = write(
        tmp_path / "config.toml", f"version = 2\n[{CRI2}.registry]\n  config_path = '{d}'\n"
    )
    code, doc = check(isolated, "--containerd-config", str(main))
    assert code == 0
    assert set(doc) == {"config", "endpoints", "verdict"}
    url = f"https://{tls_registry.host}/v2"
    # the [host] entry (with its ca) first, then the server entry (without): the pull uses the
    # first; the second, which a pull never reaches, has no ca
    assert [(e["url"], e["usable"]) for e in doc["endpoints"]] == [(url, True), (url, False)]
    first, second = doc["endpoints"]
    assert {s["severity"] for s in first["steps"]} == {"ok"}
    assert [s["step"] for s in second["steps"] if s["severity"] == "FAIL"] == ["verify"]
    assert doc["verdict"] == {
        "ok": True,
        "registry": HARBOR,
        "reference": REF,
        "endpoint": url,
        "reason": f"a pull of {REF} uses endpoint 1, {url}",
    }
    for f in doc["config"]:
        assert set(f) == {"severity", "file", "line", "message", "fix"}
    assert [(f["severity"], f["file"], f["line"]) for f in doc["config"]] == [
        ("ok", str(main), None),
        ("ok", str(hosts), None),
        ("ok", str(hosts), 4),
    ]
    assert tls_registry.tls is not None
    assert doc["config"][2]["message"].startswith(
        f'[host."https://{tls_registry.host}"] ca {tls_registry.tls.ca}: certificate '
        "CN=pyctl integration test CA, valid until "
    )
    text = assert_ok(isolated("--containerd-config", str(main), "hosts", "--check", REF))
    assert text.splitlines()[0] == f"Registry: {HARBOR}"
    assert f"ok    {hosts}:4  [host." in text
    assert text.endswith(f"Verdict: ok: a pull of {REF} uses endpoint 1, {url}\n")
    containerd.ctr("images", "pull", "--hosts-dir", str(d), REF, namespace=namespace)


def test_the_checklist_names_file_line_and_fix(isolated: PyctlRunner, tmp_path: Path) -> None:
    main = write(
        tmp_path / "config.toml",
        f'version = 2\n[{CRI2}.registry.mirrors."{HARBOR}"]\n  endpoints = ["https://m.example"]\n',
    )
    proc = isolated(
        "--containerd-config", str(main), "--hosts-dir", str(tmp_path), "hosts", "--check", REF
    )
    assert proc.returncode == 1 and proc.stderr == ""
    assert (
        f'FAIL  {main}:3  {CRI2}.registry.mirrors."{HARBOR}".endpoints: containerd does not '
        f"know 'endpoints' here (it knows endpoint): {IGNORED} for plugin\" and ignores it — "
        "fix: rename it to 'endpoint'\n"
    ) in proc.stdout
    assert proc.stdout.endswith(
        f"Verdict: FAIL: 1 configuration problem, the first at {main}:3; no endpoint works: "
        f"1. https://{HARBOR}/v2 fails at dns\n"
    )
    proc = isolated("hosts", "--check", "Not/A/Ref")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("pyctl: error: hosts Not/A/Ref: invalid reference")
    assert len(proc.stderr.splitlines()) == 1


def test_writes_nothing(isolated: PyctlRunner, tmp_path: Path) -> None:
    write(hosts_file(tmp_path / "certs.d"), '[host."https://x"]\n  capabilities = ["bad"]\n')
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))  # home included
    args = ("--containerd-config", "", "--hosts-dir", str(tmp_path / "certs.d"))
    assert isolated(*args, "hosts", "--check", REF).returncode == 1
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
