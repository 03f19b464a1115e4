"""pytest fixtures for pyctl's integration tests: a real containerd, registry and images.

Fixtures (all fail loudly, nothing is skipped):

* ``containerd`` (session)  -> testbed.Containerd, started once, stopped at session end
* ``namespace`` (function)  -> str, a fresh unique namespace, emptied and deleted afterwards
* ``more_namespaces`` (function) -> ``make(suffix) -> str``: further unique namespaces, cleaned
  up afterwards
* ``k8s_ns`` (function)  -> ``"k8s.io"``, checked empty first, emptied afterwards
* ``module_namespace`` (module) -> str, the same for a whole test module (read-only fixtures)
* ``registry`` (function)   -> testbed.Registry, plain HTTP on 127.0.0.1:<free port>
* ``cert_authority`` (session) -> testbed.CertAuthority writing into a session tmp dir
* ``busybox_image`` (session) -> images.Archive (``.path``, ``.name``, ``.image`` spec) of the
  runnable busybox image named ``docker.io/library/busybox:latest``, OCI media types
* ``tiny`` (session) -> images.Archive: a small image for the host, not runnable
* ``image_factory`` (session) -> ImageFactory: ``image_factory(name, variant_content=..., ...)``
  writes more archives (distinct digests, docker media types, multi-platform)
* ``pyctl`` (function)      -> PyctlRunner: ``pyctl("images", namespace=namespace)`` runs
  ``python -m pyctl --address SOCK ...`` and returns CompletedProcess[str]
* ``module_pyctl`` (module)  -> PyctlRunner with a module-wide HOME
* ``docker_engine`` (session) -> dockerd.DockerEngine: a private dockerd (Debian's docker.io)
  with its own containerd, started once; ``docker_engine.docker("load", "-i", TAR)`` runs the
  docker CLI against it, ``reset()`` removes every container and image
* ``sk`` (function)         -> registry_helpers.Skopeo with a private HOME under tmp_path
* ``isolated`` (function)   -> the ``pyctl`` runner with an empty DOCKER_CONFIG directory
* ``readable_pyctl`` (session) -> unprivileged.ReadablePyctl: a copy of pyctl that ``nobody``
  can run (``.run(*args, env=...)`` runs it as that user)

Registry variants (function scope; all :class:`SecureRegistry`, a ``testbed.Registry`` with
``cert_dir`` = ``<certs.d>/<host>/`` holding ``ca.crt`` (+ ``client.cert``/``client.key``),
``certs_d`` = its parent (a containerd/docker certs.d root), ``users`` (name -> password)):

* ``tls_registry``   -> HTTPS (server cert from ``cert_authority``), no auth
* ``basic_registry`` -> HTTPS + htpasswd, ``testuser``/``testpassword``
* ``token_registry`` -> HTTPS + token auth; ``.token_server`` (tokenserver.TokenServer, HTTPS,
  same CA; realm ``https://127.0.0.1:PORT/token``): ``alice``/``wonderland`` pull+push on
  every repo, ``bob``/``builder`` pull only, anonymous gets a token with no access
* ``mtls_registry``  -> HTTPS requiring a client cert from ``cert_authority``;
  ``.client_cert`` is the CertPair (``cert``/``key``/``ca``) clients must present
* ``seeded``         -> the ``registry`` fixture holding ``tiny`` as ``team/app:1``
* ``fault_proxy``    -> faultproxy.FaultProxy in front of the ``registry`` fixture
* ``blob_host``      -> a second FaultProxy in front of the same registry (a redirect target
  that records whether Authorization arrived); ``blob_host.url_for("localhost")`` gives it a
  different host *name* too (clients that compare names only, not ports)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from integration import images
from integration.containerd_helpers import Binary
from integration.dockerd import DockerEngine
from integration.faultproxy import FaultProxy
from integration.images import Archive
from integration.registry_helpers import Helper, Skopeo, non_loopback_address, seed
from integration.testbed import (
    CertAuthority,
    CertPair,
    Containerd,
    ContainerdBinaries,
    HtpasswdAuth,
    Registry,
    RegistryAuth,
    TestbedError,
    TokenAuth,
    write_cert_dir,
)
from integration.tokenserver import TokenServer
from integration.unprivileged import ReadablePyctl, install_readable_pyctl

BUSYBOX_NAME = "docker.io/library/busybox:latest"
T = TypeVar("T")


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (containerd, runc, mounts)", pytrace=False)


def _started(what: str, start: Callable[[], T]) -> T:
    """``start()`` as root, or a loud failure that says why the bed could not start."""
    _require_root()
    try:
        return start()
    except TestbedError as e:
        pytest.fail(f"cannot start the test {what}:\n{e}", pytrace=False)


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    cd = _started("containerd", Containerd().start)
    try:
        yield cd
    finally:
        cd.stop()  # raises TestbedError if mounts are left behind
        leftover = cd.shim_pids()
        if leftover:
            raise TestbedError(f"containerd shims still running after stop: {leftover}")


def _namespace_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-").lower()[:40].strip("-")
    return f"it-{base or 'test'}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def namespace(containerd: Containerd, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique namespace name (created lazily by whatever uses it first); afterwards every
    task, container, image, lease, snapshot and blob in it is removed, then the namespace."""
    ns = _namespace_name(request)
    yield ns
    containerd.clean_namespace(ns)


@pytest.fixture
def more_namespaces(containerd: Containerd, namespace: str) -> Iterator[Callable[[str], str]]:
    """``more_namespaces("suffix")``: another unique namespace, cleaned up afterwards."""
    made: list[str] = []

    def make(suffix: str) -> str:
        ns = f"{namespace[:50]}-{suffix}-{uuid.uuid4().hex[:4]}"
        made.append(ns)
        return ns

    yield make
    for ns in made:
        containerd.clean_namespace(ns)


@pytest.fixture
def k8s_ns(containerd: Containerd) -> Iterator[str]:
    """The CRI plugin's namespace ``k8s.io`` (operators name it verbatim), empty before the
    test and emptied (not deleted) afterwards."""
    assert containerd.images("k8s.io") == [], "k8s.io must start empty"
    yield "k8s.io"
    containerd.clean_namespace("k8s.io", delete=False)


@pytest.fixture(scope="module")
def module_namespace(containerd: Containerd, request: pytest.FixtureRequest) -> Iterator[str]:
    """Like ``namespace`` but shared by one test module (for expensive read-only setups)."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.module.__name__.rsplit(".", 1)[-1]).lower()
    ns = f"it-{base.strip('-')[:40]}-{uuid.uuid4().hex[:8]}"
    yield ns
    containerd.clean_namespace(ns)


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def cert_authority(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    """A CA nothing trusts (certificates from it must be refused)."""
    return CertAuthority(tmp_path_factory.mktemp("other-ca"), common_name="some other CA")


@dataclass
class ImageFactory:
    """Writes image archives into a session directory (one file per call)."""

    directory: Path
    _count: int = field(default=0)

    def __call__(
        self,
        name: str | Sequence[str] | None,
        *,
        variant_content: str | None = None,
        media: Literal["oci", "docker"] = "oci",
        multi_platform: bool = False,
        platforms: Sequence[str] | None = None,
        docker_manifest_json: bool = False,
        image_name_annotation: bool = True,
        **build_kwargs: Any,
    ) -> Archive:
        """One image (or a multi-platform index if ``multi_platform``/``platforms``) as an
        OCI-layout tar; ``variant_content`` makes it distinct (extra small layer)."""
        self._count += 1
        img: images.ImageSpec | images.IndexSpec
        if multi_platform or platforms:
            img = images.build_index(
                platforms=platforms, media=media, variant_content=variant_content, **build_kwargs
            )
        else:
            img = images.build_image(media=media, variant_content=variant_content, **build_kwargs)
        path = self.directory / f"image-{self._count}.tar"
        return images.write_oci_archive(
            path,
            img,
            name,
            docker_manifest_json=docker_manifest_json,
            image_name_annotation=image_name_annotation,
        )


@pytest.fixture(scope="session")
def image_factory(tmp_path_factory: pytest.TempPathFactory) -> ImageFactory:
    return ImageFactory(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def busybox_image(image_factory: ImageFactory) -> Archive:
    return image_factory(BUSYBOX_NAME)


@pytest.fixture(scope="session")
def tiny(image_factory: ImageFactory) -> Archive:
    """A small single-platform image for the host (not runnable: fast to push and unpack)."""
    return image_factory("example.test/tiny:1", runnable=False, variant_content="tiny")


@pytest.fixture
def sk(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path)


@dataclass
class PyctlRunner:
    """Runs the pyctl CLI against the test containerd.

    ``pyctl(*args, namespace=None, input=None, env=None, check=False, timeout=120)``:
    ``namespace`` sets CONTAINERD_NAMESPACE; ``env`` adds/overrides variables.  HOME and
    XDG_CONFIG_HOME point at a per-test directory so user config never leaks in.
    :meth:`argv` and :meth:`env` are the command line and environment for other ways of
    running it (pipes, a terminal); :meth:`start` starts it without waiting."""

    containerd: Containerd
    home: Path
    namespace: str | None = None
    base_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def at(cls, containerd: Containerd, home: Path) -> PyctlRunner:
        """A runner with HOME ``home`` (made, with its ``.config``)."""
        (home / ".config").mkdir(parents=True)
        return cls(containerd, home)

    def argv(self, *args: str, address: bool = True) -> list[str]:
        """``python -m pyctl --address SOCK ARGS…``; without ``address``, as a user types it
        (the environment's CONTAINERD_ADDRESS says where containerd is)."""
        where = ["--address", self.containerd.address] if address else []
        return [sys.executable, "-m", "pyctl", *where, *args]

    def env(
        self,
        namespace: str | None = None,
        extra: Mapping[str, str] | None = None,
        drop: Sequence[str] = (),
    ) -> dict[str, str]:
        """The environment: the containerd's, HOME, ``base_env``, the namespace, ``extra``;
        without the variables in ``drop``."""
        env = self.containerd.client_env()
        env.pop("PYCTL_CONFIG", None)
        env["HOME"] = str(self.home)
        env["XDG_CONFIG_HOME"] = str(self.home / ".config")
        env.update(self.base_env)
        ns = namespace or self.namespace
        if ns:
            env["CONTAINERD_NAMESPACE"] = ns
        env.update(extra or {})
        for name in drop:
            env.pop(name, None)
        return env

    def __call__(
        self,
        *args: str,
        namespace: str | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = False,
        timeout: float = 120.0,
        address: bool = True,
        drop: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args, address=address),
            capture_output=True,
            text=True,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            env=self.env(namespace, env, drop),
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pyctl {' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
            )
        return proc

    def start(self, *args: str, namespace: str | None = None) -> subprocess.Popen[str]:
        """pyctl started, not waited for (stdout and stderr are pipes of text); collect it
        with :func:`integration.helpers.finish`.

        It starts with SIGINT at its default, as from a terminal, whatever the test run
        inherited: a run started in the background of a non-interactive shell (a CI job)
        ignores SIGINT, and pyctl would too, so a test's Ctrl-C would do nothing."""
        return subprocess.Popen(
            ["env", "--default-signal=INT", *self.argv(*args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(namespace),
        )

    def bind(self, namespace: str) -> PyctlRunner:
        """A runner whose default namespace is ``namespace``."""
        return PyctlRunner(self.containerd, self.home, namespace, dict(self.base_env))

    def with_docker_config(self, directory: Path) -> PyctlRunner:
        """A runner whose DOCKER_CONFIG is ``directory`` (made, empty unless it was there)."""
        directory.mkdir(exist_ok=True)
        base_env = {**self.base_env, "DOCKER_CONFIG": str(directory)}
        return PyctlRunner(self.containerd, self.home, self.namespace, base_env)


@pytest.fixture
def pyctl(containerd: Containerd, tmp_path: Path) -> PyctlRunner:
    return PyctlRunner.at(containerd, tmp_path / "home")


@pytest.fixture
def isolated(pyctl: PyctlRunner, tmp_path: Path) -> PyctlRunner:
    """pyctl with its own (empty) DOCKER_CONFIG directory: no credentials but those a test
    writes there or puts in containerd's config."""
    return pyctl.with_docker_config(tmp_path / "docker-config")


@pytest.fixture(scope="module")
def module_pyctl(containerd: Containerd, tmp_path_factory: pytest.TempPathFactory) -> PyctlRunner:
    return PyctlRunner.at(containerd, tmp_path_factory.mktemp("home"))


# --- registry variants -------------------------------------------------------------------------


class SecureRegistry(Registry):
    """A :class:`Registry` plus what a client needs to talk to it.

    * ``cert_dir``: ``<certs.d>/<host>/`` with ``ca.crt`` (and ``client.cert``/``client.key``
      for mutual TLS) — for ``skopeo --cert-dir`` / docker ``certs.d``
    * ``certs_d``: the certs.d root (``cert_dir.parent``)
    * ``users``: user -> password (empty without auth)
    * ``token_server``: the TokenServer (token auth only)"""

    def __init__(
        self,
        *,
        tls: CertPair,
        auth: RegistryAuth | None = None,
        client_ca: Path | None = None,
        client_cert: CertPair | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(tls=tls, auth=auth, client_ca=client_ca, client_cert=client_cert)
        self.users: dict[str, str] = dict(users or {})
        self.certs_d = self.dir / "certs.d"
        self.cert_dir = write_cert_dir(self.certs_d / self.host, ca=tls.ca, client=client_cert)

    def __enter__(self) -> SecureRegistry:
        super().__enter__()
        return self

    @property
    def token_server(self) -> TokenServer:
        if not isinstance(self.auth, TokenAuth) or self.auth.server is None:
            raise TestbedError("not a token-auth registry")
        return self.auth.server

    def creds(self, user: str | None = None) -> str:
        """``user:password`` (first user by default), e.g. for ``skopeo --creds``."""
        u = user or next(iter(self.users))
        return f"{u}:{self.users[u]}"

    def seed(self, archive: Archive, repo: str, *tags: str, user: str | None = None) -> None:
        """Push ``archive`` as ``repo:TAG`` for each tag with skopeo, verifying this registry
        with its CA, as ``user`` (the first by default; anonymous without auth)."""
        creds = self.creds(user) if self.users else None
        seed(self, repo, archive, *tags, creds=creds, cert_dir=self.cert_dir)


def _server_cert(ca: CertAuthority, kind: str) -> CertPair:
    return ca.issue_server_cert(f"{kind}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def tls_registry(cert_authority: CertAuthority) -> Iterator[SecureRegistry]:
    with SecureRegistry(tls=_server_cert(cert_authority, "tls-registry")) as reg:
        yield reg


BASIC_USERS = {"testuser": "testpassword"}


@pytest.fixture
def basic_registry(cert_authority: CertAuthority) -> Iterator[SecureRegistry]:
    auth = HtpasswdAuth(users=dict(BASIC_USERS))
    tls = _server_cert(cert_authority, "basic-registry")
    with SecureRegistry(tls=tls, auth=auth, users=BASIC_USERS) as reg:
        yield reg


TOKEN_USERS = {"alice": "wonderland", "bob": "builder"}
TOKEN_PERMISSIONS: dict[str, dict[str, str | Sequence[str]]] = {
    "alice": {"*": "pull,push"},
    "bob": {"*": "pull"},
}


@pytest.fixture
def token_registry(cert_authority: CertAuthority) -> Iterator[SecureRegistry]:
    tls = _server_cert(cert_authority, "token-registry")
    auth = TokenAuth(users=dict(TOKEN_USERS), permissions=TOKEN_PERMISSIONS, tls=tls)
    with SecureRegistry(tls=tls, auth=auth, users=TOKEN_USERS) as reg:
        yield reg


@pytest.fixture
def mtls_registry(cert_authority: CertAuthority) -> Iterator[SecureRegistry]:
    tls = _server_cert(cert_authority, "mtls-registry")
    client = cert_authority.issue_client_cert(f"client-{uuid.uuid4().hex[:8]}")
    with SecureRegistry(tls=tls, client_ca=cert_authority.cert_path, client_cert=client) as reg:
        yield reg


@pytest.fixture
def seeded(registry: Registry, tiny: Archive) -> Registry:
    """The plain ``registry`` with ``tiny`` as ``team/app:1``."""
    seed(registry, "team/app", tiny, "1")
    return registry


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry) as proxy:
        yield proxy


@pytest.fixture
def blob_host(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry) as host:
        yield host


# --- a pull test bed ---------------------------------------------------------------------------


@dataclass
class PullBed:
    """What a pull test needs: a namespace of a containerd, a plain registry with a fault
    proxy in front (``proxy``), and distinct images to put into the registry.

    ``seed(repo, big=N)`` pushes busybox + a small layer + N random bytes as ``team/REPO:1``
    and returns (the ImageSpec, its reference through the proxy); ``pyctl(...)`` runs in the
    namespace, ``start(...)`` starts pyctl without waiting (``helpers.finish(proc)`` collects
    it)."""

    containerd: Containerd
    namespace: str
    runner: PyctlRunner
    registry: Registry
    proxy: FaultProxy
    image_factory: ImageFactory
    tmp: Path

    def seed(self, repo: str, *, big: int = 0) -> tuple[images.ImageSpec, str]:
        files = {"big.bin": os.urandom(big)} if big else None
        arc = self.image_factory(f"example.test/{repo}:1", variant_content=repo, files=files)
        Skopeo(self.tmp).seed(arc.path, self.registry.ref(f"team/{repo}", "1"))
        return arc.single, self.proxy.ref(f"team/{repo}", "1")

    def pyctl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("namespace", self.namespace)
        return self.runner(*args, **kw)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return self.runner.start(*args, namespace=self.namespace)


@pytest.fixture
def pull_bed(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    registry: Registry,
    fault_proxy: FaultProxy,
    image_factory: ImageFactory,
    tmp_path: Path,
) -> PullBed:
    return PullBed(containerd, namespace, pyctl, registry, fault_proxy, image_factory, tmp_path)


@pytest.fixture(scope="session")
def readable_pyctl() -> Iterator[ReadablePyctl]:
    """pyctl copied where ``nobody`` can read and run it (the checkout and its venv may be
    in a private directory, such as a clone under /root), once per session."""
    try:
        installed = install_readable_pyctl()
    except TestbedError as e:
        pytest.fail(f"cannot install pyctl for an unprivileged user:\n{e}", pytrace=False)
    yield installed
    installed.remove()


@pytest.fixture
def helper(tmp_path: Path) -> Helper:
    return Helper.install(tmp_path / "helper")


@pytest.fixture(scope="session")
def binaries() -> Callable[[str], Binary]:
    """``binaries("bed")``: the test bed's containerd (``PYCTL_TEST_CONTAINERD_BIN``, else
    Debian's): CI runs this suite against each release in ../shared/containerd that way."""
    found: dict[str, Binary] = {}

    def get(name: str) -> Binary:
        if name not in found:
            bed = ContainerdBinaries.find()
            found[name] = Binary(name, bed.containerd, bed.version)
        return found[name]

    return get


@pytest.fixture(scope="session")
def non_loopback_ip() -> str:
    """An address of this machine outside 127.0.0.0/8 (registries there are not loopback
    registries: TLS is verified, plain HTTP needs permission)."""
    return non_loopback_address()


# --- a Docker engine (a referee for archives) ---------------------------------------------------


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """Started once, on first use; stopped at the end of the session."""
    engine = _started("Docker engine", DockerEngine().start)
    try:
        yield engine
    finally:
        engine.stop()  # raises TestbedError if processes, mounts or shims are left behind
