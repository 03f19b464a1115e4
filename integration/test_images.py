"""`pyctl images`, `tag`, `rmi`, `image inspect`, `image prune`: what the user sees, checked
against what ctr sees in the same containerd."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integration import images
from integration.conftest import BUSYBOX_NAME, ImageFactory, PyctlRunner
from integration.helpers import (
    assert_error,
    assert_ok,
    ctr_image_digests,
    header_re,
    json_lines,
    parse_table,
    run_all,
    run_many,
    short,
    unique_id,
    wait_until,
)
from integration.images import Archive
from integration.registry_helpers import chain_ids, snapshot_keys
from integration.testbed import Containerd

IMAGE_HEADER = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "PLATFORM", "SIZE", "BLOB SIZE")
HOST = str(images.HOST_PLATFORM)

# --- a read-only namespace with several kinds of images ------------------------------------------

PARTIAL = "example.test/partial:1"  # multi-platform index, only the host platform imported
APP1 = "example.test/app:1"  # OCI, labels team=blue tier=web
APP2 = "example.test/app:2"  # docker media types
MULTI = "example.test/multi:1"  # multi-platform index, all platforms imported
DANGLING_REPO = "example.test/dangling"  # repo@digest record: no tag
# when each was built (the config's "created"; busybox: images.CREATED, 2024-01-01)
BUILT = {
    PARTIAL: "2024-02-01T00:00:00Z",
    APP1: "2024-03-01T00:00:00.123456789Z",
    APP2: "2024-04-01T00:00:00+02:00",
    MULTI: "2024-05-01T00:00:00Z",
}

# name -> (REPOSITORY, TAG) as shown
SHOWN = {
    PARTIAL: ("example.test/partial", "1"),
    APP1: ("example.test/app", "1"),
    APP2: ("example.test/app", "2"),
    MULTI: ("example.test/multi", "1"),
    BUSYBOX_NAME: ("busybox", "latest"),
}


@dataclass(frozen=True)
class Listing:
    ns: str
    pyctl: PyctlRunner
    digests: dict[str, str]  # name -> target digest, from ctr
    order: list[str]  # names, oldest first
    multi: Archive
    app1: Archive
    dangling: str
    unpacked: frozenset[str]  # MULTI's platforms with a snapshot of their top layer, from ctr

    def run(self, *args: str) -> str:
        return assert_ok(self.pyctl(*args, namespace=self.ns))

    def names_of_rows(self, rows: list[dict[str, str]]) -> list[str]:
        """Map (REPOSITORY, TAG) back to record names."""
        back = {v: k for k, v in SHOWN.items()}
        back[(DANGLING_REPO, "<none>")] = self.dangling
        return [back[(r["REPOSITORY"], r["TAG"])] for r in rows]


@pytest.fixture(scope="module")
def listing(
    containerd: Containerd,
    module_namespace: str,
    module_pyctl: PyctlRunner,
    image_factory: ImageFactory,
    busybox_image: Archive,
) -> Listing:
    ns = module_namespace
    # built (config "created") in the order they are imported, all after busybox
    partial = image_factory(
        PARTIAL, multi_platform=True, variant_content="partial", created=BUILT[PARTIAL]
    )
    containerd.import_image(partial, namespace=ns, all_platforms=False)
    app1 = image_factory(
        APP1, variant_content="app-1", labels={"team": "blue", "tier": "web"}, created=BUILT[APP1]
    )
    containerd.import_image(app1, namespace=ns)
    app2 = image_factory(APP2, variant_content="app-2", media="docker", created=BUILT[APP2])
    containerd.import_image(app2, namespace=ns)
    multi = image_factory(MULTI, multi_platform=True, variant_content="multi", created=BUILT[MULTI])
    containerd.import_image(multi, namespace=ns)
    containerd.import_image(busybox_image, namespace=ns)
    dangling = f"{DANGLING_REPO}@{app2.digest}"
    containerd.ctr("images", "tag", APP2, dangling, namespace=ns)
    digests = ctr_image_digests(containerd, ns)
    order = [PARTIAL, APP1, APP2, MULTI, BUSYBOX_NAME, dangling]
    assert sorted(digests) == sorted(order)
    assert isinstance(multi.image, images.IndexSpec)
    snapshots = set(snapshot_keys(containerd, ns))
    unpacked = frozenset(
        str(m.platform) for m in multi.image.manifests if chain_ids(m.diff_ids)[-1] in snapshots
    )
    assert unpacked == multi_unpacked_by_ctr(containerd, multi.image)
    return Listing(ns, module_pyctl, digests, order, multi, app1, dangling, unpacked)


def multi_unpacked_by_ctr(containerd: Containerd, idx: images.IndexSpec) -> set[str]:
    """The platforms ``ctr images import --all-platforms`` unpacks. containerd 1.x's ctr
    imports in the client and unpacks the host platform alone; 2.x's imports through the
    transfer service, which unpacks every platform of the index (whatever its comment in
    ctr's import.go says), so there no platform is present-but-not-unpacked."""
    if containerd.version >= (2, 0, 0):
        return {str(p) for p in idx.platforms}
    return {HOST}


def test_images_table(listing: Listing) -> None:
    out = listing.run("images")
    lines = out.splitlines()
    assert re.match(header_re(*IMAGE_HEADER), lines[0]), lines[0]
    table = parse_table(out)
    assert table.header == list(IMAGE_HEADER)
    # one row per name and locally present platform, newest built first (busybox, imported
    # last, was built first; the dangling record is APP2's image)
    names = listing.names_of_rows(table.rows)
    assert names == [MULTI, MULTI, MULTI, listing.dangling, APP2, APP1, PARTIAL, BUSYBOX_NAME]
    for name, row in zip(names, table.rows, strict=True):
        # IMAGE ID: the first 12 hex digits of the target digest, as ctr shows it
        assert row["IMAGE ID"] == short(listing.digests[name]), (name, row)
        assert row["CREATED"].endswith(" ago"), row
        assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B", row["SIZE"]), row
        assert re.fullmatch(r"\d+(\.\d+)?[kMG]?B", row["BLOB SIZE"]), row
        assert row["BLOB SIZE"] != "0B"
        if row["PLATFORM"] == HOST or (name == MULTI and row["PLATFORM"] in listing.unpacked):
            assert row["SIZE"] != "0B", f"{name} is unpacked for {row['PLATFORM']}: {row}"
        else:
            assert row["SIZE"] == "0B", f"{name} is not unpacked for {row['PLATFORM']}: {row}"
    single = [r for n, r in zip(names, table.rows, strict=True) if n != MULTI]
    assert {r["PLATFORM"] for r in single} == {HOST}


def test_images_multi_platform_rows(listing: Listing) -> None:
    table = parse_table(listing.run("images", "example.test/multi"))
    idx = listing.multi.index
    assert [r["PLATFORM"] for r in table.rows] == [str(p) for p in idx.platforms]
    assert {r["IMAGE ID"] for r in table.rows} == {short(idx.index_digest)}
    assert listing.digests[MULTI] == idx.index_digest
    # SIZE is what the platform takes unpacked: 0B exactly for those ctr did not unpack
    # (all but the host's with containerd 1.x, none with 2.x: see multi_unpacked_by_ctr)
    sizes = {r["PLATFORM"]: r["SIZE"] for r in table.rows}
    assert HOST in listing.unpacked and sizes[HOST] != "0B"
    assert {p for p, s in sizes.items() if s != "0B"} == listing.unpacked


def test_images_partial_index_lists_present_platform_only(listing: Listing) -> None:
    table = parse_table(listing.run("images", PARTIAL))
    assert [(r["REPOSITORY"], r["PLATFORM"]) for r in table.rows] == [
        ("example.test/partial", HOST)
    ]


def test_images_quiet_unique_ids(listing: Listing) -> None:
    out = listing.run("images", "-q")
    ids = out.split()
    assert len(ids) == len(set(ids)), out  # multi-platform and shared targets once
    assert set(ids) == {short(d) for d in listing.digests.values()}
    full = listing.run("images", "-q", "--no-trunc").split()
    assert set(full) == set(listing.digests.values())
    assert len(full) == len(set(full))


def test_images_digests_column(listing: Listing) -> None:
    out = listing.run("images", "--digests")
    header = out.splitlines()[0]
    assert re.match(header_re("REPOSITORY", "TAG", "DIGEST", *IMAGE_HEADER[2:]), header), header
    table = parse_table(out)
    for name, row in zip(listing.names_of_rows(table.rows), table.rows, strict=True):
        assert row["DIGEST"] == listing.digests[name]
        assert row["IMAGE ID"] == short(listing.digests[name])


def test_images_no_trunc(listing: Listing) -> None:
    table = parse_table(listing.run("images", "--no-trunc"))
    for name, row in zip(listing.names_of_rows(table.rows), table.rows, strict=True):
        assert row["IMAGE ID"] == listing.digests[name]


def test_images_format_json(listing: Listing) -> None:
    objs = json_lines(listing.run("images", "--format", "json"))
    assert len(objs) == 8
    keys = {"Repository", "Tag", "ID", "Digest", "CreatedAt", "CreatedSince", "Platform"}
    keys |= {"Size", "BlobSize"}
    for o in objs:
        assert keys <= set(o), o
    by_name = {(o["Repository"], o["Tag"]): o for o in objs}
    bb = by_name[("busybox", "latest")]
    assert bb["Digest"] == listing.digests[BUSYBOX_NAME]
    assert bb["ID"] == short(listing.digests[BUSYBOX_NAME])
    assert bb["Platform"] == HOST
    # the same keys as {{json .}}
    same = json_lines(listing.run("images", "--format", "{{json .}}"))
    assert [list(o) for o in same] == [list(o) for o in objs]


def test_images_go_templates(listing: Listing) -> None:
    plain, platform, table, empty = (
        assert_ok(p)
        for p in run_all(
            listing.pyctl,
            [
                ("images", "--format", "{{.Repository}}:{{.Tag}}", APP1),
                ("images", "--format", "{{.ID}} {{json .Platform}}", "busybox"),
                ("images", "--format", "table {{.Repository}}\\t{{.Tag}}", "example.test/app"),
                ("images", "--format", "table {{.ID}}", "example.test/none"),
            ],
            namespace=listing.ns,
        )
    )
    assert plain == "example.test/app:1\n"
    assert platform == f'{short(listing.digests[BUSYBOX_NAME])} "{HOST}"\n'
    lines = table.splitlines()
    assert re.match(header_re("REPOSITORY", "TAG"), lines[0]), lines
    assert [ln.split() for ln in lines[1:]] == [
        ["example.test/app", "2"],
        ["example.test/app", "1"],
    ]
    # a table with no rows still has its header
    assert empty.splitlines() == ["IMAGE ID"]


IMAGE_FILTER_CASES: list[tuple[list[str], list[str]]] = [
    (["reference=example.test/app"], [APP2, APP1]),
    (["reference=example.test/app:1"], [APP1]),
    (["reference=*/app:*"], [APP2, APP1]),
    (["dangling=true"], ["DANGLING"]),
    (["dangling=false"], [MULTI, APP2, APP1, PARTIAL, BUSYBOX_NAME]),
    (["before=" + MULTI], ["DANGLING", APP2, APP1, PARTIAL, BUSYBOX_NAME]),
    (["since=" + APP1], [MULTI, "DANGLING", APP2]),
    (["since=" + MULTI], []),
    (["since=busybox", "before=example.test/app:2"], [APP1, PARTIAL]),
    (["since=APP1_ID", "before=MULTI_ID"], ["DANGLING", APP2]),  # image IDs work too
    (["label=team=blue"], [APP1]),
    (["label=team"], [APP1]),
    (["label=team=blue", "label=tier=web"], [APP1]),
    (["label=team=blue", "reference=example.test/app:2"], []),
]


def test_images_filters(listing: Listing) -> None:
    ids = {"APP1_ID": short(listing.digests[APP1]), "MULTI_ID": short(listing.digests[MULTI])}

    def args(filters: list[str]) -> list[str]:
        out = ["images", "--format", "{{.Name}}"]
        for f in filters:
            key, _, value = f.partition("=")
            out += ["-f", f"{key}={ids.get(value, value)}"]
        return out

    def check(expected: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        want = [listing.dangling if n == "DANGLING" else n for n in expected]
        # multi-platform images have one row per platform: one name each
        assert list(dict.fromkeys(assert_ok(proc).splitlines())) == want

    run_many(
        listing.pyctl,
        [(expected, args(filters)) for filters, expected in IMAGE_FILTER_CASES],
        check,
        namespace=listing.ns,
    )


def test_images_repository_argument(listing: Listing) -> None:
    cases = [
        ("example.test/app", [APP2, APP1]),
        ("example.test/app:2", [APP2]),
        ("busybox", [BUSYBOX_NAME]),
        ("docker.io/library/busybox:latest", [BUSYBOX_NAME]),
        ("busybox:other", []),
    ]

    def check(expected: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        table = parse_table(assert_ok(proc))
        assert table.header == list(IMAGE_HEADER)
        assert listing.names_of_rows(table.rows) == expected

    run_many(
        listing.pyctl,
        [
            *((expected, ["images", arg]) for arg, expected in cases),
            ([APP2, APP1], ["image", "ls", "example.test/app"]),
        ],
        check,
        namespace=listing.ns,
    )


def test_images_docker_media_types(listing: Listing, containerd: Containerd) -> None:
    rows = containerd.lines("images", "ls", namespace=listing.ns)
    (ctr_row,) = [r for r in rows if r.split()[0] == APP2]
    assert "application/vnd.docker.distribution.manifest.v2+json" in ctr_row
    table = parse_table(listing.run("images", APP2))
    (row,) = table.rows
    assert (row["REPOSITORY"], row["TAG"]) == ("example.test/app", "2")
    assert row["IMAGE ID"] == short(listing.digests[APP2])
    assert row["PLATFORM"] == HOST and row["SIZE"] != "0B"


def test_images_empty_namespace(pyctl: PyctlRunner, namespace: str) -> None:
    table, quiet = run_all(pyctl, [("images",), ("images", "-q")], namespace=namespace)
    assert re.fullmatch(header_re(*IMAGE_HEADER), assert_ok(table).rstrip("\n"))
    assert assert_ok(quiet) == ""


# --- image inspect ------------------------------------------------------------------------------


def test_image_inspect(listing: Listing) -> None:
    spec = listing.app1.single
    for args in (("inspect", APP1), ("image", "inspect", APP1)):
        (obj,) = json.loads(listing.run(*args))
        assert obj["Id"] == listing.digests[APP1] == spec.manifest.digest
        assert obj["RepoTags"] == ["example.test/app:1"]
        assert obj["RootFS"] == {"Type": "layers", "Layers": list(spec.diff_ids)}
        assert obj["Architecture"] == spec.platform.architecture
        assert obj["Os"] == "linux"
        assert obj["Created"] == BUILT[APP1]
        assert obj["Config"]["Labels"] == {"team": "blue", "tier": "web"}
        assert obj["Config"]["Cmd"] == ["/bin/sh"]
        assert obj["Size"] > 0


def test_image_inspect_by_id_and_short_name(listing: Listing) -> None:
    digest = listing.digests[BUSYBOX_NAME]
    run_many(
        listing.pyctl,
        [
            (q, ("image", "inspect", "--format", "{{.Id}}", q))
            for q in ("busybox", short(digest), digest)
        ],
        lambda _q, proc: _expect(assert_ok(proc), digest + "\n"),
        namespace=listing.ns,
    )


def _expect(got: str, want: str) -> None:
    assert got == want


def test_image_inspect_multi_platform_is_host(listing: Listing) -> None:
    idx = listing.multi.index
    (obj,) = json.loads(listing.run("image", "inspect", MULTI))
    assert obj["Id"] == idx.index_digest
    assert obj["Architecture"] == images.HOST_PLATFORM.architecture
    assert obj["RootFS"]["Layers"] == list(idx.host.diff_ids)
    assert sorted(obj["Platforms"]) == sorted(str(p) for p in idx.platforms)


def test_image_inspect_formats(listing: Listing) -> None:
    out = listing.run("inspect", "--format", "{{json .RepoTags}} {{.Os}}", APP1, BUSYBOX_NAME)
    assert out.splitlines() == ['["example.test/app:1"] linux', '["busybox:latest"] linux']
    (obj,) = json_lines(listing.run("inspect", "--format", "json", APP1))
    assert obj["Id"] == listing.digests[APP1]


def test_image_inspect_unknown(listing: Listing) -> None:
    assert_error(listing.pyctl("image", "inspect", "nope", namespace=listing.ns), '"nope"')
    assert_error(listing.pyctl("inspect", "nope:1", namespace=listing.ns), '"nope:1"')
    # the found ones are printed, the missing one is an error
    proc = listing.pyctl("inspect", "--format", "{{.Id}}", APP1, "nope", namespace=listing.ns)
    assert_error(proc, "nope", stdout=listing.digests[APP1] + "\n")


def test_images_created_is_when_the_image_was_built(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, image_factory: ImageFactory
) -> None:
    """CREATED, {{.CreatedAt}} and the order come from the config's "created" (a re-tag made
    now shows the build time); a config without one falls back to the record's time."""
    old = image_factory("example.test/old:1", variant_content="old", created="2020-06-01T12:00:00Z")
    undated = image_factory("example.test/undated:1", variant_content="undated", created=None)
    containerd.import_image(old, namespace=namespace)
    containerd.import_image(undated, namespace=namespace)
    containerd.ctr(
        "images", "tag", "example.test/old:1", "example.test/retag:1", namespace=namespace
    )
    fmt = "{{.Name}}|{{.CreatedAt}}|{{.CreatedSince}}"
    rows = [
        ln.split("|")
        for ln in assert_ok(pyctl("images", "--format", fmt, namespace=namespace)).splitlines()
    ]
    built = datetime(2020, 6, 1, 12, 0, tzinfo=UTC)
    # newest first: the undated one (made now), then the two names of the 2020 image
    assert [r[0] for r in rows] == [
        "example.test/undated:1",
        "example.test/retag:1",
        "example.test/old:1",
    ]
    for name, created_at, since in rows[1:]:
        assert created_at == built.astimezone().strftime("%Y-%m-%d %H:%M:%S %z ") + (
            built.astimezone().tzname() or ""
        ), name
        assert since.endswith("years ago"), (name, since)
    assert re.fullmatch(r"(Less than a second|\d+ seconds?) ago", rows[0][2]), rows[0]
    table = parse_table(assert_ok(pyctl("images", namespace=namespace)))
    assert {r["CREATED"] for r in table.rows[1:]} == {rows[1][2]}
    # since= / before= compare build times too
    out = assert_ok(
        pyctl(
            "images",
            "--format",
            "{{.Name}}",
            "-f",
            "before=example.test/undated:1",
            namespace=namespace,
        )
    )
    assert out.splitlines() == ["example.test/retag:1", "example.test/old:1"]


# --- config digests: the IMAGE ID crictl and docker print ----------------------------------------


def test_config_digest_names_the_image(listing: Listing) -> None:
    """Wherever an image is named, a prefix of its config digest (>= 4 hex, ``sha256:``
    optional) works as well as one of its target digest."""
    spec = listing.app1.single
    config = spec.config.digest
    assert config != spec.manifest.digest
    for q in (config, config[7:], config[:19], config[7:19], config[7:11]):
        out = listing.run("inspect", "--format", "{{.Id}} {{.ConfigDigest}} {{.Name}}", q)
        assert out == f"{spec.manifest.digest} {config} {APP1}\n", q
    # the images table shows it as {{.ConfigDigest}}, per platform row
    rows = json_lines(listing.run("images", "--format", "json"))
    by_name = {(r["Name"], r["Platform"]): r["ConfigDigest"] for r in rows}
    assert by_name[(APP1, HOST)] == config
    idx = listing.multi.index
    for m in idx.manifests:
        assert by_name[(MULTI, str(m.platform))] == m.config.digest
    # a non-host platform's config names the whole index image
    other = next(m for m in idx.manifests if m.platform != images.HOST_PLATFORM)
    out = listing.run("inspect", "--format", "{{.Id}}", other.config.digest[7:19])
    assert out == idx.index_digest + "\n"
    out = listing.run("images", "--format", "{{.ConfigDigest}}", APP1)
    assert out == config + "\n"
    # images filters take it too
    since = listing.run("images", "--format", "{{.Name}}", "-f", f"since={config[7:19]}")
    by_id = listing.run("images", "--format", "{{.Name}}", "-f", f"since={short(spec.digest)}")
    assert since == by_id and APP1 not in since.split() and MULTI in since.split()


def test_config_digest_ids_for_tag_rmi_save_ps(
    pyctl: PyctlRunner,
    containerd: Containerd,
    namespace: str,
    busybox_image: Archive,
    tmp_path: Path,
) -> None:
    spec = busybox_image.single
    containerd.import_image(busybox_image, namespace=namespace)
    config_id = spec.config.digest[7:19]  # what `crictl images` / `docker images` show
    assert_ok(pyctl("tag", config_id, "example.test/by-config:1", namespace=namespace))
    assert ctr_image_digests(containerd, namespace) == {
        BUSYBOX_NAME: spec.manifest.digest,
        "example.test/by-config:1": spec.manifest.digest,
    }
    # save by config ID: the archive holds the image, ctr imports it elsewhere
    out = tmp_path / "by-config.tar"
    assert_ok(pyctl("save", "-o", str(out), "sha256:" + config_id, namespace=namespace))
    other = f"{namespace}-copy"
    try:
        containerd.ctr("images", "import", str(out), namespace=other)
        assert set(ctr_image_digests(containerd, other).values()) == {spec.manifest.digest}
    finally:
        containerd.clean_namespace(other)
    # ps --filter ancestor= by config ID
    cid = unique_id("by-config")
    containerd.ctr("containers", "create", BUSYBOX_NAME, cid, namespace=namespace)
    ps = pyctl("ps", "-aq", "--no-trunc", "--filter", f"ancestor={config_id}", namespace=namespace)
    assert assert_ok(ps) == cid + "\n"
    # rmi by config ID: refused while a container uses it, and while two names share it
    assert_error(pyctl("rmi", config_id, namespace=namespace), f"used by container {cid[:12]}")
    containerd.ctr("containers", "rm", cid, namespace=namespace)
    assert_error(pyctl("rmi", config_id, namespace=namespace), "referenced by 2 names")
    out = assert_ok(pyctl("rmi", "-f", spec.config.digest, namespace=namespace))
    assert sorted(out.splitlines()) == [
        f"Untagged: {BUSYBOX_NAME}",
        "Untagged: example.test/by-config:1",
    ]
    assert containerd.images(namespace) == []


def test_config_digest_is_the_cri_image_id(
    pyctl: PyctlRunner, containerd: Containerd, k8s_ns: str, busybox_image: Archive
) -> None:
    """The CRI plugin names its ID record ``sha256:<config>`` (what crictl shows as IMAGE ID):
    pyctl's ConfigDigest is that name, and the ID as crictl prints it removes the image."""
    containerd.import_image(busybox_image, namespace=k8s_ns)
    wait_until(
        "the CRI plugin adds its sha256:<config> record",
        lambda: any(n.startswith("sha256:") for n in containerd.images(k8s_ns)),
    )
    (cri_id,) = [n for n in containerd.images(k8s_ns) if n.startswith("sha256:")]
    shown = assert_ok(pyctl("images", "--format", "{{.ConfigDigest}}", namespace=k8s_ns))
    assert shown == cri_id + "\n"
    out = assert_ok(pyctl("rmi", "-f", cri_id[7:20], namespace=k8s_ns))
    assert f"Untagged: {BUSYBOX_NAME}" in out.splitlines()
    assert BUSYBOX_NAME not in containerd.images(k8s_ns)


# --- tag --------------------------------------------------------------------------------------


@pytest.fixture
def bb(containerd: Containerd, namespace: str, busybox_image: Archive) -> str:
    """busybox imported into the test's namespace; returns its target digest."""
    containerd.import_image(busybox_image, namespace=namespace)
    return ctr_image_digests(containerd, namespace)[BUSYBOX_NAME]


def test_tag_normalizes_names(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, bb: str
) -> None:
    assert (
        assert_ok(pyctl("tag", "busybox", "myreg.local:5000/team/bb:v1", namespace=namespace)) == ""
    )
    assert assert_ok(pyctl("tag", "busybox", "foo", namespace=namespace)) == ""
    assert assert_ok(pyctl("image", "tag", BUSYBOX_NAME, "bar:1", namespace=namespace)) == ""
    assert assert_ok(pyctl("tag", short(bb), "example.test/by-id", namespace=namespace)) == ""
    digests = ctr_image_digests(containerd, namespace)
    assert digests == {
        BUSYBOX_NAME: bb,
        "myreg.local:5000/team/bb:v1": bb,
        "docker.io/library/foo:latest": bb,
        "docker.io/library/bar:1": bb,
        "example.test/by-id:latest": bb,
    }
    # and pyctl lists them under their familiar names
    out = assert_ok(
        pyctl("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", namespace=namespace)
    )
    assert sorted(out.splitlines()) == sorted(
        f"{n} {short(bb)}"
        for n in (
            "busybox:latest",
            "myreg.local:5000/team/bb:v1",
            "foo:latest",
            "bar:1",
            "example.test/by-id:latest",
        )
    )


def test_tag_moves_existing_name(
    pyctl: PyctlRunner,
    containerd: Containerd,
    namespace: str,
    bb: str,
    image_factory: ImageFactory,
) -> None:
    other = image_factory("example.test/other:1", variant_content="tag-move")
    containerd.import_image(other, namespace=namespace)
    assert assert_ok(pyctl("tag", "busybox", "example.test/other:1", namespace=namespace)) == ""
    assert ctr_image_digests(containerd, namespace)["example.test/other:1"] == bb


def test_tag_errors(pyctl: PyctlRunner, containerd: Containerd, namespace: str, bb: str) -> None:
    before = ctr_image_digests(containerd, namespace)
    assert_error(pyctl("tag", "nope", "foo", namespace=namespace), '"nope"')
    assert_error(pyctl("tag", "busybox", "Bad:Tag:x", namespace=namespace), "Bad:Tag:x")
    assert_error(pyctl("tag", "busybox", "foo@sha256:12", namespace=namespace), "foo@sha256:12")
    # a NAME@DIGEST record would claim a digest it does not have
    other = "sha256:" + "ab" * 32
    assert_error(pyctl("tag", "busybox", f"foo@{other}", namespace=namespace), "digest")
    assert ctr_image_digests(containerd, namespace) == before


# --- rmi --------------------------------------------------------------------------------------


def _content(containerd: Containerd, namespace: str) -> set[str]:
    return {ln.split()[0] for ln in containerd.lines("content", "ls", namespace=namespace)[1:]}


def test_rmi_by_name(pyctl: PyctlRunner, containerd: Containerd, namespace: str, bb: str) -> None:
    containerd.ctr("images", "tag", BUSYBOX_NAME, "example.test/keep:1", namespace=namespace)
    out = assert_ok(pyctl("rmi", "busybox", namespace=namespace))
    assert out == f"Untagged: {BUSYBOX_NAME}\n"
    assert containerd.images(namespace) == ["example.test/keep:1"]
    assert bb in _content(containerd, namespace)  # still referenced by the other name
    out = assert_ok(pyctl("image", "rm", "example.test/keep:1", namespace=namespace))
    assert out == "Untagged: example.test/keep:1\n"
    assert containerd.images(namespace) == []
    # containerd collected the content synchronously
    assert bb not in _content(containerd, namespace)


def test_rmi_by_id(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, image_factory: ImageFactory
) -> None:
    """Short IDs (>= 4 hex digits), full digests and bare hex digests, in one call."""
    names = [f"example.test/rmi-id-{i}:1" for i in range(4)]
    digests = []
    for i, name in enumerate(names):
        arc = image_factory(name, variant_content=f"rmi-by-id-{i}")
        containerd.import_image(arc, namespace=namespace)
        digests.append(arc.digest)
    assert sorted(ctr_image_digests(containerd, namespace).values()) == sorted(digests)
    queries = [digests[0][7:11], short(digests[1]), digests[2], digests[3][7:]]
    out = assert_ok(pyctl("rmi", *queries, namespace=namespace))
    assert out.splitlines() == [f"Untagged: {n}" for n in names]
    assert containerd.images(namespace) == []


def test_rmi_several(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, bb: str, image_factory: ImageFactory
) -> None:
    other = image_factory("example.test/rmi-several:1", variant_content="rmi-several")
    containerd.import_image(other, namespace=namespace)
    out = assert_ok(pyctl("rmi", "busybox", "example.test/rmi-several:1", namespace=namespace))
    assert out.splitlines() == [
        f"Untagged: {BUSYBOX_NAME}",
        "Untagged: example.test/rmi-several:1",
    ]
    assert containerd.images(namespace) == []


def test_rmi_id_of_image_with_several_names(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, bb: str
) -> None:
    """By ID, an image with several names is refused (like docker) unless -f removes them all."""
    containerd.ctr("images", "tag", BUSYBOX_NAME, "example.test/second:1", namespace=namespace)
    assert_error(pyctl("rmi", short(bb), namespace=namespace), "referenced by 2 names")
    assert sorted(containerd.images(namespace)) == sorted([BUSYBOX_NAME, "example.test/second:1"])
    out = assert_ok(pyctl("rmi", "-f", short(bb), namespace=namespace))
    assert sorted(out.splitlines()) == sorted(
        [f"Untagged: {BUSYBOX_NAME}", "Untagged: example.test/second:1"]
    )
    assert containerd.images(namespace) == []
    assert bb not in _content(containerd, namespace)


def test_rmi_unknown(pyctl: PyctlRunner, containerd: Containerd, namespace: str, bb: str) -> None:
    assert_error(pyctl("rmi", "nope", namespace=namespace), '"nope"')
    assert_error(pyctl("image", "rm", "example.test/nope:1", namespace=namespace), "nope")
    # too short to be an ID: taken as a name
    assert_error(pyctl("rmi", bb[7:10], namespace=namespace), bb[7:10])
    assert containerd.images(namespace) == [BUSYBOX_NAME]
    # the known one is removed, the unknown one reported, exit 1
    proc = pyctl("rmi", "busybox", "nope", namespace=namespace)
    assert_error(proc, '"nope"', stdout=f"Untagged: {BUSYBOX_NAME}\n")
    assert containerd.images(namespace) == []


def test_rmi_refuses_image_in_use(
    pyctl: PyctlRunner, containerd: Containerd, namespace: str, bb: str
) -> None:
    cid = unique_id("rmi-user")
    containerd.ctr("containers", "create", BUSYBOX_NAME, cid, "sleep", "10", namespace=namespace)
    containerd.ctr("images", "tag", BUSYBOX_NAME, "example.test/alias:1", namespace=namespace)
    msg = assert_error(pyctl("rmi", "busybox", namespace=namespace), cid[:12], "-f")
    assert "busybox" in msg
    assert_error(pyctl("rmi", short(bb), namespace=namespace), cid[:12])
    assert sorted(containerd.images(namespace)) == [
        "docker.io/library/busybox:latest",
        "example.test/alias:1",
    ]
    # another name of the same image is not in use: untagging it is fine
    out = assert_ok(pyctl("rmi", "example.test/alias:1", namespace=namespace))
    assert out == "Untagged: example.test/alias:1\n"
    out = assert_ok(pyctl("rmi", "-f", "busybox", namespace=namespace))
    assert out == f"Untagged: {BUSYBOX_NAME}\n"
    assert containerd.images(namespace) == []
    assert containerd.lines("containers", "ls", "-q", namespace=namespace) == [cid]


# --- image prune --------------------------------------------------------------------------------


def test_image_prune(
    pyctl: PyctlRunner,
    containerd: Containerd,
    namespace: str,
    bb: str,
    image_factory: ImageFactory,
) -> None:
    unused = image_factory("example.test/unused:1", variant_content="prune")
    containerd.import_image(unused, namespace=namespace)
    dangling = f"example.test/dangling@{unused.digest}"
    containerd.ctr("images", "tag", "example.test/unused:1", dangling, namespace=namespace)
    cid = unique_id("prune-user")
    containerd.ctr("containers", "create", BUSYBOX_NAME, cid, "true", namespace=namespace)

    # no terminal to confirm on: refuses without -f
    assert_error(pyctl("image", "prune", namespace=namespace), "-f")
    assert len(containerd.images(namespace)) == 3

    # on a terminal, answering "n" removes nothing and is not an error (docker's exit 0)
    main_fd, sub_fd = os.openpty()
    try:
        os.write(main_fd, b"n\n")
        proc = subprocess.run(
            pyctl.argv("-n", namespace, "image", "prune"),
            stdin=sub_fd,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **pyctl.base_env},
        )
    finally:
        os.close(sub_fd)
        os.close(main_fd)
    assert proc.returncode == 0, proc
    assert "Are you sure you want to continue?" in proc.stdout and proc.stderr == ""
    assert len(containerd.images(namespace)) == 3

    out = assert_ok(pyctl("image", "prune", "-f", namespace=namespace))
    assert f"untagged: {dangling}" in out.lower().splitlines()
    assert sorted(containerd.images(namespace)) == [BUSYBOX_NAME, "example.test/unused:1"]

    assert out.splitlines()[-1].startswith("Total reclaimed space: ")

    out = assert_ok(pyctl("image", "prune", "-a", "-f", namespace=namespace))
    assert "untagged: example.test/unused:1" in out.lower().splitlines()
    assert BUSYBOX_NAME not in out  # used by a container
    # the unused image's own layer and config were garbage-collected
    last = out.splitlines()[-1]
    assert last.startswith("Total reclaimed space: ") and last != "Total reclaimed space: 0B"
    assert containerd.images(namespace) == [BUSYBOX_NAME]


# --- k8s.io: the CRI plugin's extra records ------------------------------------------------------


def test_k8s_io_folds_cri_records(
    pyctl: PyctlRunner, containerd: Containerd, k8s_ns: str, busybox_image: Archive
) -> None:
    spec = busybox_image.single
    containerd.import_image(busybox_image, namespace=k8s_ns)
    config_name = spec.config.digest
    wait_until(
        "CRI plugin adds the sha256:<config> record",
        lambda: config_name in containerd.images(k8s_ns),
    )
    digests = ctr_image_digests(containerd, k8s_ns)
    assert digests == {BUSYBOX_NAME: spec.manifest.digest, config_name: spec.manifest.digest}

    table = parse_table(assert_ok(pyctl("-n", k8s_ns, "images")))
    assert [(r["REPOSITORY"], r["TAG"], r["IMAGE ID"]) for r in table.rows] == [
        ("busybox", "latest", short(spec.manifest.digest))
    ]
    table = parse_table(assert_ok(pyctl("-n", k8s_ns, "images", "-a")))
    assert sorted((r["REPOSITORY"], r["TAG"]) for r in table.rows) == [
        ("<none>", "<none>"),
        ("busybox", "latest"),
    ]
    assert {r["IMAGE ID"] for r in table.rows} == {short(spec.manifest.digest)}
    names = assert_ok(pyctl("-n", k8s_ns, "images", "-a", "--format", "{{.Name}}"))
    assert sorted(names.splitlines()) == sorted([BUSYBOX_NAME, config_name])
    assert assert_ok(pyctl("-n", k8s_ns, "images", "-q")) == short(spec.manifest.digest) + "\n"


APP = "harbor.local:8443/library/app:1"


def test_k8s_io_cri_records_are_part_of_the_image(
    pyctl: PyctlRunner, containerd: Containerd, k8s_ns: str, busybox_image: Archive
) -> None:
    """The CRI plugin's ``sha256:<config>`` and ``repo@sha256:…`` records are never shown as
    names (images, namespace ls, inspect, completion, rmi's name count) and go with the
    image's last tag (refused while a container uses it)."""
    spec = busybox_image.single
    digest, config_name = spec.manifest.digest, spec.config.digest
    by_digest = f"harbor.local:8443/library/app@{digest}"
    containerd.import_image(busybox_image, namespace=k8s_ns)
    containerd.ctr("images", "tag", BUSYBOX_NAME, APP, namespace=k8s_ns)
    containerd.ctr("images", "tag", BUSYBOX_NAME, by_digest, namespace=k8s_ns)
    wait_until(
        "CRI plugin adds the sha256:<config> record",
        lambda: config_name in containerd.images(k8s_ns),
    )
    assert sorted(containerd.images(k8s_ns)) == sorted([BUSYBOX_NAME, APP, by_digest, config_name])

    def shown() -> list[str]:
        return assert_ok(pyctl("images", "--format", "{{.Name}}", namespace=k8s_ns)).split()

    def k8s_count() -> str:
        rows = json_lines(assert_ok(pyctl("namespace", "ls", "--format", "json")))
        return next(r["Images"] for r in rows if r["Name"] == k8s_ns)

    assert sorted(shown()) == sorted([BUSYBOX_NAME, APP]) and k8s_count() == "2"
    (obj,) = json.loads(assert_ok(pyctl("inspect", APP, namespace=k8s_ns)))
    assert obj["RepoTags"] == ["busybox:latest", APP]
    assert obj["RepoDigests"] == [f"busybox@{digest}", by_digest]
    # by the CRI's ID record: the image, shown by a name an operator sees
    (obj,) = json.loads(assert_ok(pyctl("inspect", config_name, namespace=k8s_ns)))
    assert obj["Name"] in (BUSYBOX_NAME, APP) and obj["RepoTags"] == ["busybox:latest", APP]
    comp = pyctl(
        namespace=k8s_ns,
        env={"_PYCTL_COMPLETE": "bash_complete", "COMP_WORDS": "pyctl rmi ", "COMP_CWORD": "2"},
    )
    offered = {ln.split(",", 1)[1] for ln in assert_ok(comp).splitlines()}
    assert offered == {BUSYBOX_NAME, "busybox:latest", APP}
    # the ID is shared by two names (not four)
    assert_error(
        pyctl("rmi", short(digest), namespace=k8s_ns),
        f"referenced by 2 names ({BUSYBOX_NAME}, {APP})",
    )

    # not the last tag: only that name goes
    assert assert_ok(pyctl("rmi", "busybox", namespace=k8s_ns)) == f"Untagged: {BUSYBOX_NAME}\n"
    assert sorted(containerd.images(k8s_ns)) == sorted([APP, by_digest, config_name])

    # the last tag, while a container uses the image: refused, nothing removed
    cid = unique_id("cri-user")
    containerd.ctr("containers", "create", APP, cid, "true", namespace=k8s_ns)
    msg = assert_error(pyctl("rmi", APP, namespace=k8s_ns), cid[:12], "-f")
    assert APP in msg
    assert sorted(containerd.images(k8s_ns)) == sorted([APP, by_digest, config_name])
    containerd.ctr("containers", "rm", cid, namespace=k8s_ns)

    # the last tag: the CRI's records go with it and the content is garbage-collected
    assert assert_ok(pyctl("rmi", APP, namespace=k8s_ns)) == f"Untagged: {APP}\n"
    assert containerd.images(k8s_ns) == []
    blobs = {ln.split()[0] for ln in containerd.lines("content", "ls", namespace=k8s_ns)[1:]}
    assert digest not in blobs and config_name not in blobs
    assert shown() == [] and k8s_count() == "0"

    # by ID (crictl's, the config digest): one name and the CRI's records, no -f needed
    containerd.import_image(busybox_image, namespace=k8s_ns)
    wait_until("the CRI record", lambda: config_name in containerd.images(k8s_ns))
    out = assert_ok(pyctl("rmi", config_name[7:19], namespace=k8s_ns))
    assert out == f"Untagged: {BUSYBOX_NAME}\n"
    assert containerd.images(k8s_ns) == []
