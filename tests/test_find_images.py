"""How an operator's word for an image finds its records: names, digests, and ID prefixes of
the target digest or of the config digest (what crictl and docker print as IMAGE ID)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pyctl.containerd.images import ImageRecord
from pyctl.errors import NotFoundError, PyctlError
from pyctl.oci import Descriptor
from pyctl.ops.catalog import Catalog, find_records, require_records

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(prefix: str) -> str:
    return "sha256:" + (prefix + "0" * 64)[:64]


def record(name: str, target: str) -> ImageRecord:
    return ImageRecord(name=name, target=Descriptor(MANIFEST, target, 100))


class FakeCatalog(Catalog):
    """A catalog whose manifests are known without containerd: target -> config digests."""

    def __init__(self, configs: dict[str, frozenset[str]]) -> None:
        self.configs = configs
        self.asked = 0

    def config_digests(self, records: Sequence[ImageRecord]) -> dict[str, frozenset[str]]:
        self.asked += 1
        return {r.target.digest: self.configs.get(r.target.digest, frozenset()) for r in records}


A, A_CONFIG = digest("aaaa1111"), digest("c0ffee11")
B, B_CONFIG = digest("bbbb2222"), digest("aaaa9999")  # B's config shares A's first 4 digits
RECORDS = [
    record("docker.io/library/app:1", A),
    record("docker.io/library/app:latest", A),
    record("example.test/other:2", B),
]
CATALOG = {A: frozenset({A_CONFIG}), B: frozenset({B_CONFIG})}


@pytest.mark.parametrize("query", ["c0ffee11", "c0ff", "sha256:c0ffee11", A_CONFIG, "C0FFEE"])
def test_config_digest_prefix_finds_every_name_of_the_image(query: str) -> None:
    found = find_records(RECORDS, query, FakeCatalog(dict(CATALOG)))
    assert [r.name for r in found] == ["docker.io/library/app:1", "docker.io/library/app:latest"]


def test_target_prefix_still_works_and_without_a_catalog_configs_are_not_read() -> None:
    assert [r.name for r in find_records(RECORDS, "bbbb22")] == ["example.test/other:2"]
    assert find_records(RECORDS, "c0ffee11") == []


def test_a_prefix_of_one_images_target_and_anothers_config_is_ambiguous() -> None:
    with pytest.raises(PyctlError, match=r'"aaaa" matches 2 different images'):
        find_records(RECORDS, "aaaa", FakeCatalog(dict(CATALOG)))
    # more digits decide
    assert [r.target.digest for r in find_records(RECORDS, "aaaa11", FakeCatalog(CATALOG))] == [
        A,
        A,
    ]
    assert [r.name for r in find_records(RECORDS, "aaaa99", FakeCatalog(CATALOG))] == [
        "example.test/other:2"
    ]


def test_names_are_found_without_reading_manifests() -> None:
    catalog = FakeCatalog(dict(CATALOG))
    assert [r.name for r in find_records(RECORDS, "app:1", catalog)] == ["docker.io/library/app:1"]
    assert [r.name for r in find_records(RECORDS, "example.test/other:2", catalog)] == [
        "example.test/other:2"
    ]
    assert catalog.asked == 0


def test_too_short_or_not_hex_is_a_name() -> None:
    catalog = FakeCatalog(dict(CATALOG))
    assert find_records(RECORDS, "c0f", catalog) == []
    assert find_records(RECORDS, "c0ffee-11", catalog) == []
    with pytest.raises(NotFoundError, match=r'no such image "c0f" \(see pyctl images\)'):
        require_records(RECORDS, "c0f", catalog)
