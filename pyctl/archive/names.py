"""Image names in archives: how an import names what it finds (ctr's rules, with every name
normalized as pyctl stores names) and how an export annotates what it writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from pyctl.errors import InvalidReferenceError
from pyctl.oci import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, is_digest
from pyctl.reference import (
    Reference,
    familiarize,
    parse_docker_ref,
    parse_normalized_named,
)


def default_prefix(today: date | None = None) -> str:
    """ctr's name for what an archive leaves unnamed: ``import-YYYY-MM-DD``."""
    return f"import-{(today or date.today()):%Y-%m-%d}"


def _normalized(name: str, where: str) -> Reference:
    try:
        return parse_docker_ref(name)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"{where} names an image {name!r}: {exc}") from None


def normalize_name(name: str, where: str = "the archive") -> str:
    """A stored image name: normalized (``busybox`` → ``docker.io/library/busybox:latest``);
    a bare digest (the CRI plugin's ``sha256:<config>`` records) is kept as it is."""
    if is_digest(name):
        return name
    return str(_normalized(name, where))


def _is_full(ref_name: str) -> bool:
    """ctr: an ``org.opencontainers.image.ref.name`` is a full reference when it has a
    ``/``, ``:`` or ``@``; otherwise it is only a tag."""
    return any(c in ref_name for c in "/:@")


def _within(name: str, repository: str) -> bool:
    repo = _normalized(name, "the archive").name
    return repo == repository or repo.startswith(repository + "/")


@dataclass(frozen=True)
class Naming:
    """The naming options of an import.

    * ``io.containerd.image.name`` names an entry as it is;
    * else ``org.opencontainers.image.ref.name``: a full reference is kept (with ``base_name``
      only when it lies under it), a tag becomes ``PREFIX:TAG``;
    * ``digests`` adds ``REPOSITORY@DIGEST`` for each entry (``PREFIX@DIGEST`` if unnamed);
    * ``name_unnamed`` gives an entry without any name ``PREFIX@DIGEST`` (``load``).

    PREFIX is ``base_name``, or ``import-YYYY-MM-DD`` without one.
    """

    prefix: str
    base_name: bool = False
    digests: bool = False
    name_unnamed: bool = False

    @classmethod
    def create(
        cls,
        base_name: str | None = None,
        *,
        digests: bool = False,
        name_unnamed: bool = False,
        today: date | None = None,
    ) -> Naming:
        if base_name:
            try:
                ref = parse_normalized_named(base_name)
            except InvalidReferenceError as exc:
                raise InvalidReferenceError(f"--base-name {base_name}: {exc}") from None
            if ref.tag is not None or ref.digest is not None:
                raise InvalidReferenceError(
                    f"--base-name {base_name}: give a repository, without a tag or digest"
                )
            return cls(ref.name, True, digests, name_unnamed)
        return cls(default_prefix(today), False, digests, name_unnamed)

    def name_of(self, annotations: Mapping[str, str]) -> str | None:
        """The name an index entry's annotations give it, or None."""
        name = annotations.get(ANNOTATION_IMAGE_NAME, "")
        if name:
            return normalize_name(name)
        ref_name = annotations.get(ANNOTATION_REF_NAME, "")
        if not ref_name:
            return None
        if _is_full(ref_name):
            if self.base_name and not _within(ref_name, self.prefix):
                return None
            return normalize_name(ref_name)
        return normalize_name(f"{self.prefix}:{ref_name}")

    def names(self, annotations: Mapping[str, str], digest: str) -> list[str]:
        """Every record name for an index entry (maybe none)."""
        name = self.name_of(annotations)
        out = [name] if name else []
        if self.digests or (name is None and self.name_unnamed):
            repo = parse_docker_ref(name).name if name and not is_digest(name) else self.prefix
            out.append(normalize_name(f"{repo}@{digest}"))
        return list(dict.fromkeys(out))


def repo_tag(repo_tag: str) -> str:
    """A docker ``RepoTags`` entry as a stored name (``app:1`` → ``docker.io/library/app:1``)."""
    return str(_normalized(repo_tag, "manifest.json"))


def ref_object(name: str) -> str:
    """``org.opencontainers.image.ref.name`` for an exported name: its tag, or its digest."""
    if is_digest(name):
        return name
    try:
        ref = parse_docker_ref(name)
    except InvalidReferenceError:
        return name
    return ref.digest or ref.tag or "latest"


def docker_repo_tag(name: str) -> str | None:
    """A stored name as a docker ``RepoTags`` entry (``busybox:latest``); None for names with a
    digest or that are not references (docker keeps only REPOSITORY:TAG there)."""
    if is_digest(name):
        return None
    try:
        ref = parse_normalized_named(name)
    except InvalidReferenceError:
        return None
    if ref.digest is not None:
        return None
    return familiarize(parse_docker_ref(name))
