"""pyctl as a library: ``pyctl.connect()`` and the :class:`Client` it returns.

    import pyctl

    with pyctl.connect(namespace="k8s.io") as c:
        r = c.pull("harbor.local/team/app:1.4")
        for img in c.images():
            print(img.name, img.size)

Settings come as the CLI's do: arguments > environment (``CONTAINERD_ADDRESS``,
``CONTAINERD_NAMESPACE``, …) > pyctl.toml > defaults. Results are the typed objects of
:mod:`pyctl.results` (raw sizes, full digests, datetimes); failures raise
:class:`pyctl.PyctlError` subclasses with the CLI's one-line messages. The CLI is a layer over
the same operations. Nothing heavy is imported before it is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from pyctl.errors import PyctlError

if TYPE_CHECKING:
    from pyctl.config import Settings
    from pyctl.containerd.client import Client as Containerd
    from pyctl.oci import Descriptor
    from pyctl.registry.connect import RegistryConfig
    from pyctl.results.check import HostsCheck
    from pyctl.results.containers import ContainerInfo, NamespaceInfo
    from pyctl.results.images import Image
    from pyctl.results.transfers import Imported, PullResult, PushResult

ProgressCallback = Callable[[str, int, int], None]
"""``progress(digest, bytes_done, bytes_total)``, called as a blob moves (from any thread)."""


class PartialFailure(PyctlError):
    """Some of several objects could not be removed; ``done`` were, ``errors`` say why not."""

    def __init__(self, done: Sequence[str], errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.done = list(done)
        self.errors = list(errors)


def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    snapshotter: str | None = None,
    hosts_dir: Sequence[str] = (),
    containerd_config: str | None = None,
    insecure_registry: bool | None = None,
    debug: bool | None = None,
    config: str | None = None,
) -> Client:
    """A client of the containerd at ``address`` (a socket path, ``unix://`` accepted), bound
    to ``namespace``; unset arguments come from the environment, pyctl.toml (``config``, else
    /etc/pyctl/pyctl.toml, else ~/.config/pyctl/pyctl.toml) and the defaults."""
    from pyctl.config import resolve_settings

    flags: dict[str, Any] = {
        "address": address,
        "namespace": namespace,
        "snapshotter": snapshotter,
        "hosts_dir": tuple(hosts_dir),
        "containerd_config": containerd_config,
        "insecure_registry": insecure_registry,
        "debug": debug,
    }
    return Client(resolve_settings(flags, config_path=config))


class Client:
    """One containerd namespace, and the registries and archives images come from."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._containerd: Containerd | None = None
        self._registries: RegistryConfig | None = None

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._containerd is not None:
            self._containerd.close()
            self._containerd = None

    @property
    def containerd(self) -> Containerd:
        """The gRPC connection (opened at first use)."""
        if self._containerd is None:
            from pyctl.containerd.client import Client as Containerd

            s = self.settings
            self._containerd = Containerd(s.address, s.namespace, debug=s.debug)
        return self._containerd

    @property
    def registries(self) -> RegistryConfig:
        """Hosts directories, containerd's CRI registry config and config.json (read once)."""
        if self._registries is None:
            from pyctl.registry.connect import RegistryConfig

            self._registries = RegistryConfig.load(self.settings)
        return self._registries

    # images -----------------------------------------------------------------------------------

    def images(
        self,
        repository: str | None = None,
        *,
        all: bool = False,
        filters: Sequence[str] = (),
    ) -> list[Image]:
        """The namespace's images, newest built first. ``all`` shows the CRI plugin's extra
        records in k8s.io; ``filters`` as `images -f` (``reference=``, ``dangling=``,
        ``before=``, ``since=``, ``label=``)."""
        from pyctl.ops.images import list_images

        return list_images(
            self.containerd,
            self.settings.snapshotter,
            repository=repository,
            show_all=all,
            filters=filters,
        )

    def tag(self, source: str, target: str) -> None:
        from pyctl.ops.images import tag

        tag(self.containerd, source, target)

    def remove(self, *images: str, force: bool = False) -> list[str]:
        """Remove images (names, IDs, digests); the names removed. Raises
        :class:`PartialFailure` (after removing the others) if some could not be."""
        from pyctl.ops.images import remove

        removed, errors = remove(self.containerd, images, force=force)
        if errors:
            raise PartialFailure(removed, errors)
        return removed

    def pull(
        self,
        reference: str,
        *,
        platforms: Sequence[str] = (),
        all_platforms: bool = False,
        unpack: str = "auto",
        max_concurrent_downloads: int = 3,
        progress: ProgressCallback | None = None,
    ) -> PullResult:
        from pyctl.errors import prefixed
        from pyctl.ops.registry import pull

        with prefixed(f"pull {reference}"):
            return pull(
                self.containerd,
                self.registries,
                reference,
                platforms=platforms,
                all_platforms=all_platforms,
                unpack=unpack,
                concurrency=max_concurrent_downloads,
                progress=_progress(progress),
            )

    def push(
        self,
        reference: str,
        *,
        platforms: Sequence[str] = (),
        all_platforms: bool = False,
        progress: ProgressCallback | None = None,
    ) -> PushResult:
        from pyctl.errors import prefixed
        from pyctl.ops.registry import push

        with prefixed(f"push {reference}"):
            return push(
                self.containerd,
                self.registries,
                reference,
                platforms=platforms,
                all_platforms=all_platforms,
                progress=_progress(progress),
            )

    def import_archive(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        base_name: str | None = None,
        digests: bool = False,
        platforms: Sequence[str] = (),
        all_platforms: bool = False,
        unpack: bool = True,
        progress: ProgressCallback | None = None,
    ) -> list[Imported]:
        """Import an OCI layout or docker-save archive (plain, gzip or zstd) from a path or a
        binary file object; the image records made."""
        from pyctl.archive.names import Naming
        from pyctl.errors import prefixed
        from pyctl.ops.archive import ImportSource, import_archive

        if isinstance(source, (str, os.PathLike)):
            src = ImportSource(os.fspath(source))
        else:
            src = ImportSource(str(getattr(source, "name", "<stream>")), stdin=source)
        with prefixed(f"import {src.label}"):
            return import_archive(
                self.containerd,
                src,
                Naming.create(base_name, digests=digests, name_unnamed=False),
                platforms=platforms,
                all_platforms=all_platforms,
                unpack=unpack,
                snapshotter=self.settings.snapshotter,
                progress=_progress(progress),
            )

    def export(
        self,
        out: str | os.PathLike[str] | IO[bytes],
        images: Sequence[str],
        *,
        platforms: Sequence[str] = (),
        all_platforms: bool = False,
        docker_manifest: bool = True,
    ) -> None:
        """Write ``images`` as one archive (OCI layout + docker manifest.json) to a path
        (written whole or not at all) or a binary file object."""
        from pyctl.errors import prefixed
        from pyctl.ops.archive import export_images, output_file

        def write(f: IO[bytes]) -> None:
            export_images(
                self.containerd,
                images,
                f,
                platforms=platforms,
                all_platforms=all_platforms,
                docker_manifest=docker_manifest,
            )

        if isinstance(out, (str, os.PathLike)):
            path = os.fspath(out)
            with prefixed(f"export {path}"), output_file(path) as f:
                write(f)
        else:
            with prefixed("export"):
                write(out)

    # containers and namespaces ----------------------------------------------------------------

    def containers(self, *, all: bool = True, filters: Sequence[str] = ()) -> list[ContainerInfo]:
        """The namespace's containers (all of them unless ``all=False``: running only),
        newest first; ``filters`` as `ps -f`."""
        from pyctl.ops.containers import list_ps

        return list_ps(self.containerd, show_all=all, filters=filters)

    def remove_containers(self, *containers: str, force: bool = False) -> list[str]:
        """Remove containers (ID, prefix or name) with their snapshots; the IDs removed.
        ``force`` kills running ones. Raises :class:`PartialFailure` if some could not be."""
        from pyctl.ops.containers import remove_containers

        removed, errors = remove_containers(self.containerd, containers, force=force)
        if errors:
            raise PartialFailure(removed, errors)
        return removed

    def namespaces(self) -> list[NamespaceInfo]:
        from pyctl.ops.system import list_namespaces

        return list_namespaces(self.containerd)

    # registries -------------------------------------------------------------------------------

    def hosts(self, target: str) -> dict[str, Any]:
        """The registry configuration that applies to an image reference or registry host:
        the endpoints in the order they are tried, with their settings and where each came
        from (the document `pyctl hosts --format json` prints)."""
        from pyctl.ops.hosts import explain_hosts

        return explain_hosts(self.registries, target)

    def check(self, target: str, timeout: float = 5.0) -> HostsCheck:
        """What `pyctl hosts --check` reports about a pull of an image reference (or any pull
        from a registry host): the configuration's findings, each endpoint's probes in the
        order a pull tries them (each step within ``timeout`` seconds) and the verdict
        (``.verdict.ok``). Talks only to the registries; writes nothing."""
        from pyctl.errors import prefixed
        from pyctl.ops.hosts import check_hosts

        with prefixed(f"hosts {target}"):
            return check_hosts(self.settings, target, timeout)

    def login(self, server: str | None, username: str, password: str) -> str:
        """Verify the credentials with the registry, then store them (config.json or the
        configured credential helper); where they were stored."""
        from pyctl.errors import prefixed
        from pyctl.ops.registry import login, registry_host

        with prefixed(f"login {registry_host(server)}"):
            return login(self.registries, server, username, password)

    def logout(self, server: str | None) -> bool:
        """Remove stored credentials; whether there were any."""
        from pyctl.ops.registry import logout

        return logout(self.registries, server)[1]


class _CallbackProgress:
    """The copy engine's progress protocol as one callback."""

    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback
        self._done: dict[str, int] = {}

    def start(self, desc: Descriptor, what: str) -> None:
        self._done[desc.digest] = 0
        self.callback(desc.digest, 0, desc.size)

    def advance(self, desc: Descriptor, n: int) -> None:
        done = self._done.get(desc.digest, 0) + n
        self._done[desc.digest] = done
        self.callback(desc.digest, done, desc.size)

    def done(self, desc: Descriptor, status: object) -> None:
        self.callback(desc.digest, desc.size, desc.size)

    def note(self, text: str) -> None:
        pass


def _progress(callback: ProgressCallback | None) -> _CallbackProgress | None:
    return _CallbackProgress(callback) if callback is not None else None
