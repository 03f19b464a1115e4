"""`pyctl pull` / `push` through a fault-injecting proxy: what networks and broken registries
do, and what pyctl makes of it. A transient fault is retried (or the download resumed) and the
pull succeeds; a permanent one ends in one ``pyctl: error:`` line that names what failed, and
leaves no image record. Every case checks the requests the registry saw, too.

Cases already covered in test_pull_push_faults.py (cut and reset connections mid-blob, a
corrupted layer, 503 then 429 with ``Retry-After``, blob redirects to another host with no
``Authorization``, a 404 tag) are not repeated here.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from integration.conftest import PullBed
from integration.faultproxy import FaultProxy
from integration.images import ImageSpec
from integration.registry_helpers import (
    assert_failure,
    assert_success,
    ctr_images,
    images_check,
)

LAYER = 2 << 20  # the random layer each case's image carries
FAST_TIMEOUT = {"PYCTL_READ_TIMEOUT": "1"}


def _big(img: ImageSpec) -> str:
    return img.biggest_layer.digest


@dataclass(frozen=True)
class Case:
    """A fault (``inject(proxy, image)``), and either ``error`` (fragments of the one error
    line; ``{layer}``, ``{config}``, ``{manifest}`` are filled in) or success; ``check`` looks
    at the proxy's records afterwards."""

    inject: Callable[[FaultProxy, ImageSpec], object]
    error: tuple[str, ...] = ()
    check: Callable[[FaultProxy, ImageSpec], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    by_digest: bool = False


def _statuses(proxy: FaultProxy, digest: str) -> list[int | None]:
    return [r.status for r in proxy.blob_requests(digest)]


RETRY_AT: list[int] = []  # the moment the HTTP-date Retry-After names (whole seconds)


def _retry_at(seconds_ahead: int) -> str:
    RETRY_AT[:] = [int(time.time()) + seconds_ahead]
    return email.utils.formatdate(RETRY_AT[0], usegmt=True)


def _retried_at_the_date(proxy: FaultProxy, digest: str) -> None:
    gets = proxy.blob_requests(digest)
    assert [r.status for r in gets] == [503, 200]
    assert gets[1].time >= RETRY_AT[0] - 0.05, (gets[0].time, gets[1].time, RETRY_AT)


def _resumed(proxy: FaultProxy, img: ImageSpec) -> None:
    """Two GETs of the layer, the second from where the first broke off."""
    ranges = proxy.ranges(_big(img))
    assert len(ranges) == 2 and ranges[0] is None, ranges
    assert ranges[1] is not None and int(ranges[1][6:-1]) > 0, ranges


CASES: dict[str, Case] = {
    # --- transient: retried, the pull succeeds ------------------------------------------------
    "stall-mid-blob": Case(
        lambda p, i: p.stall(4, after_bytes=600_000, method="GET", path=f"/blobs/{_big(i)}$"),
        check=_resumed,
        env=FAST_TIMEOUT,
    ),
    "stall-before-headers": Case(
        lambda p, i: p.stall(4, before_headers=True, method="GET", path=f"/blobs/{_big(i)}$"),
        check=lambda p, i: (
            None if p.ranges(_big(i)) == [None, None] else pytest.fail(str(p.ranges(_big(i))))
        ),
        env=FAST_TIMEOUT,
    ),
    "500-once": Case(
        lambda p, i: p.status(500, method="GET", path=f"/blobs/{_big(i)}$"),
        check=lambda p, i: _assert_eq(_statuses(p, _big(i)), [500, 200]),
    ),
    "502-once": Case(
        lambda p, i: p.status(502, method="GET", path=f"/blobs/{_big(i)}$"),
        check=lambda p, i: _assert_eq(_statuses(p, _big(i)), [502, 200]),
    ),
    "504-once": Case(
        lambda p, i: p.status(504, method="GET", path=f"/blobs/{_big(i)}$"),
        check=lambda p, i: _assert_eq(_statuses(p, _big(i)), [504, 200]),
    ),
    "503-manifest-head-twice": Case(
        lambda p, i: p.status(503, method="HEAD", path="/manifests/1$", times=2),
        check=lambda p, i: _assert_eq(
            [r.status for r in p.manifest_requests("HEAD")], [503, 503, 200]
        ),
    ),
    "429-no-retry-after-twice": Case(
        lambda p, i: p.status(429, method="GET", path=f"/blobs/{_big(i)}$", times=2),
        check=lambda p, i: _assert_eq(_statuses(p, _big(i)), [429, 429, 200]),
    ),
    "503-retry-after-http-date": Case(
        lambda p, i: p.status(
            503, headers={"Retry-After": _retry_at(3)}, method="GET", path=f"/blobs/{_big(i)}$"
        ),
        check=lambda p, i: _retried_at_the_date(p, _big(i)),
    ),
    "reset-before-answer": Case(
        lambda p, i: p.reset(-1, method="GET", path=f"/blobs/{i.config_digest}$"),
        check=lambda p, i: _assert_eq(_statuses(p, i.config_digest), [None, 200]),
    ),
    "content-length-too-big-blob": Case(
        lambda p, i: p.wrong_length(+5, method="GET", path=f"/blobs/{_big(i)}$"),
        check=lambda p, i: _assert_eq(_statuses(p, _big(i)), [200]),
    ),
    "content-length-too-small-blob": Case(
        lambda p, i: p.wrong_length(-5, method="GET", path=f"/blobs/{_big(i)}$"),
        check=lambda p, i: _assert_eq(
            p.ranges(_big(i)), [None, f"bytes={max(b.size for b in i.layers) - 5}-"]
        ),
    ),
    "content-length-too-small-manifest": Case(
        lambda p, i: p.wrong_length(-5, method="GET", path=f"/manifests/{i.manifest_digest}$"),
        check=lambda p, i: _assert_eq(len(p.manifest_requests("GET")), 2),
    ),
    "wrong-bytes-once-config": Case(
        lambda p, i: p.corrupt(3, method="GET", path=f"/blobs/{i.config_digest}$"),
        check=lambda p, i: _assert_eq(_statuses(p, i.config_digest), [200, 200]),
    ),
    # --- permanent: one clear error, no record ------------------------------------------------
    "500-always": Case(
        lambda p, i: p.status(500, method="GET", path=f"/blobs/{_big(i)}$", times=None),
        error=("blob {layer}", "injected 500", "gave up after 5 attempts"),
        check=lambda p, i: _assert_eq(_statuses(p, _big(i)), [500] * 5),
    ),
    "503-always-manifest-head": Case(
        lambda p, i: p.status(503, method="HEAD", path="/manifests/1$", times=None),
        error=("503", "gave up after 5 attempts"),
    ),
    "429-always": Case(
        lambda p, i: p.status(
            429, headers={"Retry-After": "0"}, method="GET", path=f"/blobs/{_big(i)}$", times=None
        ),
        error=("blob {layer}", "toomanyrequests", "gave up after 5 attempts"),
    ),
    "stall-always": Case(
        lambda p, i: p.stall(
            3, before_headers=True, method="GET", path=f"/blobs/{_big(i)}$", times=None
        ),
        error=("blob {layer}", "timeout talking to", "gave up after 5 attempts"),
        env=FAST_TIMEOUT,
    ),
    "wrong-bytes-always-config": Case(
        lambda p, i: p.corrupt(3, method="GET", path=f"/blobs/{i.config_digest}$", times=None),
        error=("blob {config}", "returned", "with digest"),
        check=lambda p, i: _assert_eq(_statuses(p, i.config_digest), [200, 200]),
    ),
    "manifest-digest-mismatch-by-tag": Case(
        lambda p, i: p.replace_body(
            b'{"schemaVersion":2}', method="GET", path="/manifests/sha256:", times=None
        ),
        error=("manifest {manifest}", "returned 19 bytes with digest"),
    ),
    "manifest-digest-mismatch-by-digest": Case(
        lambda p, i: p.replace_body(b'{"schemaVersion":2}', path="/manifests/sha256:", times=None),
        error=("{manifest}", "digest"),
        by_digest=True,
    ),
    "head-content-length-lies": Case(
        lambda p, i: p.wrong_length(+5, method="HEAD", path="/manifests/1$", times=None),
        error=("manifest {manifest}", "expected"),
    ),
    "redirect-loop": Case(
        lambda p, i: p.redirect_loop(method="GET", path=f"/blobs/{_big(i)}$"),
        error=("{layer}", "stopped after 10 redirects"),
    ),
    "head-200-get-404": Case(
        lambda p, i: p.head_ok_get_404(path=f"/blobs/{_big(i)}$"),
        error=("blob {layer}", "blob unknown"),
    ),
}


def _assert_eq(got: object, want: object) -> None:
    assert got == want, f"{got!r} != {want!r}"


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_pull_through_fault(pull_bed: PullBed, case: str) -> None:
    c = CASES[case]
    bed, proxy = pull_bed, pull_bed.proxy
    img, name = bed.seed(f"f-{case}"[:40], big=LAYER)
    if c.by_digest:
        name = name.rsplit(":", 1)[0] + "@" + img.manifest_digest
    c.inject(proxy, img)

    proc = bed.pyctl("pull", name, env=c.env)
    if c.error:
        fill = {"layer": _big(img), "config": img.config_digest, "manifest": img.manifest_digest}
        assert_failure(proc, f"pull {name}:", *(f.format(**fill) for f in c.error))
        assert ctr_images(bed.containerd, bed.namespace) == {}
    else:
        assert assert_success(proc)[-1] == name
        assert images_check(bed.containerd, bed.namespace)[name] == ("complete", True)
    if c.check is not None:
        c.check(proxy, img)


def test_push_to_a_registry_that_claims_every_blob(pull_bed: PullBed) -> None:
    """The registry cannot mount (404 to every upload POST) and answers 200 to every blob HEAD
    (but has none of them): the push skips the uploads, the registry refuses the manifest,
    and the push fails with one line that says so — the tag does not appear. (Without the
    404, the blobs of team/claims would be mounted first, and the push would just work.)"""
    bed, proxy = pull_bed, pull_bed.proxy
    _, name = bed.seed("claims", big=64 << 10)
    assert_success(bed.pyctl("pull", name))
    dest = proxy.ref("team/elsewhere", "1")
    assert_success(bed.pyctl("tag", name, dest))
    proxy.status(404, method="POST", path=r"/team/elsewhere/blobs/uploads/", times=None)
    proxy.status(200, body=b"", method="HEAD", path=r"/team/elsewhere/blobs/", times=None)
    proc = bed.pyctl("push", dest)
    msg = assert_failure(proc, f"push {dest}:")
    assert "blob unknown" in msg.lower() or "manifest" in msg.lower(), msg
    assert proxy.blob_uploads() == 0
    assert bed.registry.tags("team/elsewhere") == []
