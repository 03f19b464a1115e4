"""Local image operations: list, tag, remove, inspect, prune."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pyctl.containerd import images
from pyctl.containerd.client import Client, ContainerdNotFound
from pyctl.containerd.images import ImageRecord
from pyctl.errors import (
    InvalidArgumentError,
    InvalidReferenceError,
    PyctlError,
)
from pyctl.ops.catalog import (
    CRI_NAMESPACE,
    Catalog,
    ResolvedImage,
    created_of,
    find_records,
    is_companion,
    is_config_name,
    is_cri_alias,
    require_records,
    visible_records,
    whole_image,
)
from pyctl.reference import parse_docker_ref, parse_normalized_named, parse_repo_tag
from pyctl.render import go_time
from pyctl.results.images import Image, ImagePlatform

CRI_PINNED_LABEL = "io.cri-containerd.pinned"


def repo_tag(name: str) -> tuple[str, str]:
    """REPOSITORY and TAG of a record name as docker/nerdctl show them (``<none>`` if absent)."""
    repo, tag = parse_repo_tag(name)
    return repo or "<none>", tag or "<none>"


# filters ----------------------------------------------------------------------------------------


class ImageFilter(NamedTuple):
    key: str
    value: str


_FILTER_KEYS = ("reference", "dangling", "before", "since", "label")


def parse_filters(specs: Sequence[str]) -> list[ImageFilter]:
    out = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if not sep or key not in _FILTER_KEYS:
            raise InvalidArgumentError(
                f'invalid filter "{spec}": use KEY=VALUE with KEY one of {", ".join(_FILTER_KEYS)}'
            )
        if key == "dangling" and value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgumentError(f'invalid filter "{spec}": dangling takes true or false')
        out.append(ImageFilter(key, value))
    return out


def _glob(pattern: str) -> re.Pattern[str]:
    # docker's path.Match: "*" and "?" do not cross "/"
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
    return re.compile("^" + "".join(out) + "$")


def _reference_matches(pattern: str, name: str) -> bool:
    repo, tag = repo_tag(name)
    rx = _glob(pattern)
    candidates = {repo, f"{repo}:{tag}", name}
    if "@" in name:
        candidates.add(name.split("@", 1)[0])
    return any(rx.match(c) for c in candidates) or fnmatch.fnmatchcase(name, pattern)


def _labels(r: ResolvedImage) -> dict[str, str]:
    labels: dict[str, str] = {}
    d = r.default()
    if d is not None:
        raw = d.config.config.get("Labels") or {}
        if isinstance(raw, dict):
            labels.update({str(k): str(v) for k, v in raw.items()})
    labels.update(r.record.labels)
    return labels


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _created(r: ResolvedImage) -> datetime:
    return r.created or _EPOCH


def _filter_fn(
    filters: Sequence[ImageFilter], all_records: Sequence[ImageRecord], catalog: Catalog
) -> Callable[[ResolvedImage], bool]:
    pivots = {
        f.value: _created(
            catalog.resolve(require_records(all_records, f.value, catalog)[:1], sizes=False)[0]
        )
        for f in filters
        if f.key in ("before", "since")
    }

    def matches(f: ImageFilter, r: ResolvedImage) -> bool:
        if f.key == "reference":
            return _reference_matches(f.value, r.record.name)
        if f.key == "dangling":
            dangling = repo_tag(r.record.name)[1] == "<none>"
            return dangling == (f.value.lower() in ("true", "1"))
        if f.key == "before":
            return _created(r) < pivots[f.value]
        if f.key == "since":
            return _created(r) > pivots[f.value]
        key, has_value, value = f.value.partition("=")
        labels = _labels(r)
        return key in labels and (not has_value or labels[key] == value)

    return lambda r: all(matches(f, r) for f in filters)


# images -----------------------------------------------------------------------------------------


def list_images(
    client: Client,
    snapshotter: str,
    *,
    repository: str | None = None,
    show_all: bool = False,
    filters: Sequence[str] = (),
) -> list[Image]:
    """The images of `pyctl images`, newest built first (CRI extra records folded in k8s.io
    unless ``show_all``), each with its locally present platforms."""
    parsed_filters = parse_filters(filters)
    catalog = Catalog(client, snapshotter)
    records = catalog.records()
    shown = records if show_all else visible_records(records, client.namespace)
    if repository:
        shown = [r for r in shown if _repository_matches(repository, r.name)]
    resolved = catalog.resolve(shown, sizes=False)
    keep = _filter_fn(parsed_filters, records, catalog)
    resolved = [r for r in resolved if keep(r)]
    usage = catalog.fill_sizes(resolved)
    resolved.sort(key=lambda r: (_created(r), r.record.name), reverse=True)
    out: list[Image] = []
    for r in resolved:
        default = r.default()
        out.append(
            Image(
                name=r.record.name,
                digest=r.record.target.digest,
                media_type=r.record.target.media_type,
                target_size=r.record.target.size,
                created=r.created,
                labels=dict(r.record.labels),
                platforms=tuple(
                    ImagePlatform(
                        platform=str(p.platform),
                        manifest_digest=p.manifest_desc.digest,
                        config_digest=p.manifest.config.digest,
                        created=created_of(p, r.record),  # when this platform was built
                        size=sum(usage.get(c, 0) for c in p.chain),
                        blob_size=p.blob_size,
                    )
                    for p in r.platforms
                ),
                config_digest=default.manifest.config.digest if default else "",
                size=r.size,
            )
        )
    return out


def _repository_matches(arg: str, name: str) -> bool:
    """`pyctl images REPO[:TAG]` matches like docker: the repository, and the tag if given."""
    try:
        want = parse_normalized_named(arg)
    except InvalidReferenceError:
        return _reference_matches(arg, name)
    try:
        have = parse_normalized_named(name)
    except InvalidReferenceError:
        return False
    if want.name != have.name:
        return False
    return want.tag is None or want.tag == have.tag


def tag(client: Client, source: str, target: str) -> None:
    catalog = Catalog(client)
    records = catalog.records()
    src = require_records(records, source, catalog)[0]
    try:
        ref = parse_docker_ref(target)
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"tag {target}: {exc}") from None
    if ref.digest is not None:
        # A NAME@DIGEST record must target that digest; docker refuses too.
        raise InvalidReferenceError(
            f"tag {target}: refusing to create a tag with a digest reference "
            "(give REPOSITORY[:TAG])"
        )
    images.put(client, ImageRecord(name=str(ref), target=src.target, labels={}))


def remove(
    client: Client, queries: Sequence[str], *, force: bool = False
) -> tuple[list[str], list[str]]:
    """Remove the named images; returns (removed names, error messages).

    In k8s.io the CRI plugin's extra records of an image go with its last name, and an ID or
    digest names the whole image (its extra records are not names that make it ambiguous)."""
    catalog = Catalog(client)
    records = catalog.records()
    ns = client.namespace
    from pyctl.containerd import containers  # only removals need them

    users: dict[str, list[str]] = {}
    for c in containers.list_containers(client):
        users.setdefault(c.image, []).append(c.id)
    removed: list[str] = []
    errors: list[str] = []
    plan: list[str] = []
    for query in queries:
        found = find_records(records, query, catalog)
        if not found:
            errors.append(f'no such image "{query}" (see pyctl images)')
            continue
        found = whole_image(records, found, ns)
        going = [*found, *_companions_left_behind(ns, records, found, plan)]
        in_use = [(r.name, cid) for r in going for cid in users.get(r.name, [])]
        if in_use and not force:
            name, cid = in_use[0]
            errors.append(
                f"cannot remove {query}: image {name} is used by container {cid[:12]} "
                "(remove the container first, or use -f)"
            )
            continue
        named = [r.name for r in found if not is_companion(ns, r.name)]
        if len(named) > 1 and not force:
            errors.append(
                f"cannot remove {query}: the image is referenced by {len(named)} names "
                f"({', '.join(named)}): remove them by name, or use -f to remove them all"
            )
            continue
        for r in going:
            if r.name not in plan:
                plan.append(r.name)
    shown = {r.name for r in visible_records(records, ns)}
    for i, name in enumerate(plan):
        try:
            images.delete(client, name, sync=i == len(plan) - 1)
        except ContainerdNotFound:
            continue
        except PyctlError as exc:
            errors.append(f"cannot remove {name}: {exc}")
            continue
        if name in shown:  # a CRI extra record is reported only where it was the image's name
            removed.append(name)
    return removed, errors


def _companions_left_behind(
    namespace: str,
    records: Sequence[ImageRecord],
    found: Sequence[ImageRecord],
    planned: Sequence[str],
) -> list[ImageRecord]:
    """The CRI plugin's extra records of the images in ``found`` that would have no name
    left once ``found`` and ``planned`` are removed (empty outside k8s.io)."""
    if namespace != CRI_NAMESPACE:
        return []
    gone = {*planned, *(r.name for r in found)}
    out: list[ImageRecord] = []
    for target in dict.fromkeys(r.target.digest for r in found):
        same = [r for r in records if r.target.digest == target and r.name not in gone]
        if all(is_cri_alias(r.name) for r in same):
            out.extend(same)
    return out


def prune(client: Client, *, all_unused: bool) -> tuple[list[str], int]:
    """Remove dangling images (no tag), or with ``all_unused`` every image no container uses.
    Images the CRI plugin pins (sandbox images) are kept. Returns the removed names and the
    bytes of content the garbage collector freed."""
    from pyctl.containerd import containers, content

    records = images.list_records(client)
    used = {c.image for c in containers.list_containers(client)}
    used_targets = {r.target.digest for r in records if r.name in used}
    pinned = {r.target.digest for r in records if r.labels.get(CRI_PINNED_LABEL) == "pinned"}
    victims = []
    for r in visible_records(records, client.namespace):
        if r.target.digest in pinned or r.name in used or r.target.digest in used_targets:
            continue
        if all_unused or repo_tag(r.name)[1] == "<none>":
            victims.append(r.name)
    if not victims:
        return [], 0
    before = sum(i.size for i in content.list_infos(client))
    removed, _errors = remove(client, victims, force=True)
    after = sum(i.size for i in content.list_infos(client))
    return removed, max(before - after, 0)


# inspect ----------------------------------------------------------------------------------------


def inspect_image(
    catalog: Catalog, r: ResolvedImage, all_records: Sequence[ImageRecord]
) -> dict[str, Any]:
    same = [x for x in all_records if x.target.digest == r.record.target.digest]
    repo_tags, repo_digests = [], []
    for x in same:
        if is_config_name(x.name):  # the CRI plugin's ID record: not a repository
            continue
        try:
            ref = parse_normalized_named(x.name)
        except InvalidReferenceError:
            continue
        if ref.tag:
            repo_tags.append(f"{ref.familiar_name}:{ref.tag}")
        repo_digests.append(f"{ref.familiar_name}@{r.record.target.digest}")
    d = r.default()
    raw = d.config.raw if d else {}
    return {
        "Id": r.record.target.digest,
        "ConfigDigest": d.manifest.config.digest if d else "",
        "RepoTags": sorted(set(repo_tags)),
        "RepoDigests": sorted(set(repo_digests)),
        "Parent": "",
        "Comment": raw.get("comment", ""),
        "Created": raw.get("created", ""),
        "Author": raw.get("author", ""),
        "Config": dict(d.config.config) if d else {},
        "Architecture": d.platform.architecture if d else "",
        "Variant": d.platform.variant if d and d.platform.variant else "",
        "Os": d.platform.os if d else "",
        "Size": r.size,
        "RootFS": {"Type": "layers", "Layers": list(d.config.diff_ids) if d else []},
        "Metadata": {"LastTagTime": go_time(r.record.updated_at) if r.record.updated_at else ""},
        "Descriptor": r.record.target.to_json(),
        "Platforms": [str(p.platform) for p in r.platforms],
        "Name": r.record.name,
        "Labels": dict(r.record.labels),
    }


def inspect_images(
    client: Client, snapshotter: str, queries: Sequence[str]
) -> tuple[list[Any], list[str]]:
    catalog = Catalog(client, snapshotter)
    records = catalog.records()
    chosen: list[ImageRecord] = []
    missing: list[str] = []
    for q in queries:
        found = find_records(records, q, catalog)
        if not found:
            missing.append(q)
        else:  # the image by a name an operator sees (not a CRI extra record)
            found = whole_image(records, found, client.namespace)
            shown = [r for r in found if not is_companion(client.namespace, r.name)]
            chosen.append((shown or found)[0])
    resolved = catalog.resolve(chosen)
    return [inspect_image(catalog, r, records) for r in resolved], missing
