"""containerd's config ``imports``, read as containerd reads them (issue 9, item 2).

* A node whose ``config.toml`` imports ``conf.d/*.toml``, with the CRI ``config_path`` in a
  drop-in: ``pyctl pull`` goes through that hosts directory (a TLS registry with a private CA)
  and ``pyctl hosts`` names the drop-in; nested imports; a bad import is one error line.
* The same files given to real containerd binaries: ``containerd --config FILE config dump``
  (which loads, imports and merges without starting anything, and prints the CRI plugin's
  effective registry section) must show the registry settings pyctl reads — for the test
  bed's containerd (``PYCTL_TEST_CONTAINERD_BIN``; CI runs the suite against each release).
* A private containerd whose CRI registry ``config_path`` sits in an imported drop-in pulls
  through it over its CRI ImageService (what the kubelet does), and pyctl, given the same
  config file, reads the same drop-in.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.conftest import PyctlRunner, SecureRegistry
from integration.containerd_helpers import Binary, cri_pull, dump
from integration.helpers import assert_error, assert_ok, ctr_image_digests
from integration.images import Archive
from integration.registry_helpers import assert_pulled, hosts_json
from integration.testbed import Containerd
from pyctl.errors import ConfigError
from pyctl.registry.hosts.containerd_config import Rules, load_containerd_config

HARBOR = "harbor.local"
CRI2 = 'plugins."io.containerd.grpc.v1.cri"'
CRI3 = 'plugins."io.containerd.cri.v1.images"'


# --- helpers --------------------------------------------------------------------------------------


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) below ``root``; returns ``root/config.toml``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "config.toml"


def certs_for(root: Path, reg: SecureRegistry) -> Path:
    """A certs.d directory mapping ``harbor.local`` to ``reg`` with its CA (absolute path).

    The ``[host]`` table is there for containerd 1.6.20, which refuses a hosts.toml without
    one ("invalid `host` tree") and then falls back to DNS."""
    assert reg.ca_path is not None
    host_dir = root / HARBOR
    host_dir.mkdir(parents=True)
    (host_dir / "ca.crt").write_bytes(reg.ca_path.read_bytes())
    (host_dir / "hosts.toml").write_text(
        f'server = "https://{reg.host}"\n'
        f'[host."https://{reg.host}"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n'
        f"  ca = {json.dumps(str(host_dir / 'ca.crt'))}\n"
    )
    return root


# --- pyctl on a node with drop-ins ----------------------------------------------------------------


def test_config_path_in_a_drop_in_is_followed_by_pull_and_named_by_hosts(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    tls_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    """The issue's node: ``imports = ["conf.d/*.toml"]``, ``config_path`` in a drop-in."""
    tls_registry.seed(tiny, "team/app", "1")
    certs = certs_for(tmp_path / "certs.d", tls_registry)
    cri_table = f'[{CRI2}]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n'
    etc = tmp_path / "etc-containerd"
    main = write_files(
        etc,
        {
            "config.toml": 'version = 2\nimports = ["conf.d/*.toml"]\n' + cri_table,
            "without-imports.toml": "version = 2\n" + cri_table,
            "conf.d/registry.toml": f"[{CRI2}.registry]\n  config_path = {json.dumps(str(certs))}",
            "conf.d/README": "not a .toml file: not imported",
        },
    )
    drop_in = str(etc / "conf.d" / "registry.toml")
    ref = f"{HARBOR}/team/app:1"

    # what pyctl did before it followed imports: the name does not resolve, nothing is pulled
    proc = isolated(
        "--containerd-config", str(etc / "without-imports.toml"), "pull", ref, namespace=namespace
    )
    assert_error(proc, f"pull {ref}", HARBOR, stdout=None)
    assert ctr_image_digests(containerd, namespace) == {}

    proc = isolated("--containerd-config", str(main), "pull", ref, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)

    text = assert_ok(isolated("--containerd-config", str(main), "hosts", ref))
    assert f"containerd config: {main}\n  imports: {drop_in} (imported by {main})\n" in text
    assert f'    config_path = "{certs}"  (from {drop_in})\n' in text
    assert f"from: {certs}/{HARBOR}/hosts.toml" in text

    doc = hosts_json(isolated, "--containerd-config", str(main), "hosts", ref)
    assert doc["ContainerdConfig"] == str(main)
    assert doc["ContainerdConfigFiles"] == [
        {"Path": str(main), "ImportedBy": "", "Version": 2},
        {"Path": drop_in, "ImportedBy": str(main), "Version": 0},
    ]
    assert doc["CRIRegistrySettings"] == [
        {
            "Key": "config_path",
            "Value": str(certs),
            "Secret": False,
            "Source": drop_in,
            "Table": f"{CRI2}.registry",
        }
    ]
    assert doc["HostsDirs"][0] == str(certs)
    assert doc["ContainerdConfigRules"].startswith("containerd 1.6/1.7")
    assert doc["ContainerdConfigNote"] == ""  # containerd 2.x reads the same from these files
    # the [host] entry for the server, then the server itself (containerd's ConfigureHosts)
    assert [e["URL"] for e in doc["Endpoints"]] == [f"https://{tls_registry.host}/v2"] * 2


def test_nested_imports_config_path_and_cri_credentials_from_different_files(
    containerd: Containerd,
    namespace: str,
    isolated: PyctlRunner,
    basic_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    """Version 3 files (containerd 2.x: one plugin table merged key by key over files): the
    hosts directory comes from an import of an import, the credentials from another drop-in."""
    basic_registry.seed(tiny, "team/app", "1")
    certs = certs_for(tmp_path / "certs.d", basic_registry)
    etc = tmp_path / "etc"
    main = write_files(
        etc,
        {
            "config.toml": 'version = 3\nimports = ["conf.d/*.toml"]\n',
            "conf.d/10-site.toml": 'version = 3\nimports = ["../site/registry.toml"]\n',
            "conf.d/20-auth.toml": (
                f'version = 3\n[{CRI3}.registry.configs."{basic_registry.host}".auth]\n'
                '  username = "testuser"\n  password = "testpassword"\n'
            ),
            "site/registry.toml": (
                f"version = 3\n[{CRI3}.registry]\n  config_path = {json.dumps(str(certs))}\n"
            ),
        },
    )
    site, auth = str(etc / "site" / "registry.toml"), str(etc / "conf.d" / "20-auth.toml")
    ref = f"{HARBOR}/team/app:1"
    proc = isolated("--containerd-config", str(main), "pull", ref, namespace=namespace)
    assert_pulled(proc, containerd, namespace, ref, tiny.digest)

    doc = hosts_json(isolated, "--containerd-config", str(main), "hosts", ref)
    assert [(f["Path"], f["ImportedBy"]) for f in doc["ContainerdConfigFiles"]] == [
        (str(main), ""),
        (str(etc / "conf.d" / "10-site.toml"), str(main)),
        (auth, str(main)),
        (site, str(etc / "conf.d" / "10-site.toml")),
    ]
    assert doc["ContainerdConfigRules"].startswith("containerd 2.x")
    settings = {s["Key"]: (s["Value"], s["Source"]) for s in doc["CRIRegistrySettings"]}
    host_key = f'configs."{basic_registry.host}".auth'
    assert settings == {
        f"{host_key}.username": ("testuser", auth),
        f"{host_key}.password": (None, auth),
        "config_path": (str(certs), site),
    }
    assert [e["Credentials"] for e in doc["Endpoints"]] == [
        f"user testuser from CRI config {auth}"
    ] * 2
    text = assert_ok(isolated("--containerd-config", str(main), "hosts", ref))
    assert f"{host_key}.password = (secret, not shown)  (from {auth})" in text
    assert "testpassword" not in text + json.dumps(doc)


@pytest.mark.parametrize(
    "case", ["missing", "malformed", "directory", "higher-version", "bad-glob"]
)
def test_a_bad_import_is_one_error_line_and_nothing_is_pulled(
    containerd: Containerd, namespace: str, isolated: PyctlRunner, tmp_path: Path, case: str
) -> None:
    etc = tmp_path / "etc"
    files = {"config.toml": 'version = 2\nimports = ["conf.d/*.toml", "site.toml"]\n'}
    bad, fragment = etc / "site.toml", ""
    if case == "missing":
        fragment = "no such file (create it or remove it from the imports of"
    elif case == "malformed":
        files["site.toml"] = f"[{CRI2}.registry\n"
        fragment = "invalid TOML"
    elif case == "directory":
        files["site.toml"] = ""
        (etc / "conf.d" / "x.toml").mkdir(parents=True)  # a glob match that is a directory
        bad, fragment = etc / "conf.d" / "x.toml", "cannot read it: Is a directory"
    elif case == "higher-version":
        files["site.toml"] = f"version = 3\n[{CRI3}.registry]\n  config_path = '/x'\n"
        fragment = "version 3 is higher than version 2 of"
    else:
        files["config.toml"] = 'version = 2\nimports = ["conf.d/[*.toml"]\n'
        bad, fragment = etc / "config.toml", "is not a valid glob pattern"
    main = write_files(etc, files)
    where = f"containerd config {bad}" + (f" (imported by {main})" if bad != main else "")
    ref = f"{HARBOR}/team/app:1"
    for args in (["pull", ref], ["hosts", ref], ["login", HARBOR, "-u", "u", "--password-stdin"]):
        proc = isolated("--containerd-config", str(main), *args, namespace=namespace, input="p")
        assert_error(proc, where + ": ", fragment, stdout=None)
        assert proc.stdout == ""
    assert ctr_image_digests(containerd, namespace) == {}


# --- the same files, read by containerd itself ----------------------------------------------------


def refused_start(binary: Binary, main: Path, cwd: Path) -> str:
    """Start ``containerd --config MAIN`` and return what it printed as it refused to start;
    fail (after killing it) if it is still running after 20 s."""
    proc = subprocess.Popen(
        [binary.path, "--config", str(main)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{binary.label} started with {main}")
    assert proc.returncode != 0, out
    return out


def significant(value: Any) -> Any:
    """Drop empty and false values (containerd's decoded defaults) for comparison."""
    if isinstance(value, dict):
        kept = {k: significant(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", False, [], {}, None)}
    return value


VECTORS: dict[str, Callable[[Path], dict[str, str]]] = {
    # version 2, absolute glob, the CRI table in main and in two drop-ins: 1.x keeps the last
    # drop-in's table whole, 2.x merges all three
    "v2-abs-glob": lambda d: {
        "config.toml": (
            f'version = 2\nimports = ["{d}/conf.d/*.toml"]\n[{CRI2}]\n  sandbox_image = "p:1"\n'
            f'[{CRI2}.registry.mirrors."docker.io"]\n  endpoint = ["https://m.example"]\n'
            f'[{CRI2}.registry.configs."m.example".tls]\n  ca_file = "/main-ca.pem"\n'
        ),
        "conf.d/20-b.toml": (
            f'[{CRI2}.registry]\n  config_path = "/b"\n'
            f'[{CRI2}.registry.configs."m.example".tls]\n  insecure_skip_verify = true\n'
        ),
        "conf.d/10-a.toml": (
            f'[{CRI2}.registry]\n  config_path = "/a"\n[{CRI2}.registry.headers]\n  X-A = ["1"]\n'
        ),
    },
    # nested relative (not glob) imports and a cycle back to the main file
    "v2-nested-cycle": lambda d: {
        "config.toml": (
            'version = 2\nimports = ["conf.d/a.toml"]\n'
            f'[{CRI2}.registry.mirrors."docker.io"]\n  endpoint = ["https://m.example"]\n'
        ),
        "conf.d/a.toml": 'imports = ["../site/b.toml", "../config.toml"]\n',
        "site/b.toml": (
            f'version = 2\nimports = ["{d}/config.toml"]\n[{CRI2}.registry]\n'
            '  config_path = "/nested"\n'
        ),
    },
    # version 1 (no version): plugins.cri in both files
    "v1": lambda d: {
        "config.toml": (
            f'imports = ["{d}/d.toml"]\n[plugins.cri.registry.mirrors."docker.io"]\n'
            '  endpoint = ["https://m.example"]\n'
        ),
        "d.toml": '[plugins.cri.registry]\n  config_path = "/v1"\n',
    },
    # version 3 main with version 2 and version 1 drop-ins (containerd 2.x only)
    "v3-v2-v1": lambda d: {
        "config.toml": (
            f'version = 3\nimports = ["{d}/conf.d/*.toml"]\n[{CRI3}.registry.headers]\n'
            '  X-A = ["1"]\n'
        ),
        "conf.d/10.toml": f'version = 2\n[{CRI2}.registry]\n  config_path = "/v2"\n',
        "conf.d/20.toml": (
            'version = 1\n[plugins.cri.registry.configs."h.example".auth]\n  username = "u"\n'
        ),
    },
    # a relative glob
    "v2-relative-glob": lambda d: {
        "config.toml": 'version = 2\nimports = ["conf.d/*.toml"]\n',
        "conf.d/x.toml": f'[{CRI2}.registry]\n  config_path = "/relative"\n',
    },
    # a missing import: containerd does not start (checked by starting it: ``config dump``
    # of 2.x skips a missing file). Should it start, everything it uses is below d.
    "missing-import": lambda d: {
        "config.toml": (
            f'version = 2\nimports = ["{d}/conf.d/none.toml"]\n'
            f'root = "{d}/root"\nstate = "{d}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", '
            '"io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"]\n'
            f'[grpc]\n  address = "{d}/c.sock"\n[ttrpc]\n  address = "{d}/c.sock.ttrpc"\n'
            '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{d}/opt"\n'
        ),
    },
    # malformed TOML in a drop-in: containerd does not start
    "malformed-drop-in": lambda d: {
        "config.toml": f'version = 2\nimports = ["{d}/conf.d/*.toml"]\n',
        "conf.d/x.toml": f"[{CRI2}.registry\n",
    },
    # a drop-in newer than the root (2.x refuses; 1.6/1.7 read no version 3 files)
    "higher-version": lambda d: {
        "config.toml": f'version = 2\nimports = ["{d}/d.toml"]\n',
        "d.toml": f'version = 3\n[{CRI3}.registry]\n  config_path = "/x"\n',
    },
}
ONLY_CONTAINERD_2 = {"v3-v2-v1", "higher-version"}


@pytest.mark.parametrize("vector", sorted(VECTORS))
@pytest.mark.parametrize("release", ["bed"])
def test_containerd_reads_the_same_registry_settings(
    binaries: Callable[[str], Binary], release: str, vector: str, tmp_path: Path
) -> None:
    binary = binaries(release)
    if vector in ONLY_CONTAINERD_2 and binary.rules is Rules.CONTAINERD_1:
        # version 3 files are not for 1.6/1.7 (1.7 refuses them, 1.6 reads them as version 2):
        # nothing to compare; pyctl reads them with 2.x's rules
        main = write_files(tmp_path / "etc", VECTORS[vector](tmp_path / "etc"))
        if vector == "higher-version":
            with pytest.raises(ConfigError, match="higher"):
                load_containerd_config(str(main))
        else:
            assert load_containerd_config(str(main)).rules is Rules.CONTAINERD_2
        return
    etc = tmp_path / "etc"
    main = write_files(etc, VECTORS[vector](etc))
    elsewhere = tmp_path / "cwd"  # containerd's working directory (systemd gives it /)
    elsewhere.mkdir()
    if vector == "missing-import":
        assert "no such file or directory" in refused_start(binary, main, elsewhere)
        with pytest.raises(ConfigError, match="no such file"):
            load_containerd_config(str(main))
        return
    status, dumped, stderr = dump(binary, main, elsewhere)
    refused = ("malformed-drop-in", "higher-version")
    if status != 0:
        assert vector in refused, stderr
        with pytest.raises(ConfigError):
            load_containerd_config(str(main))
        return
    assert vector not in refused, f"{binary} read it anyway"

    ours = load_containerd_config(str(main), rules=binary.rules)
    if vector == "v2-relative-glob" and not binary.relative_globs_fixed:
        # this containerd globs relative imports against its working directory (fixed in
        # 1.6.29 / 1.7.16): it does not see the drop-in, where the fixed ones and pyctl do
        assert significant(dumped) == {}
        assert ours.registry == {"config_path": "/relative"}
        return
    assert significant(dumped), f"{binary.label}: no registry settings at all\n{stderr}"
    expected = significant(ours.registry)
    if binary.rules is Rules.CONTAINERD_2:
        # containerd 2.0 dropped registry.configs."HOST".tls (its RegistryConfig has only
        # auth); pyctl's merged view still holds what the files say
        for conf in expected.get("configs", {}).values():
            conf.pop("tls", None)
        expected = significant(expected)
    assert significant(dumped) == expected, binary
    # pyctl, guessing the generation from the files, says when the other would differ
    guessed = load_containerd_config(str(main))
    if guessed.rules is not binary.rules:
        differs = significant(guessed.registry) != significant(ours.registry)
        assert bool(guessed.note) == differs, guessed.note


# --- containerd's CRI and pyctl read the same drop-in ---------------------------------------------


class ImportingContainerd(Containerd):
    """The test bed's containerd with its whole configuration moved into ``conf.d/50-bed.toml``
    (plus the CRI registry ``config_path``), and a main file that only imports ``conf.d/*.toml``
    by an absolute glob (containerd 1.6.20 globs relative imports against its working dir)."""

    def __init__(self, certs: Path) -> None:
        super().__init__()
        self.certs = certs
        self.drop_in = self.dir / "conf.d" / "50-bed.toml"

    def render_config(self) -> str:
        bed = super().render_config()
        version = tomllib.loads(bed).get("version", 1)
        key = CRI3 if version >= 3 else CRI2
        registry = f"\n[{key}.registry]\n  config_path = {json.dumps(str(self.certs))}\n"
        self.drop_in.parent.mkdir(parents=True, exist_ok=True)
        self.drop_in.write_text(bed + registry)
        tomllib.loads(bed + registry)  # still one valid TOML document
        pattern = f"{self.drop_in.parent}/*.toml"
        return f"version = {version}\nimports = [{json.dumps(pattern)}]\n"


@pytest.fixture
def importing_containerd(tmp_path: Path, tls_registry: SecureRegistry) -> Iterator[Containerd]:
    certs = certs_for(tmp_path / "node-certs.d", tls_registry)
    with ImportingContainerd(certs) as cd:
        yield cd


def test_containerd_cri_and_pyctl_use_the_config_path_of_a_drop_in(
    importing_containerd: ImportingContainerd,
    tls_registry: SecureRegistry,
    tiny: Archive,
    tmp_path: Path,
) -> None:
    cd = importing_containerd
    tls_registry.seed(tiny, "team/app", "1", "2")
    # containerd's CRI pulls harbor.local (a name DNS does not know) through the drop-in's
    # config_path: it followed the import
    ref = f"{HARBOR}/team/app:1"
    assert cri_pull(cd.address, ref).startswith("sha256:")
    assert ref in ctr_image_digests(cd, "k8s.io")

    # pyctl, given the same file, reads the same drop-in and pulls the same way
    runner = PyctlRunner.at(cd, tmp_path / "home").with_docker_config(tmp_path / "home")
    args = ["--containerd-config", str(cd.config_path)]
    doc = hosts_json(runner, *args, "hosts", ref)
    assert [(s["Key"], s["Source"]) for s in doc["CRIRegistrySettings"]] == [
        ("config_path", str(cd.drop_in))
    ]
    ref2 = f"{HARBOR}/team/app:2"
    proc = runner(*args, "pull", ref2, namespace="k8s.io")
    assert_pulled(proc, cd, "k8s.io", ref2, tiny.digest)
