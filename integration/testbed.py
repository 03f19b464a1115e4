"""A real test bed for pyctl: a private containerd, a local registry, a throw-away CA.

Used by ``integration/conftest.py`` and by demo scripts, so it has no pytest dependency.
Needs root, ``containerd``/``ctr``/``containerd-shim-runc-v2`` (containerd 1.6, 1.7 or 2.x: the
ones on PATH, or those in ``$PYCTL_TEST_CONTAINERD_BIN``), ``runc``, ``/usr/bin/docker-registry``
(distribution v2) and the ``cryptography`` package (only for :class:`CertAuthority`).

Everything lives in one temporary directory per object; ``stop()`` (or leaving the ``with``
block) kills what was started — containerd, its shims, container processes — unmounts every
mount under that directory and removes it.

    from integration import images
    from integration.testbed import Containerd, Registry, import_into

    name = "docker.io/library/busybox:latest"
    with Containerd() as cd, Registry() as reg:
        arc = images.write_oci_archive(cd.dir / "bb.tar", images.build_image(), name)
        import_into(cd, arc, namespace="demo")
        cd.ctr("run", "--rm", name, "c1", "echo", "hi", namespace="demo")
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as _dt
import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from .images import Archive, host_arch, import_into

if TYPE_CHECKING:
    from .tokenserver import TokenServer

__all__ = [
    "CONTAINERD_BIN_ENV",
    "CertAuthority",
    "CertPair",
    "CommandError",
    "Containerd",
    "ContainerdBinaries",
    "Daemon",
    "HtpasswdAuth",
    "Plugin",
    "Registry",
    "RegistryAuth",
    "Service",
    "TestbedError",
    "TokenAuth",
    "alive",
    "bcrypt_hash",
    "bed_directory",
    "free_port",
    "import_into",
    "mounts_under",
    "remove_cgroups",
    "run",
    "skopeo",
    "unmount_all_under",
    "write_cert_dir",
]

CONTAINERD_BIN_ENV = "PYCTL_TEST_CONTAINERD_BIN"  # DIR with containerd, ctr, the runc v2 shim
SHIM = "containerd-shim-runc-v2"
RUNC = "runc"
DOCKER_REGISTRY = "/usr/bin/docker-registry"
SHIM_SOCKET_DIR = "/run/containerd/s"  # containerd 1.6 puts shim sockets here (not configurable)
DEFAULT_RUNC_ROOT = "/run/containerd/runc"  # runc v2 shim default root: <this>/<namespace>
TASK_STATE_SUBDIR = "io.containerd.runtime.v2.task"


class TestbedError(RuntimeError):
    """The bed could not be brought up (or torn down)."""

    __test__ = False  # not a pytest test class


class CommandError(subprocess.CalledProcessError):
    """A helper command failed; ``str()`` includes its stdout and stderr."""

    def __str__(self) -> str:
        cmd = " ".join(str(a) for a in self.cmd) if isinstance(self.cmd, list) else str(self.cmd)
        return (
            f"command failed with exit code {self.returncode}: {cmd}\n"
            f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"
        )


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output, captured, and a :class:`CommandError` on failure."""
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, list(args), proc.stdout, proc.stderr)
    return proc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _wait_until(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    *,
    interval: float = 0.02,
    abort: Callable[[], str | None] | None = None,
) -> None:
    """Poll ``predicate`` until true; ``abort`` returns a reason to give up early."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if abort is not None:
            reason = abort()
            if reason:
                raise TestbedError(f"{what}: {reason}")
        if time.monotonic() >= deadline:
            raise TestbedError(f"{what}: not ready after {timeout:.1f}s")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def _terminate(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- mounts -----------------------------------------------------------------------------------

_MNT_DETACH = 2


def _unescape_mount(path: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 4 <= len(path) and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mounts_under(directory: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``directory`` (deepest first), from /proc/self/mountinfo."""
    base = os.path.realpath(directory)
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            mp = _unescape_mount(fields[4])
            if mp == base or mp.startswith(base + "/"):
                found.append(mp)
    # deepest first; reversed mount order within the same depth
    return sorted(dict.fromkeys(reversed(found)), key=lambda p: p.count("/"), reverse=True)


def unmount_all_under(directory: str | os.PathLike[str]) -> list[str]:
    """Lazily unmount everything under ``directory``; returns what is still mounted there
    (nothing, unless something refused)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(5):  # stacked mounts need several passes
        mps = mounts_under(directory)
        if not mps:
            break
        for mp in mps:
            libc.umount2(mp.encode(), _MNT_DETACH)
    return mounts_under(directory)


def bed_directory(directory: str | os.PathLike[str] | None, prefix: str) -> tuple[Path, bool]:
    """Where a piece of the bed lives: ``directory`` (resolved), or a new temporary directory
    named ``prefix…``; and whether it was made here (then the piece removes it at the end)."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix=prefix)).resolve(), True
    return Path(directory).resolve(), False


# --- cgroups ---------------------------------------------------------------------------------

CGROUP_ROOT = "/sys/fs/cgroup"


def remove_cgroups(name: str) -> None:
    """rmdir the (empty) cgroup ``/<name>`` and its children in every hierarchy.

    runc (cgroupfs driver) makes ``/<namespace>/<id>`` cgroups for ``ctr run``; containerd's
    ``namespaces rm --cgroup`` only removes cgroup v1 ones, so the cgroup2 part of a hybrid
    setup (``/sys/fs/cgroup/unified``) would be left behind."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad cgroup name {name!r}")
    candidates = [os.path.join(CGROUP_ROOT, name)]
    with contextlib.suppress(OSError):
        candidates += [os.path.join(CGROUP_ROOT, c, name) for c in os.listdir(CGROUP_ROOT)]
    for top in candidates:
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


# --- processes -------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def _kill(pid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _wait_gone(pids: Sequence[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if alive(p)]
        if left:
            time.sleep(0.02)


def alive(pid: int) -> bool:
    """Process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # state is the field after the ")" of the command name; Z = zombie (dead)
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class Daemon:
    """A background process of the bed: its own session (no terminal signals from the test
    runner reach it, and its process group is its own), stdout and stderr appended to
    ``log_path``. :meth:`stop` ends it and closes the log."""

    def __init__(
        self,
        what: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.what = what
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
            )
        except OSError:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> str | None:
        """None while it runs; else its exit code and the log's tail (for ``abort=`` of
        :func:`_wait_until`)."""
        code = self.proc.poll()
        if code is None:
            return None
        return f"{self.what} exited with code {code}\n--- {self.log_path} ---\n" + _tail(
            self.log_path
        )

    @property
    def running(self) -> bool:
        """It has not exited (yet)."""
        return self.proc.poll() is None

    def wait_ready(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` until true; a :class:`TestbedError` holding the log's tail when the
        process exits first or is not ready after ``timeout`` seconds."""
        try:
            _wait_until(what, ready, timeout, abort=self.exited)
        except TestbedError as e:
            if str(self.log_path) in str(e):  # exited: the message has the log already
                raise
            raise TestbedError(f"{e}\n--- {self.log_path} ---\n{_tail(self.log_path)}") from None

    def stop(self, grace: float = 5.0, *, group: bool = False) -> None:
        """SIGTERM, ``grace`` seconds, SIGKILL; with ``group`` also SIGKILL whatever is left
        of its process group (children it started). Closes the log."""
        _terminate(self.proc, grace)
        if group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL at once (a crash: it cleans up nothing), wait for it; closes the log."""
        self.proc.kill()
        self.proc.wait(timeout)
        self._log.close()


class Service:
    """``with X() as x:`` starts X unless it is running, and stops it at the end.

    :meth:`stop` is idempotent: the first call tears X down (:meth:`_teardown`, which
    subclasses implement), later calls do nothing."""

    _stopped = False

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._teardown()

    def _teardown(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ==============================================================================================
# containerd


@dataclass(frozen=True)
class Plugin:
    type: str
    id: str
    platforms: str
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def _runc_runtime(table: str) -> str:
    """The CRI's runc runtime (runc v2 shim, cgroupfs) under ``table``, its ``containerd``
    section (1.x: in ``io.containerd.grpc.v1.cri``, 2.x: in ``io.containerd.cri.v1.runtime``)."""
    return f"""
      [{table}.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [{table}.runtimes.runc.options]
          SystemdCgroup = false
"""


@dataclass(frozen=True)
class ContainerdBinaries:
    """The containerd, ctr and runc v2 shim a bed runs, and the version they are.

    :meth:`find` takes them from ``$PYCTL_TEST_CONTAINERD_BIN`` (a directory holding all three,
    e.g. an unpacked release tarball's ``bin/``), else from PATH (Debian's package).
    ``bin_dir`` goes first on the daemon's PATH (containerd finds its shim there)."""

    containerd: str
    ctr: str
    bin_dir: str | None
    version: tuple[int, int, int]

    @classmethod
    def find(cls, directory: str | os.PathLike[str] | None = None) -> ContainerdBinaries:
        """From ``directory``, else ``$PYCTL_TEST_CONTAINERD_BIN``, else PATH."""
        if directory is None:
            directory = os.environ.get(CONTAINERD_BIN_ENV) or None
        if directory is None:
            found = {name: shutil.which(name) for name in ("containerd", "ctr", SHIM)}
            missing = [name for name, path in found.items() if path is None]
            if missing:
                raise TestbedError(
                    f"{', '.join(missing)} not on PATH: install Debian's containerd package "
                    f"or set {CONTAINERD_BIN_ENV}=DIR"
                )
            return cls._at(str(found["containerd"]), str(found["ctr"]), None)
        d = Path(directory).resolve()
        for name in ("containerd", "ctr", SHIM):
            if not os.access(d / name, os.X_OK) or not (d / name).is_file():
                raise TestbedError(
                    f"{CONTAINERD_BIN_ENV}={directory}: no executable {name} there "
                    f"(the directory must hold containerd, ctr and {SHIM})"
                )
        return cls._at(str(d / "containerd"), str(d / "ctr"), str(d))

    @classmethod
    def _at(cls, containerd: str, ctr: str, bin_dir: str | None) -> ContainerdBinaries:
        text = run([containerd, "--version"], timeout=30).stdout.strip()
        # "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3",
        # "containerd github.com/containerd/containerd/v2 v2.3.4 db8809540e1a…"
        fields = text.split()
        m = _VERSION.match(fields[2]) if len(fields) >= 3 else None
        if m is None:
            raise TestbedError(f"{containerd} --version: cannot read a version from {text!r}")
        major, minor, patch = (int(g) for g in m.groups())
        return cls(containerd, ctr, bin_dir, (major, minor, patch))

    @property
    def version_string(self) -> str:
        return ".".join(str(n) for n in self.version)

    def daemon_env(self) -> dict[str, str]:
        """The environment containerd runs with: ``bin_dir`` first on PATH (shim lookup)."""
        env = dict(os.environ)
        if self.bin_dir:
            env["PATH"] = os.pathsep.join([self.bin_dir, env.get("PATH", os.defpath)])
        return env


class Containerd(Service):
    """A private containerd (1.6, 1.7 or 2.x): own root, state, sockets, config; CRI plugin on,
    no CNI.

    * ``binaries``: the :class:`ContainerdBinaries` it runs (default:
      ``ContainerdBinaries.find()``, i.e. ``$PYCTL_TEST_CONTAINERD_BIN`` or PATH); ``version``
    * ``address``: the gRPC unix socket path (``<dir>/containerd.sock``)
    * ``snapshotter``: ``overlayfs`` if it works here, else ``native`` (pass it to clients;
      :meth:`ctr` and :meth:`client_env` set ``CONTAINERD_SNAPSHOTTER``)
    * ``config_path``, ``log_path``, ``root``, ``state``, ``dir``

    The config is written in the version the daemon reads natively: ``version = 2`` for 1.x,
    ``version = 3`` for 2.x (with the NRI socket under ``dir`` and the CRI settings under
    their 2.x plugins). Containers run with runc's default root
    ``/run/containerd/runc/<namespace>`` and shim sockets in ``/run/containerd/s`` (containerd
    1.6 does not let either move), so use unique namespaces when several beds may run at once.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        snapshotter: str | None = None,
        cri: bool = True,
        log_level: str = "info",
        extra_config: str = "",
        startup_timeout: float = 20.0,
        binaries: ContainerdBinaries | None = None,
    ) -> None:
        self.binaries = binaries or ContainerdBinaries.find()
        self.dir, self._own_dir = bed_directory(directory, "pyctl-containerd-")
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        self.address = str(self.dir / "containerd.sock")
        self.config_path = self.dir / "config.toml"
        self.log_path = self.dir / "containerd.log"
        self.cni_dir = self.dir / "cni"
        self.requested_snapshotter = snapshotter
        self.snapshotter = snapshotter or "overlayfs"
        self.cri = cri
        self.log_level = log_level
        self.extra_config = extra_config
        self.startup_timeout = startup_timeout
        self._daemon: Daemon | None = None

    @property
    def version(self) -> tuple[int, int, int]:
        """The daemon's version (major, minor, patch), from ``containerd --version``."""
        return self.binaries.version

    # --- lifecycle ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"Containerd({self.binaries.version_string}, address={self.address!r}, "
            f"snapshotter={self.snapshotter!r})"
        )

    @property
    def pid(self) -> int | None:
        return self._daemon.pid if self._daemon else None

    @property
    def running(self) -> bool:
        return self._daemon is not None

    @property
    def cri_plugins(self) -> list[tuple[str, str]]:
        """(type, id) of the CRI plugins of this version: one in 1.x, three in 2.x."""
        if self.version >= (2, 0, 0):
            return [
                ("io.containerd.cri.v1", "images"),
                ("io.containerd.cri.v1", "runtime"),
                ("io.containerd.grpc.v1", "cri"),
            ]
        return [("io.containerd.grpc.v1", "cri")]

    def render_config(self) -> str:
        """The daemon's config, in the version it reads natively: 2 for 1.x, 3 for 2.x (2.3
        migrates 3 to 4 in memory; in a ``version = 4`` file the top-level ``[grpc]`` and
        ``[ttrpc]`` would be ignored and the daemon would listen on the system socket)."""
        q = json.dumps
        v2 = self.version >= (2, 0, 0)
        disabled = [
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.zfs",
        ]
        if not self.cri:
            disabled += [f"{type_}.{id_}" for type_, id_ in self.cri_plugins]
        text = f"""\
# generated by integration/testbed.py for containerd {self.binaries.version_string}
version = {3 if v2 else 2}
root = {q(str(self.root))}
state = {q(str(self.state))}
disabled_plugins = {q(disabled)}

[grpc]
  address = {q(self.address)}

[ttrpc]
  address = {q(self.address + ".ttrpc")}

[debug]
  address = ""
  level = {q(self.log_level)}

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {q(str(self.dir / "opt"))}
"""
        text += self._cri_config_v3() if v2 else self._cri_config_v2()
        if v2:
            # 2.x's NRI plugin is on by default and would create /var/run/nri/nri.sock
            text += f"""
  [plugins."io.containerd.nri.v1.nri"]
    socket_path = {q(str(self.dir / "nri.sock"))}
"""
        return text + ("\n" + self.extra_config if self.extra_config else "")

    def _cri_config_v2(self) -> str:
        """containerd 1.x: one CRI plugin, ``io.containerd.grpc.v1.cri``."""
        q = json.dumps
        cri = '"io.containerd.grpc.v1.cri"'
        return f"""
  [plugins.{cri}]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    disable_apparmor = true
    sandbox_image = "registry.k8s.io/pause:3.6"

    [plugins.{cri}.containerd]
      snapshotter = {q(self.snapshotter)}
      default_runtime_name = "runc"
{_runc_runtime(f"plugins.{cri}.containerd")}
    [plugins.{cri}.cni]
      bin_dir = {q(str(self.cni_dir / "bin"))}
      conf_dir = {q(str(self.cni_dir / "conf"))}
"""

    def _cri_config_v3(self) -> str:
        """containerd 2.x: images (snapshotter, sandbox image), runtime (runtimes, CNI, CDI)
        and the gRPC service (streaming) are three plugins."""
        q = json.dumps
        images, runtime = '"io.containerd.cri.v1.images"', '"io.containerd.cri.v1.runtime"'
        # ``bin_dirs`` replaced ``bin_dir`` in 2.1 (which warns that it is deprecated)
        bins = str(self.cni_dir / "bin")
        cni_bin = f"bin_dirs = {q([bins])}" if self.version >= (2, 1, 0) else f"bin_dir = {q(bins)}"
        return f"""
  [plugins.{images}]
    snapshotter = {q(self.snapshotter)}

    [plugins.{images}.pinned_images]
      sandbox = "registry.k8s.io/pause:3.6"

  [plugins.{runtime}]
    disable_apparmor = true
    cdi_spec_dirs = {q([str(self.dir / "cdi")])}

    [plugins.{runtime}.containerd]
      default_runtime_name = "runc"
{_runc_runtime(f"plugins.{runtime}.containerd")}
    [plugins.{runtime}.cni]
      {cni_bin}
      conf_dir = {q(str(self.cni_dir / "conf"))}

  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

  # 2.x's ctr imports through the transfer service, which unpacks only into the snapshotters
  # listed here (default: overlayfs alone, so an import with the native one would fail)
  [plugins."io.containerd.transfer.v1.local"]
    [[plugins."io.containerd.transfer.v1.local".unpack_config]]
      platform = {q("linux/" + host_arch())}
      snapshotter = {q(self.snapshotter)}
      differ = "walking"
"""

    def start(self) -> Self:
        """Start and wait until ``ctr version`` answers; picks the snapshotter."""
        if self._daemon is not None:
            raise TestbedError("containerd already started")
        self._launch()
        if self.requested_snapshotter is None:
            overlay = self.plugin("io.containerd.snapshotter.v1", "overlayfs")
            if overlay is None or not overlay.ok:
                # overlayfs unusable here (e.g. nested overlay): fall back to native
                self._shutdown_daemon()
                self.snapshotter = "native"
                self._launch()
        if self.cri:
            plugins = {(p.type, p.id): p for p in self.plugins()}
            for type_, id_ in self.cri_plugins:
                cri = plugins.get((type_, id_))
                if cri is None or not cri.ok:
                    status = cri.status if cri else "missing"
                    self.stop()
                    raise TestbedError(
                        f"containerd CRI plugin {type_}.{id_} is {status}\n"
                        f"--- {self.log_path} ---\n" + _tail(self.log_path)
                    )
        return self

    def _launch(self) -> None:
        for d in (self.root, self.state, self.cni_dir / "bin", self.cni_dir / "conf"):
            d.mkdir(parents=True, exist_ok=True)
        if len(self.address.encode()) > 100:
            raise TestbedError(f"socket path too long for AF_UNIX (max ~107): {self.address}")
        self.config_path.write_text(self.render_config())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)
        self._daemon = daemon = Daemon(
            "containerd",
            [self.binaries.containerd, "--config", str(self.config_path)],
            self.log_path,
            env=self.binaries.daemon_env(),  # finds the shim of the same build first
        )

        def answers() -> bool:
            if not os.path.exists(self.address):
                return False
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(self.address)
                except OSError:
                    return False
            return self.ctr("version", check=False, timeout=10).returncode == 0

        try:
            daemon.wait_ready(f"containerd at {self.address}", answers, self.startup_timeout)
        except TestbedError:
            self.stop()
            raise

    def restart(self, *, kill: bool = True) -> None:
        """Stop the daemon (SIGKILL, or SIGTERM with ``kill=False``) and start it again on the
        same root, state and socket; returns once it answers. Content, ingests, leases and
        records persist, as on a node where containerd restarts."""
        if self._daemon is None or self._stopped:
            raise TestbedError("containerd is not running")
        if kill:
            self._daemon.kill()
        else:
            self._daemon.stop()
        self._daemon = None
        self._launch()

    def _shutdown_daemon(self) -> None:
        if self._daemon is not None:
            self._daemon.stop()
            self._daemon = None

    def _teardown(self) -> None:
        """Kill tasks, containerd, its shims and container processes; unmount; remove dir."""
        problems: list[str] = []
        bundles = self._bundles()
        # 1. the polite way while containerd is up: it unmounts rootfs and stops shims.
        if self._daemon is not None and self._daemon.running:
            for ns, cid in bundles:
                with contextlib.suppress(Exception):
                    self.ctr("tasks", "rm", "-f", cid, namespace=ns, check=False, timeout=15)
        # 2. containerd itself.
        self._shutdown_daemon()
        # 3. whatever survived: container processes, runc state, shims.
        for ns, cid in self._bundles():
            self._force_remove_container(ns, cid)
        shims = self.shim_pids()
        for pid in shims:
            _kill(pid)
        _wait_gone(shims, 5)
        # 4. mounts and files.
        left = unmount_all_under(self.dir)
        if left:
            problems.append(f"still mounted: {left}")
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            for sub in (self.root, self.state, self.dir / "opt"):
                shutil.rmtree(sub, ignore_errors=True)
        if problems:
            raise TestbedError("containerd cleanup: " + "; ".join(problems))

    def _bundles(self) -> list[tuple[str, str]]:
        """(namespace, container id) of every task bundle in the state dir."""
        base = self.state / TASK_STATE_SUBDIR
        out: list[tuple[str, str]] = []
        if base.is_dir():
            for ns in sorted(base.iterdir()):
                if ns.is_dir():
                    out += [(ns.name, b.name) for b in sorted(ns.iterdir()) if b.is_dir()]
        return out

    def _force_remove_container(self, ns: str, cid: str) -> None:
        bundle = self.state / TASK_STATE_SUBDIR / ns / cid
        opts: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            opts = json.loads((bundle / "options.json").read_text())
        runc_bin = opts.get("BinaryName") or RUNC
        runc_root = opts.get("Root") or os.path.join(DEFAULT_RUNC_ROOT, ns)
        with contextlib.suppress(Exception):
            run([runc_bin, "--root", runc_root, "delete", "--force", cid], check=False, timeout=15)
        with contextlib.suppress(OSError, ValueError):
            _kill(int((bundle / "init.pid").read_text().strip()))
        with contextlib.suppress(OSError):
            addr = (bundle / "address").read_text().strip()
            if addr.startswith("unix://" + SHIM_SOCKET_DIR + "/"):
                os.unlink(addr[len("unix://") :])

    def shim_pids(self) -> list[int]:
        """PIDs of containerd-shim processes serving this containerd."""
        pids = []
        for pid in _pids():
            argv = _cmdline(pid)
            if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
                continue
            if "-address" in argv:
                i = argv.index("-address")
                if i + 1 < len(argv) and argv[i + 1] == self.address:
                    pids.append(pid)
        return pids

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    # --- ctr ---------------------------------------------------------------------------------

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a client of this containerd (ctr, pyctl): address + snapshotter.

        2.x's ctr prints a deprecation warning on stderr for every call on a cgroup v1 host;
        ``CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS`` silences it (tests compare stderr)."""
        env = dict(os.environ if base is None else base)
        env["CONTAINERD_ADDRESS"] = self.address
        env["CONTAINERD_SNAPSHOTTER"] = self.snapshotter
        env["CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS"] = "1"
        env.pop("CONTAINERD_NAMESPACE", None)
        return env

    def ctr(
        self,
        *args: str,
        namespace: str = "default",
        check: bool = True,
        timeout: float = 120.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``ctr -a SOCK -n NAMESPACE ARGS…`` (text output; :class:`CommandError` if check).

        ``run``, ``tasks start`` and ``tasks exec`` get ``--fifo-dir <dir>/fifo`` unless
        given one, so detached tasks leave no FIFOs in /run/containerd/fifo."""
        argv = list(args)
        if "--fifo-dir" not in argv:
            if argv[:1] == ["run"]:
                argv[1:1] = ["--fifo-dir", str(self.dir / "fifo")]
            elif argv[:1] in (["tasks"], ["task"], ["t"]) and argv[1:2] in (["start"], ["exec"]):
                argv[2:2] = ["--fifo-dir", str(self.dir / "fifo")]
        return run(
            [self.binaries.ctr, "-a", self.address, "-n", namespace, *argv],
            check=check,
            timeout=timeout,
            env=self.client_env(),
            input=input,
        )

    def lines(self, *args: str, namespace: str = "default") -> list[str]:
        """Non-empty output lines of a ``ctr`` command (for ``… ls -q``)."""
        out = self.ctr(*args, namespace=namespace).stdout
        return [ln.strip() for ln in out.splitlines() if ln.strip()]

    def plugins(self) -> list[Plugin]:
        out = self.ctr("plugins", "ls").stdout.splitlines()
        result = []
        for line in out[1:]:
            parts = line.split()
            if len(parts) >= 4:
                result.append(Plugin(parts[0], parts[1], parts[2], parts[3]))
        return result

    def plugin(self, type_: str, id_: str) -> Plugin | None:
        for p in self.plugins():
            if p.type == type_ and p.id == id_:
                return p
        return None

    def namespaces(self) -> list[str]:
        return self.lines("namespaces", "ls", "-q")

    def images(self, namespace: str = "default") -> list[str]:
        return self.lines("images", "ls", "-q", namespace=namespace)

    def import_image(
        self, archive: Archive | str | os.PathLike[str], namespace: str = "default", **kw: Any
    ) -> list[str]:
        """Shortcut for :func:`images.import_into` on this containerd."""
        return import_into(self, archive, namespace=namespace, **kw)

    def clean_namespace(self, namespace: str, *, delete: bool = True) -> None:
        """Remove everything in ``namespace`` (tasks, containers, images, leases, snapshots,
        content) and, if ``delete``, the namespace itself with its cgroup."""
        ns = namespace
        for cid in self.lines("tasks", "ls", "-q", namespace=ns):
            self.ctr("tasks", "rm", "-f", cid, namespace=ns, check=False, timeout=30)
        containers = self.lines("containers", "ls", "-q", namespace=ns)
        if containers:
            self.ctr("containers", "rm", *containers, namespace=ns, check=False)
        imgs = self.lines("images", "ls", "-q", namespace=ns)
        if imgs:
            self.ctr("images", "rm", "--sync", *imgs, namespace=ns, check=False)
        leases = self.lines("leases", "ls", "-q", namespace=ns)
        if leases:
            self.ctr("leases", "rm", "--sync", *leases, namespace=ns, check=False)
        # Anything still here is unreferenced or referenced by other leftovers: remove
        # snapshots leaves-first (a parent cannot go before its children), then content.
        for _ in range(20):
            keys = [
                ln.split()[0]
                for ln in self.lines("snapshots", "ls", namespace=ns)[1:]
                if ln.split()
            ]
            if not keys:
                break
            for key in keys:
                self.ctr("snapshots", "rm", key, namespace=ns, check=False)
        blobs = [ln.split()[0] for ln in self.lines("content", "ls", namespace=ns)[1:] if ln]
        if blobs:
            self.ctr("content", "rm", *blobs, namespace=ns, check=False)
        if delete and ns in self.namespaces():
            res = self.ctr("namespaces", "rm", "--cgroup", ns, check=False)
            if res.returncode != 0:
                # the cgroup may be missing or busy; the namespace itself is what matters
                self.ctr("namespaces", "rm", ns)
            remove_cgroups(ns)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(DEFAULT_RUNC_ROOT, ns))


# ==============================================================================================
# certificates


@dataclass(frozen=True)
class CertPair:
    """PEM files: ``cert`` (leaf), ``key`` (its private key), ``ca`` (the issuing CA cert)."""

    cert: Path
    key: Path
    ca: Path


def _past(expired: bool) -> tuple[_dt.datetime, _dt.datetime] | None:
    """The validity window of a certificate that expired yesterday (None: the default)."""
    if not expired:
        return None
    now = _dt.datetime.now(_dt.UTC)
    return now - _dt.timedelta(days=30), now - _dt.timedelta(days=1)


class CertAuthority:
    """A throw-away CA (EC P-256 by default) writing PEM files into ``directory``: its own
    certificate and key as ``NAME.crt`` and ``NAME.key``, and those it issues."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        common_name: str = "pyctl integration test CA",
        key_type: Literal["ec", "rsa"] = "ec",
        days: int = 30,
        name: str = "ca",
    ) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key_type = key_type
        self.days = days
        self._key = self._new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _dt.datetime.now(_dt.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1))
            .not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.dir / f"{name}.crt"
        self.key_path = self.dir / f"{name}.key"
        self._write(self.cert_path, self._cert_pem(self.cert))
        self._write(self.key_path, self._key_pem(self._key), private=True)

    def _new_key(self) -> Any:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if self.key_type == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def _cert_pem(cert: Any) -> bytes:
        from cryptography.hazmat.primitives import serialization

        pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
        return pem

    @staticmethod
    def _key_pem(key: Any) -> bytes:
        from cryptography.hazmat.primitives import serialization

        pem: bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem

    @staticmethod
    def _write(path: Path, data: bytes, private: bool = False) -> None:
        path.write_bytes(data)
        if private:
            path.chmod(0o600)

    @property
    def pem(self) -> bytes:
        return self.cert_path.read_bytes()

    @property
    def key(self) -> Any:
        """The CA's private key (a ``cryptography`` key object)."""
        return self._key

    def _issue(
        self,
        name: str,
        common_name: str,
        *,
        server: bool,
        hosts: Sequence[str] = (),
        valid: tuple[_dt.datetime, _dt.datetime] | None = None,
    ) -> CertPair:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = self._new_key()
        now = _dt.datetime.now(_dt.UTC)
        not_before, not_after = valid or (
            now - _dt.timedelta(days=1),
            now + _dt.timedelta(days=self.days),
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if hosts:
            sans: list[x509.GeneralName] = []
            for h in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    sans.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pair = CertPair(
            cert=self.dir / f"{name}.crt", key=self.dir / f"{name}.key", ca=self.cert_path
        )
        self._write(pair.cert, self._cert_pem(cert))
        self._write(pair.key, self._key_pem(key), private=True)
        return pair

    def issue_server_cert(
        self,
        name: str = "server",
        hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
        *,
        expired: bool = False,
    ) -> CertPair:
        """A serverAuth cert with IP/DNS SANs for ``hosts`` (only those: pass other names
        for a cert that does not match the server); ``expired``: valid until yesterday."""
        return self._issue(
            name, hosts[0] if hosts else name, server=True, hosts=hosts, valid=_past(expired)
        )

    def issue_client_cert(
        self, name: str = "client", common_name: str = "pyctl-test-client", *, expired: bool = False
    ) -> CertPair:
        """A clientAuth cert (for registries requiring mutual TLS); ``expired`` as above."""
        return self._issue(name, common_name, server=False, valid=_past(expired))

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA."""
        return ssl.create_default_context(cafile=str(self.cert_path))


# ==============================================================================================
# registry auth


def bcrypt_hash(password: str, cost: int = 5) -> str:
    """A bcrypt hash for htpasswd files (what docker-registry accepts).

    Uses the ``bcrypt`` package if installed, else the system libcrypt (libxcrypt, which
    supports ``$2b$``) through ctypes — no compiler, no extra package on Debian."""
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]

        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost))
        return hashed.decode()
    except ImportError:
        pass
    libname = ctypes.util.find_library("crypt")
    if not libname:
        raise TestbedError("no bcrypt: install the 'bcrypt' package or libcrypt1 (libxcrypt)")
    lib = ctypes.CDLL(libname, use_errno=True)
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    setting = lib.crypt_gensalt(b"$2b$", cost, None, 0)
    if not setting:
        raise TestbedError("libcrypt: crypt_gensalt($2b$) failed (no bcrypt support?)")
    result = lib.crypt(password.encode(), setting)
    if not result or not result.startswith(b"$2"):
        raise TestbedError("libcrypt: bcrypt hashing failed")
    out: bytes = result
    return out.decode()


class RegistryAuth:
    """Base for registry auth schemes: contributes the ``auth:`` section of the config.

    Subclasses (e.g. a future token-auth one that also runs a token server) implement
    :meth:`config`, may implement :meth:`start`/:meth:`stop`, and :meth:`headers`."""

    def config(self, workdir: Path) -> dict[str, Any]:
        raise NotImplementedError

    def start(self, workdir: Path) -> None:
        """Called before the registry starts (after :meth:`config`)."""

    def stop(self) -> None:
        """Called after the registry stopped."""

    def headers(self, user: str | None = None) -> dict[str, str]:
        """Headers that authenticate a plain HTTP client (for :meth:`Registry.request`)."""
        return {}


@dataclass
class _UsersAuth(RegistryAuth):
    """An auth scheme with users and passwords (``user``/``password``: the first one's)."""

    users: Mapping[str, str] = field(default_factory=lambda: {"testuser": "testpassword"})

    @property
    def user(self) -> str:
        """The first user name."""
        return next(iter(self.users))

    @property
    def password(self) -> str:
        return self.users[self.user]


@dataclass
class HtpasswdAuth(_UsersAuth):
    """Basic auth from an htpasswd file with bcrypt hashes."""

    realm: str = "pyctl-test-registry"
    path: Path | None = None

    def config(self, workdir: Path) -> dict[str, Any]:
        self.path = workdir / "htpasswd"
        self.path.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in self.users.items()))
        return {"htpasswd": {"realm": self.realm, "path": str(self.path)}}

    def headers(self, user: str | None = None) -> dict[str, str]:
        import base64

        u = user or self.user
        token = base64.b64encode(f"{u}:{self.users[u]}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


@dataclass
class TokenAuth(_UsersAuth):
    """Bearer-token auth (``auth.token``) backed by a :class:`~integration.tokenserver.TokenServer`
    started and stopped with the registry (Harbor / Docker Hub style).

    ``permissions`` is ``{user: {repo_glob: actions}}`` (e.g. ``{"alice": {"*": "pull,push"}}``);
    anonymous clients get ``pull`` on ``public_repos`` globs; ``tls`` (a :class:`CertPair`)
    makes the token server HTTPS (the realm is ``https://127.0.0.1:PORT/token``).  After the
    registry's :meth:`Registry.render_config`, ``server`` is the running-or-ready TokenServer.

    :meth:`headers` (used by :meth:`Registry.request` and its helpers) mints an admin token
    with ``registry:catalog:*`` and pull/push/delete on every repository already in the
    registry's storage; :meth:`token_headers` mints one for explicit scopes."""

    permissions: Mapping[str, Mapping[str, str | Sequence[str]]] | None = None
    public_repos: Sequence[str] = ()
    anonymous: bool = True
    tls: CertPair | None = None
    service: str = "pyctl-test-registry"
    issuer: str = "pyctl-test-token-issuer"
    expires_in: int = 300
    header: Literal["kid", "x5c"] = "kid"
    allow_post: bool = True
    server: TokenServer | None = field(default=None, init=False)
    _workdir: Path | None = field(default=None, init=False, repr=False)

    def _make_server(self, workdir: Path) -> TokenServer:
        from .tokenserver import TokenServer

        perms = self.permissions
        if perms is None:
            perms = {u: {"*": "pull,push,delete"} for u in self.users}
        return TokenServer(
            workdir / "tokenserver",
            users=self.users,
            permissions=perms,
            public_repos=self.public_repos,
            anonymous=self.anonymous,
            service=self.service,
            issuer=self.issuer,
            expires_in=self.expires_in,
            tls=self.tls,
            header=self.header,
            allow_post=self.allow_post,
        )

    def config(self, workdir: Path) -> dict[str, Any]:
        self._workdir = workdir
        if self.server is None:
            self.server = self._make_server(workdir)
        return self.server.registry_config()

    def _server(self) -> TokenServer:
        if self.server is None:
            raise TestbedError("TokenAuth: no token server yet (the registry renders it)")
        return self.server

    def start(self, workdir: Path) -> None:
        if not self._server().running:
            self._server().start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def realm(self) -> str:
        return self._server().realm

    def _stored_repos(self) -> list[str]:
        if self._workdir is None:
            return []
        base = self._workdir / "storage" / "docker" / "registry" / "v2" / "repositories"
        repos: list[str] = []
        for dirpath, dirnames, _files in os.walk(base):
            if any(d in dirnames for d in ("_manifests", "_layers", "_uploads")):
                repos.append(os.path.relpath(dirpath, base))
                dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(repos)

    def token_headers(self, *scopes: str, subject: str = "admin") -> dict[str, str]:
        """``Authorization: Bearer`` with exactly ``scopes`` (``repository:foo:pull`` ...)."""
        from .tokenserver import parse_scope

        access = [a for s in scopes for a in parse_scope(s)]
        return {"Authorization": f"Bearer {self._server().issue(subject, access)}"}

    def headers(self, user: str | None = None) -> dict[str, str]:
        scopes = ["registry:catalog:*"]
        scopes += [f"repository:{r}:pull,push,delete" for r in self._stored_repos()]
        return self.token_headers(*scopes, subject=user or "admin")


def write_cert_dir(
    directory: str | os.PathLike[str],
    *,
    ca: str | os.PathLike[str] | None = None,
    client: CertPair | None = None,
) -> Path:
    """A Docker/containers ``certs.d``-style directory: ``ca.crt`` (copy of ``ca``) and, for
    ``client``, ``client.cert`` + ``client.key``.  Works for ``skopeo --cert-dir``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if ca is not None:
        shutil.copyfile(ca, d / "ca.crt")
    if client is not None:
        shutil.copyfile(client.cert, d / "client.cert")
        shutil.copyfile(client.key, d / "client.key")
        (d / "client.key").chmod(0o600)
    return d


# ==============================================================================================
# registry


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Registry(Service):
    """``docker-registry serve`` (distribution v2.8) on 127.0.0.1:<free port>.

    * plain HTTP by default; ``tls=CertPair`` for HTTPS; ``client_ca`` requires client
      certificates (mutual TLS), ``client_cert`` is what :meth:`request` then presents
    * ``auth=HtpasswdAuth(...)`` for basic auth; deletes are enabled unless ``delete=False``
    * ``host`` (``127.0.0.1:PORT``), ``url``, ``storage``, ``config_path``, ``log_path``
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        tls: CertPair | None = None,
        client_ca: str | os.PathLike[str] | None = None,
        client_cert: CertPair | None = None,
        auth: RegistryAuth | None = None,
        delete: bool = True,
        port: int | None = None,
        log_level: str = "info",
        startup_timeout: float = 15.0,
        binary: str = DOCKER_REGISTRY,
    ) -> None:
        self.dir, self._own_dir = bed_directory(directory, "pyctl-registry-")
        self.storage = self.dir / "storage"
        self.config_path = self.dir / "config.yml"
        self.log_path = self.dir / "registry.log"
        self.tls = tls
        self.client_ca = Path(client_ca) if client_ca else None
        self.client_cert = client_cert
        self.auth = auth
        self.delete = delete
        self.port = port or free_port()
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.binary = binary
        self._daemon: Daemon | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def ca_path(self) -> Path | None:
        return self.tls.ca if self.tls else None

    def ref(self, repo: str, tag: str = "latest") -> str:
        """``127.0.0.1:PORT/repo:tag``"""
        return f"{self.host}/{repo}:{tag}"

    def __repr__(self) -> str:
        return f"Registry(url={self.url!r})"

    @property
    def running(self) -> bool:
        return self._daemon is not None

    @property
    def pid(self) -> int | None:
        return self._daemon.pid if self._daemon else None

    def render_config(self) -> dict[str, Any]:
        http_cfg: dict[str, Any] = {
            "addr": self.host,
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self.tls:
            tls_cfg: dict[str, Any] = {
                "certificate": str(self.tls.cert),
                "key": str(self.tls.key),
            }
            if self.client_ca:
                tls_cfg["clientcas"] = [str(self.client_ca)]
            http_cfg["tls"] = tls_cfg
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": self.log_level, "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": self.delete},
                "cache": {"blobdescriptor": "inmemory"},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http_cfg,
        }
        if self.auth:
            cfg["auth"] = self.auth.config(self.dir)
        return cfg

    def start(self) -> Self:
        if self._daemon is not None:
            raise TestbedError("registry already started")
        self.storage.mkdir(parents=True, exist_ok=True)
        # YAML is a superset of JSON: no YAML library needed.
        self.config_path.write_text(json.dumps(self.render_config(), indent=2))
        if self.auth:
            self.auth.start(self.dir)
        self._daemon = daemon = Daemon(
            "docker-registry", [self.binary, "serve", str(self.config_path)], self.log_path
        )

        def answers() -> bool:
            try:
                r = self.request("GET", "/v2/", timeout=2)
            except ssl.SSLError:
                # a TLS alert (e.g. "certificate required") means it is up and serving
                return self.client_ca is not None and self.client_cert is None
            except (OSError, http.client.HTTPException):
                return False
            return r.status in (200, 401)

        try:
            daemon.wait_ready(f"registry at {self.url}", answers, self.startup_timeout)
        except TestbedError:
            self.stop()
            raise
        return self

    def _teardown(self) -> None:
        if self._daemon is not None:
            self._daemon.stop()
            self._daemon = None
        if self.auth:
            self.auth.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts this registry's CA and presents ``client_cert`` if set."""
        if self.tls is None:
            raise TestbedError("plain-HTTP registry has no TLS")
        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        if self.client_cert:
            ctx.load_cert_chain(str(self.client_cert.cert), str(self.client_cert.key))
        return ctx

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
        context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> Response:
        """One HTTP request straight to the registry (no proxies). With ``authenticate``
        the auth scheme's credentials are sent."""
        hdrs = dict(self.auth.headers() if (self.auth and authenticate) else {})
        hdrs.update(headers or {})
        conn: http.client.HTTPConnection
        if self.tls:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=context or self.ssl_context(), timeout=timeout
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, dict(resp.getheaders()), resp.read())
        finally:
            conn.close()

    def catalog(self) -> list[str]:
        repos: list[str] = self.request("GET", "/v2/_catalog").json().get("repositories") or []
        return repos

    def tags(self, repo: str) -> list[str]:
        r = self.request("GET", f"/v2/{repo}/tags/list")
        if r.status == 404:
            return []
        tags: list[str] = r.json().get("tags") or []
        return tags

    def manifest(self, repo: str, ref: str) -> Response:
        accept = ", ".join(
            [
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ]
        )
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept})


# ==============================================================================================
# skopeo


def skopeo(
    *args: str,
    check: bool = True,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``skopeo --insecure-policy ARGS…`` (the host's policy.json is not consulted).

    E.g. ``skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{tar}",
    f"docker://{registry.host}/repo:tag")`` or
    ``skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.ref('repo')}")``.
    """
    return run(["skopeo", "--insecure-policy", *args], check=check, timeout=timeout, env=env)
