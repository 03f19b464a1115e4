"""A private Docker engine for the test bed: Debian's ``docker.io`` as a referee for archives.

    with DockerEngine() as engine:
        engine.docker("load", "-i", "app.tar")
        engine.docker("run", "--rm", "--network", "none", "app:1", "cat", "/etc/os-release")

Everything lives in one temporary directory: ``dockerd`` gets its own ``--data-root``,
``--exec-root``, socket (``-H unix://<dir>/docker.sock``), ``--pidfile`` and daemon config
file (``/etc/docker/daemon.json`` is never read, ``key.json`` is kept in the directory), no
bridge, no iptables/ip6tables rules, no IP forwarding, no userland proxy, the cgroupfs driver
under a cgroup parent of its own, and a containerd of its own (a
:class:`~integration.testbed.Containerd` without CRI, passed as ``--containerd``). That last
part matters: without ``--containerd``, dockerd uses ``/run/containerd/containerd.sock``
whenever that socket exists, and only otherwise starts a containerd of its own.

Storage driver: ``overlay2`` if it works here, else ``vfs``. The client is Debian's
``/usr/bin/docker`` with ``DOCKER_HOST`` and a private ``DOCKER_CONFIG``.

:meth:`DockerEngine.stop` removes every container, stops dockerd by its PID (SIGTERM, then
SIGKILL for its whole process group), stops the containerd with its shims, unmounts everything
under the directory, removes the cgroup parent and the directory. What dockerd 20.10 creates
outside the directory whatever its flags say: ``/run/docker/plugins`` (managed plugins' state,
not configurable); it is removed again when the engine made it and it is empty. (Its
containerd's shim sockets live in ``/run/containerd/s``, as every bed containerd's do.)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from integration.testbed import (
    Containerd,
    Daemon,
    Service,
    TestbedError,
    _tail,
    alive,
    bed_directory,
    remove_cgroups,
    run,
    unmount_all_under,
)

__all__ = ["DOCKER", "DOCKERD", "DockerEngine"]

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's client; PATH may hold another one (e.g. /usr/local/bin)
PACKAGE = "docker.io"
PLUGIN_RUN_DIR = Path("/run/docker/plugins")  # dockerd's plugin exec root, not configurable
STORAGE_DRIVERS = ("overlay2", "vfs")


@functools.cache
def _dockerd_flags(dockerd: str) -> str:
    """``dockerd --help`` (to see which flags this version has)."""
    return run([dockerd, "--help"], check=False, timeout=30).stdout


class DockerEngine(Service):
    """A private dockerd with a private containerd; see the module docstring.

    * ``host`` (``unix://<dir>/docker.sock``), ``socket``, ``pid``, ``storage_driver``
    * ``data_root``, ``exec_root``, ``pidfile``, ``config_path``, ``log_path``, ``dir``
    * ``containerd``: its :class:`~integration.testbed.Containerd` (namespace ``moby``)
    * ``start_seconds``: how long :meth:`start` took
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        storage_driver: str | None = None,
        log_level: str = "info",
        startup_timeout: float = 60.0,
        dockerd: str = DOCKERD,
        docker: str = DOCKER,
    ) -> None:
        self.dir, self._own_dir = bed_directory(directory, "pyctl-docker-")
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "exec"
        self.socket = self.dir / "docker.sock"
        self.pidfile = self.dir / "dockerd.pid"
        self.config_path = self.dir / "daemon.json"
        self.log_path = self.dir / "dockerd.log"
        self.client_config = self.dir / "client"  # DOCKER_CONFIG
        self.cgroup_parent = f"pyctl-docker-{uuid.uuid4().hex[:12]}"
        self.requested_storage_driver = storage_driver
        self.storage_driver = storage_driver or STORAGE_DRIVERS[0]
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.dockerd = dockerd
        self.docker_binary = docker
        self.containerd: Containerd | None = None
        self.start_seconds: float | None = None
        self._daemon: Daemon | None = None
        self._made_plugin_dirs: list[Path] = []

    # --- lifecycle -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"DockerEngine(host={self.host!r}, storage_driver={self.storage_driver!r})"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self._daemon.pid if self._daemon else None

    @property
    def running(self) -> bool:
        return self._daemon is not None

    def start(self) -> Self:
        """Start containerd, then dockerd; returns once ``docker version`` answers."""
        if self._daemon is not None or self.containerd is not None:
            raise TestbedError("docker engine already started")
        began = time.monotonic()
        for binary in (self.dockerd, self.docker_binary):
            if not os.access(binary, os.X_OK):
                raise TestbedError(f"{binary} not found: install the Debian package {PACKAGE}")
        if len(str(self.socket).encode()) > 100:
            raise TestbedError(f"socket path too long for AF_UNIX (max ~107): {self.socket}")
        self._made_plugin_dirs = [
            p for p in (PLUGIN_RUN_DIR.parent, PLUGIN_RUN_DIR) if not p.exists()
        ]
        try:
            # the bed's containerd (dockerd 20.10 works with 1.6, 1.7 and 2.x alike)
            self.containerd = Containerd(self.dir / "containerd", cri=False).start()
            requested = self.requested_storage_driver
            drivers = (requested,) if requested else STORAGE_DRIVERS
            for i, driver in enumerate(drivers):
                self.storage_driver = driver
                try:
                    self._launch()
                    break
                except TestbedError:
                    self._shutdown_daemon()
                    if i == len(drivers) - 1:
                        raise  # the log has each attempt (e.g. overlay2 on overlayfs, then vfs)
        except TestbedError:
            self.stop()  # each error carries the log of the daemon it is about
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def command(self) -> list[str]:
        """The dockerd command line (everything but the key path, which is in the config)."""
        assert self.containerd is not None
        argv = [
            self.dockerd,
            f"--config-file={self.config_path}",
            f"--host={self.host}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--containerd={self.containerd.address}",
            f"--storage-driver={self.storage_driver}",
            "--exec-opt=native.cgroupdriver=cgroupfs",
            f"--cgroup-parent=/{self.cgroup_parent}",
            "--bridge=none",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--shutdown-timeout=5",
            f"--log-level={self.log_level}",
        ]
        if "--ip6tables" in _dockerd_flags(self.dockerd):
            argv.append("--ip6tables=false")
        return argv

    def _launch(self) -> None:
        for d in (self.data_root, self.exec_root, self.client_config):
            d.mkdir(parents=True, exist_ok=True)
        # A config key, not a flag, so that versions without it (it is only read there) start
        # too; it keeps the daemon's identity key out of /etc/docker.
        self.config_path.write_text(json.dumps({"deprecated-key-path": str(self.dir / "key.json")}))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        self._daemon = daemon = Daemon(
            f"dockerd ({self.storage_driver})",
            self.command(),
            self.log_path,
            env=self._daemon_env(),
        )

        def answers() -> bool:
            if not self.socket.exists():
                return False
            return self.docker("version", check=False, timeout=10).returncode == 0

        daemon.wait_ready(f"dockerd at {self.host}", answers, self.startup_timeout)
        pid_in_file = self.pidfile.read_text().strip()
        if pid_in_file != str(daemon.pid):
            raise TestbedError(
                f"{self.pidfile} says {pid_in_file!r}, dockerd is {daemon.pid}\n"
                f"--- {self.log_path} ---\n{_tail(self.log_path)}"
            )

    @staticmethod
    def _daemon_env() -> dict[str, str]:
        env = dict(os.environ)
        for var in ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_TMPDIR"):
            env.pop(var, None)
        return env

    def _shutdown_daemon(self) -> None:
        """Stop dockerd by its PID (SIGTERM, grace, SIGKILL), then whatever is left of its
        process group."""
        if self._daemon is not None:
            self._daemon.stop(grace=15.0, group=True)
            self._daemon = None

    def _teardown(self) -> None:
        """Remove containers, stop dockerd and its containerd, unmount, remove the cgroup
        parent and the directory; raises :class:`TestbedError` when something is left
        behind."""
        problems: list[str] = []
        if self._daemon is not None and self._daemon.running:
            with contextlib.suppress(Exception):
                self._remove_containers()
        dockerd_pid = self.pid
        self._shutdown_daemon()
        if dockerd_pid is not None and alive(dockerd_pid):
            problems.append(f"dockerd {dockerd_pid} survived SIGKILL")
        if self.containerd is not None:
            try:
                self.containerd.stop()
            except TestbedError as e:
                problems.append(str(e))
            shims = self.containerd.shim_pids()
            if shims:
                problems.append(f"containerd shims still running: {shims}")
        left = unmount_all_under(self.dir)
        if left:
            problems.append(f"still mounted: {left}")
        remove_cgroups(self.cgroup_parent)
        for d in reversed(self._made_plugin_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty: another engine may be using it now
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            raise TestbedError("docker engine cleanup: " + "; ".join(problems))

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    # --- the client ------------------------------------------------------------------------

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for the docker CLI: this engine's socket and a private config dir."""
        env = dict(os.environ if base is None else base)
        for var in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(var, None)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.client_config)
        return env

    def argv(self, *args: str) -> list[str]:
        """The command line of ``docker ARGS…`` against this engine (run it with
        :meth:`client_env`), e.g. for pipes."""
        return [self.docker_binary, "-H", self.host, *args]

    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 120.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``docker -H unix://SOCK ARGS…`` (text output; :class:`CommandError` if check)."""
        return run(
            self.argv(*args),
            check=check,
            timeout=timeout,
            env=self.client_env(),
            input=input,
        )

    def lines(self, *args: str) -> list[str]:
        """Non-empty output lines of a docker command."""
        return [ln.strip() for ln in self.docker(*args).stdout.splitlines() if ln.strip()]

    def image_names(self) -> set[str]:
        """``REPOSITORY:TAG`` of every tagged image."""
        return {
            name
            for name in self.lines("images", "--format", "{{.Repository}}:{{.Tag}}")
            if "<none>" not in name
        }

    def image_id(self, image: str) -> str:
        """``docker inspect -f {{.Id}}``: the config digest with the graph driver store."""
        return self.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()

    def _remove_containers(self) -> None:
        ids = self.lines("ps", "-aq")
        if ids:
            self.docker("rm", "-f", *ids, timeout=60)

    def reset(self) -> None:
        """Remove every container and image (each test starts from an empty engine)."""
        self._remove_containers()
        images = self.lines("images", "-aq", "--no-trunc")
        if images:
            self.docker("rmi", "-f", *dict.fromkeys(images), timeout=60)
