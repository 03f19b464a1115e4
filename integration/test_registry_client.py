"""pyctl's registry client against a real registry, for paths the CLI tests reach only with
very large images: chunked (PATCH) uploads, and re-reading a blob from an offset."""

from __future__ import annotations

import hashlib
import os

import requests

from integration.testbed import Registry
from pyctl.oci import Descriptor
from pyctl.registry.distribution import Repository as Client
from pyctl.registry.hosts.resolve import resolve_hosts


def _client(registry: Registry, repo: str) -> Client:
    hosts = resolve_hosts(registry.host, hosts_dirs=[])
    return Client(registry.host, repo, hosts, lambda _h: None, push=True)


def test_chunked_upload_lands_whole_and_verified(registry: Registry) -> None:
    data = os.urandom(5 * (1 << 20) + 12345)  # 5 full chunks and a tail
    desc = Descriptor(
        "application/octet-stream", "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
    )
    client = _client(registry, "chunked/blob")
    host = client.push_host()
    assert not client.blob_exists(host, desc.digest)

    def pieces() -> list[bytes]:
        return [data[i : i + 300_000] for i in range(0, len(data), 300_000)]

    client.upload_blob(host, desc, pieces, chunk_size=1 << 20)
    assert client.blob_exists(host, desc.digest)
    got = requests.get(f"{registry.url}/v2/chunked/blob/blobs/{desc.digest}", timeout=30)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == desc.digest.split(":", 1)[1]

    # and read back through pyctl's own resumable reader, from an offset
    tail = b"".join(client.open_blob(desc, offset=len(data) - 1000))
    assert tail == data[-1000:]
    client.close()


def test_chunked_upload_with_wrong_digest_is_refused(registry: Registry) -> None:
    data = os.urandom(3 * (1 << 20))
    wrong = Descriptor("application/octet-stream", "sha256:" + "0" * 64, len(data))
    client = _client(registry, "chunked/bad")
    host = client.push_host()
    try:
        client.upload_blob(host, wrong, lambda: [data], chunk_size=1 << 20)
    except Exception as exc:  # the registry rejects the final PUT: digest invalid
        assert "digest" in str(exc).lower(), exc
    else:
        raise AssertionError("a blob with the wrong digest was accepted")
    assert not client.blob_exists(host, wrong.digest)
    client.close()
