"""A push whose blobs come from many repositories of one token registry: every blob known to
be in another repository is mounted from there (a mount is a POST answered 201 at the
registry), the rest are uploaded, and each token asked for carries the scope of the request
it was for: pull,push on the destination and pull on that one source, never another
repository's."""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

from integration import images
from integration.conftest import ImageFactory, PyctlRunner, SecureRegistry
from integration.faultproxy import FaultProxy
from integration.registry_helpers import assert_success, docker_config, hosts_dir
from integration.testbed import CertAuthority, Containerd

MOUNTED = 16  # layers that are in a repository of their own already
UPLOADED = 8  # layers the registry has nowhere
SOURCE_LABEL = "containerd.io/distribution.source.127.0.0.1"


def _image(n: int) -> images.ImageSpec:
    """One image of ``n`` small distinct layers."""
    layers = [images.build_image(runnable=False, variant_content=f"mounts-{i}") for i in range(n)]
    blobs = tuple(img.layers[1] for img in layers)
    diff_ids = tuple(img.diff_ids[1] for img in layers)
    plat = layers[0].platform
    config = images.Blob(
        images.OCI.config,
        images.canonical_json(
            {
                "architecture": plat.architecture,
                "os": plat.os,
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            }
        ),
    )
    manifest = images.Blob(
        images.OCI.manifest,
        images.canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": images.OCI.manifest,
                "config": config.descriptor(),
                "layers": [b.descriptor() for b in blobs],
            }
        ),
    )
    return images.ImageSpec(plat, images.OCI, manifest, config, blobs, diff_ids, False)


def test_concurrent_mounts_each_get_their_source_scope(
    containerd: Containerd,
    namespace: str,
    pyctl: PyctlRunner,
    token_registry: SecureRegistry,
    cert_authority: CertAuthority,
    image_factory: ImageFactory,
    tmp_path: Path,
) -> None:
    img = _image(MOUNTED + UPLOADED)
    sources = {b.digest: f"team/src-{i}" for i, b in enumerate(img.layers[:MOUNTED])}
    # each of the first layers is in a repository of its own at the registry
    for blob in img.layers[:MOUNTED]:
        repo = sources[blob.digest]
        auth = token_registry.auth
        assert auth is not None
        headers = {
            **auth.token_headers(f"repository:{repo}:pull,push"),  # type: ignore[attr-defined]
            "Content-Type": "application/octet-stream",
        }
        start = token_registry.request(
            "POST", f"/v2/{repo}/blobs/uploads/", headers=headers, authenticate=False
        )
        assert start.status == 202, start
        location = urllib.parse.urlsplit(start.headers["Location"])
        put = token_registry.request(
            "PUT",
            f"{location.path}?{location.query}&digest={blob.digest}",
            body=blob.data,
            headers=headers,
            authenticate=False,
        )
        assert put.status == 201, put
    # containerd holds the image and knows where each of those layers came from
    arc = images.write_oci_archive(tmp_path / "image.tar", img, "example.test/mounts:1")
    containerd.import_image(arc, namespace=namespace)
    for digest, repo in sources.items():
        containerd.ctr("content", "label", digest, f"{SOURCE_LABEL}={repo}", namespace=namespace)

    tls = cert_authority.issue_server_cert(f"mount-proxy-{os.getpid()}")
    with FaultProxy(token_registry, tls=tls) as proxy:
        assert token_registry.ca_path is not None
        hosts = hosts_dir(tmp_path / "hosts", {proxy.host: token_registry.ca_path})
        creds = docker_config(tmp_path / "alice", {proxy.host: ("alice", "wonderland")})
        dest = proxy.ref("team/dest", "1")
        assert_success(pyctl("tag", "example.test/mounts:1", dest, namespace=namespace))
        token_registry.token_server.clear()
        proc = pyctl(
            "--hosts-dir",
            str(hosts),
            "push",
            dest,
            namespace=namespace,
            env={"DOCKER_CONFIG": str(creds)},
        )
        assert assert_success(proc)[-1].startswith(f"{dest}: digest: {img.manifest_digest}")

        # every blob known to be elsewhere was mounted from there, at the first try
        mounts = [
            r
            for r in proxy.requests_for("POST", r"/v2/team/dest/blobs/uploads/?$")
            if "mount" in r.query_params
        ]
        mounted = {r.query_params["mount"][0]: r.query_params["from"][0] for r in mounts}
        assert mounted == sources
        assert sorted(r.status or 0 for r in mounts) == [201] * MOUNTED, [
            (r.query_params["from"][0], r.status) for r in mounts
        ]
        # ... and only the others were uploaded
        want_uploads = {b.digest for b in img.layers[MOUNTED:]} | {img.config_digest}
        assert sorted(proxy.uploaded_digests()) == sorted(want_uploads)

    # each token was for one request's scope: the destination, plus one source for a mount
    own = {"repository:team/dest:pull", "repository:team/dest:pull,push"}
    for request in token_registry.token_server.requests:
        others = [s for s in request.scopes if s not in own]
        assert len(others) <= 1, request.scopes
        assert all(re.fullmatch(r"repository:team/src-\d+:pull", s) for s in others), others
