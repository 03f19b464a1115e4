"""The OCI distribution API of one repository: resolve a tag or digest, fetch manifests and
configs (verified), stream blobs (resumed with ``Range`` when a connection drops), and push:
blob checks, cross-repository mounts, uploads, manifests.

A :class:`Repository` tries the endpoints of its registry in hosts.toml order (mirrors, then
the server) and sends every request through the retry policy (:mod:`pyctl.registry.retry`)
with the auth flow for that request's scope (:mod:`pyctl.registry.auth`): the repository's
pull (or pull,push) scope, and for a mount pull on the source repository as well.

Some 600 lines, on purpose: the whole API of one repository is one class, as in containerd's
``remotes/docker`` and go-containerregistry's ``remote``; split by direction, pull and push
would share its endpoints, URLs and scope from another file.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from pyctl.errors import PyctlError, RegistryError, RegistryNotFound, RegistryUnreachable
from pyctl.oci import (
    MAX_MANIFEST_SIZE,
    Descriptor,
    digest_problem,
    is_index,
    is_manifest,
    sha256_digest,
)
from pyctl.registry.auth import Authenticator
from pyctl.registry.credentials import Credential
from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.hosts.provenance import Provenance
from pyctl.registry.retry import MAX_ATTEMPTS, Body, Sender, backoff
from pyctl.registry.tokens import Scope, repository_scope
from pyctl.registry.transport import (
    HTTP_ERRORS,
    MAX_ANSWER,
    TRANSPORT_ERRORS,
    Response,
    Sessions,
    describe,
    short,
)

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "*/*",
    ]
)
CHUNK_SIZE = 64 << 20  # uploads larger than this go in PATCHes of this size


class Repository:
    """Repository ``repository`` (e.g. ``library/ubuntu``; "" for the registry itself, as
    login uses it) of registry ``ref_host``, through the endpoints ``hosts`` (resolved from
    hosts.toml). ``keychain`` gives the credentials stored for a host; ``push`` asks for
    pull,push on the repository; ``sessions`` are the connection pools (a fake in tests);
    ``timeout`` and ``retry`` as :class:`~pyctl.registry.retry.Sender` takes them."""

    def __init__(
        self,
        ref_host: str,
        repository: str,
        hosts: Sequence[RegistryHost],
        keychain: Callable[[str], Credential | None],
        *,
        push: bool = False,
        insecure: bool = False,
        debug: bool = False,
        pool: int = 8,
        hosts_dirs: Sequence[str] | None = None,
        sessions: Sessions | None = None,
        timeout: float | None = None,
        retry: bool = True,
    ) -> None:
        self.ref_host = ref_host
        self.repository = repository
        self.hosts = list(hosts)
        self.push = push
        self.provenance = Provenance(ref_host, hosts_dirs)  # named in errors
        self.sender = Sender(
            hosts,
            self.provenance,
            push=push,
            insecure=insecure,
            debug=debug,
            pool=pool,
            sessions=sessions,
            timeout=timeout,
            retry=retry,
        )
        self.auth = Authenticator(
            ref_host,
            hosts,
            keychain,
            self.sender.send,
            self.provenance,
            insecure=insecure,
            log=self.sender.log,
        )
        self.scope: Scope = ()
        if repository:
            self.scope = (repository_scope(repository, "pull,push" if push else "pull"),)

    def close(self) -> None:
        self.sender.close()

    def url(self, host: RegistryHost, *parts: str, query: Mapping[str, str] | None = None) -> str:
        base = host.url(self.repository, *parts)
        params = dict(query or {})
        if host.needs_ns(self.ref_host):
            params["ns"] = self.ref_host
        if params:
            base += ("&" if "?" in base else "?") + urlencode(sorted(params.items()))
        return base

    def request(
        self,
        method: str,
        host: RegistryHost,
        url: str,
        *,
        scope: Scope | None = None,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        stream: bool = False,
        retry: bool = True,
        limit: int = MAX_ANSWER,
    ) -> Response:
        """One request to endpoint ``host`` with the auth of ``scope`` (default: the
        repository's); a body not streamed is read whole, up to ``limit`` bytes."""
        return self.sender.send(
            method,
            host,
            url,
            auth=self.auth.flow(host, self.scope if scope is None else scope),
            headers=headers,
            body=body,
            stream=stream,
            retry=retry,
            limit=limit,
        )

    def hosts_for(self, capability: str) -> list[RegistryHost]:
        hosts = [h for h in self.hosts if h.has(capability)]
        if not hosts:
            raise RegistryError(
                f"no endpoint of {self.ref_host} has the {capability} capability "
                "(check its hosts.toml)"
            )
        return hosts

    # pull -------------------------------------------------------------------------------------

    def resolve(self, reference: str) -> tuple[Descriptor, RegistryHost]:
        """Tag or digest → descriptor of the manifest/index, trying mirrors then the server."""
        by_digest = reference.startswith("sha256:")
        candidates = (
            self.hosts_for("pull")
            if by_digest
            else [h for h in self.hosts if h.has("pull") and h.has("resolve")]
        )
        if not candidates:
            raise RegistryError(
                f"no endpoint of {self.ref_host} can resolve tags (check its hosts.toml)"
            )
        errors: list[tuple[int, RegistryError, RegistryHost]] = []
        for host in candidates:
            try:
                # a mirror without the image is common: what exactly is missing there is
                # asked only if no endpoint has it
                desc = self.resolve_at(host, reference, explain=False)
            except RegistryNotFound as exc:
                errors.append((2, exc, host))
                continue
            except RegistryUnreachable as exc:
                errors.append((1, exc, host))
                continue
            except RegistryError as exc:
                errors.append((3, exc, host))
                continue
            return desc, host
        worst = max(errors, key=lambda e: e[0])
        if worst[0] != 2:
            raise worst[1]
        # not found where it was asked (others unreachable): say what is missing at each
        said = []
        for rank, error, host in errors:
            if rank == 2:
                try:
                    return self.resolve_at(host, reference), host  # (pushed meanwhile)
                except RegistryError as explained:
                    error = explained
            said.append(error.message)
        raise RegistryNotFound("; ".join(said), 404, worst[1].code)

    def resolve_at(self, host: RegistryHost, reference: str, *, explain: bool = True) -> Descriptor:
        """Tag or digest → descriptor at endpoint ``host`` alone; a 404 says what is missing
        there (:meth:`_not_found`), unless ``explain`` is False (one request fewer)."""
        url = self.url(host, "manifests", reference)
        headers = {"Accept": MANIFEST_ACCEPT}
        resp = self.request("HEAD", host, url, headers=headers)
        if resp.status_code in (403, 405) or (resp.status_code == 404 and explain):
            # HEAD answers carry no body: a GET says why (which of repository or tag is
            # missing, what was denied)
            resp = self.request("GET", host, url, headers=headers)
        if resp.status_code == 404:
            if not explain:
                where = urlunsplit((*urlsplit(resp.url)[:2], "", "", ""))
                raise RegistryNotFound(f"{reference} not found at {where}", 404, "NOT_FOUND")
            raise self._not_found(host, resp, reference)
        if resp.status_code >= 400:
            raise resp.error()
        if resp.status_code >= 300:
            raise RegistryError(f"unexpected status {resp.status_code} resolving {reference}")
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        digest = resp.headers.get("Docker-Content-Digest", "").strip()
        if digest_problem(digest):
            digest = ""  # unusable: hash the body instead
        length = resp.headers.get("Content-Length") or ""
        if reference.startswith("sha256:"):
            digest = reference
        known_length = length.isascii() and length.isdigit()
        if resp.request.method == "HEAD" and digest and known_length and media_type:
            size = int(length)
            if size > MAX_MANIFEST_SIZE:
                raise RegistryError(f"manifest {reference} is too large ({size} bytes)")
            return Descriptor(media_type=media_type, digest=digest, size=size)
        # Fall back to GET and hash the body.
        if resp.request.method == "HEAD":
            resp = self.request("GET", host, url, headers=headers)
            if resp.status_code >= 400:
                raise resp.error()
            media_type = (resp.headers.get("Content-Type") or media_type).split(";")[0].strip()
        data = resp.content or b""
        computed = sha256_digest(data)
        if reference.startswith("sha256:") and computed != reference:
            raise RegistryError(
                f"manifest {reference}: the registry returned content with digest {computed}"
            )
        if not media_type or media_type in ("application/json", "text/plain"):
            media_type = _sniff_media_type(data)
        return Descriptor(media_type=media_type, digest=computed, size=len(data))

    def _not_found(self, host: RegistryHost, resp: Response, reference: str) -> RegistryNotFound:
        """A 404 for ``reference``, saying what is missing where: the repository, or the tag
        or digest in it. Registries answer MANIFEST_UNKNOWN for both (distribution does), so
        the repository's tag list decides."""
        code = resp.error().code
        where = urlunsplit((*urlsplit(resp.url)[:2], "", "", ""))
        kind = "manifest" if reference.startswith("sha256:") else "tag"
        repo = self.repository
        tags = None if code == "NAME_UNKNOWN" else self._tags(host)
        if code == "NAME_UNKNOWN" or tags == "absent":
            text = f"repository {repo} not found at {where}"
        elif isinstance(tags, list) or code == "MANIFEST_UNKNOWN":
            text = f"{kind} {reference} not found in repository {repo} at {where}"
            if tags and isinstance(tags, list) and kind == "tag":
                text += f" (its tags: {', '.join(tags[:5])}{', …' if len(tags) > 5 else ''})"
        else:  # a bare 404, and no tag list to tell
            text = f"{kind} {reference} or repository {repo} not found at {where}"
        return RegistryNotFound(text, 404, code or "NOT_FOUND")

    def _tags(self, host: RegistryHost) -> list[str] | str | None:
        """The repository's tags at ``host`` (sorted), ``"absent"`` when the registry says the
        repository does not exist, None when it does not say."""
        try:
            resp = self.request("GET", host, self.url(host, "tags", "list"))
            if resp.status_code == 404:  # distribution says NAME_UNKNOWN; a bare 404 says less
                return "absent" if resp.error().code == "NAME_UNKNOWN" else None
            if resp.status_code != 200:
                return None
            doc = json.loads(resp.content or b"")
        except (RegistryError, ValueError, RecursionError):
            return None
        tags = doc.get("tags") if isinstance(doc, dict) else None
        if tags is None:
            return []  # distribution: a repository whose tags were all deleted
        if not isinstance(tags, list):
            return None
        return sorted(str(t) for t in tags)

    def fetch_bytes(self, desc: Descriptor, limit: int = MAX_MANIFEST_SIZE) -> bytes:
        """A manifest, index or config, whole, verified against ``desc``; each endpoint in
        turn until one has it."""
        if desc.size > limit:
            raise RegistryError(f"{desc.digest} is too large ({desc.size} bytes, limit {limit})")
        what = f"{_kind(desc)[:-1]} {desc.digest}"
        last: RegistryError | None = None
        for host in self.hosts_for("pull"):
            try:
                return self.fetch_at(host, desc, limit)
            except RegistryError as exc:
                last = _about(exc, what)
        assert last is not None
        raise last

    def fetch_at(
        self, host: RegistryHost, desc: Descriptor, limit: int = MAX_MANIFEST_SIZE
    ) -> bytes:
        """The document from endpoint ``host`` alone. Bytes that do not match the digest are
        fetched once more (a proxy that cut or mangled one answer); a second bad answer means
        the registry serves them."""
        url = self.url(host, _kind(desc), desc.digest)
        headers = {"Accept": f"{desc.media_type}, */*"}
        mismatch = ""
        for _attempt in (1, 2):
            resp = self.request("GET", host, url, headers=headers, limit=limit)
            if resp.status_code >= 400:
                raise resp.error()
            data = resp.content or b""
            if sha256_digest(data) == desc.digest and len(data) == desc.size:
                return data
            mismatch = (
                f"{_kind(desc)[:-1]} {desc.digest}: {host.host} returned {len(data)} bytes "
                f"with digest {sha256_digest(data)} (expected {desc.size} bytes)"
            )
            self.sender.log(f"fetching {desc.digest} again after: {mismatch}")
        raise RegistryError(mismatch)

    def open_blob(self, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        """Stream a blob from ``offset``; a dropped connection is resumed with ``Range``."""
        kind = _kind(desc)
        hosts = self.hosts_for("pull")
        host_index = 0
        position = offset
        failures = 0
        failed_at = -1  # position at the last broken transfer
        last: RegistryError | None = None
        while position < desc.size or desc.size == 0:
            if host_index >= len(hosts):
                assert last is not None
                raise _about(last, f"{kind[:-1]} {desc.digest}")
            host = hosts[host_index]
            url = self.url(host, kind, desc.digest)
            headers = {"Accept-Encoding": "identity"}
            if position:
                headers["Range"] = f"bytes={position}-"
            try:
                resp = self.request("GET", host, url, headers=headers, stream=True)
            except RegistryError as exc:
                last = exc
                host_index += 1
                continue
            if resp.status_code >= 400:
                last = resp.error()
                resp.close()
                host_index += 1
                continue
            skip = 0
            if position:
                content_range = resp.headers.get("Content-Range", "")
                if resp.status_code == 206:
                    if not content_range.startswith(f"bytes {position}-"):
                        resp.close()
                        raise RegistryError(
                            f"{desc.digest}: registry answered range {content_range!r}, "
                            f"asked for bytes={position}-"
                        )
                elif resp.status_code == 200 and not content_range.startswith(f"bytes {position}-"):
                    skip = position  # range ignored: discard what we already have
            try:
                for chunk in resp.stream():
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk = chunk[skip:]
                        skip = 0
                    position += len(chunk)
                    if position > desc.size:
                        raise RegistryError(
                            f"{desc.digest}: registry sent more than the {desc.size} bytes expected"
                        )
                    yield chunk
            except TRANSPORT_ERRORS as exc:
                # A drop after progress starts the count again: a long download over a flaky
                # network may need many resumes, a connection that dies at once does not.
                failures = 1 if position > failed_at else failures + 1
                failed_at = position
                resp.close()
                if failures >= MAX_ATTEMPTS:
                    raise RegistryUnreachable(
                        f"{kind[:-1]} {desc.digest}: gave up after {failures} broken "
                        f"transfers: {describe(exc, url)}"
                    ) from None
                self.sender.log(f"resuming {desc.digest} at byte {position} after: {exc}")
                time.sleep(backoff(failures))
                continue
            except HTTP_ERRORS as exc:
                raise RegistryError(f"{kind[:-1]} {desc.digest}: {short(str(exc))}") from None
            finally:
                resp.close()
            if position < desc.size:
                failures = 1 if position > failed_at else failures + 1
                failed_at = position
                if failures >= MAX_ATTEMPTS:
                    raise RegistryUnreachable(
                        f"{kind[:-1]} {desc.digest}: connection closed after {position} of "
                        f"{desc.size} bytes (gave up after {failures} attempts)"
                    )
                self.sender.log(f"resuming {desc.digest} at byte {position} (short body)")
                continue
            return

    # push -------------------------------------------------------------------------------------

    def push_host(self) -> RegistryHost:
        return self.hosts_for("push")[0]

    def blob_exists(self, host: RegistryHost, digest: str) -> bool:
        resp = self.request("HEAD", host, self.url(host, "blobs", digest))
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise resp.error()

    def mount_blob(self, host: RegistryHost, digest: str, from_repo: str) -> bool:
        """Cross-repository mount from ``from_repo``, with a token that may pull from there;
        False when the registry wants an upload instead (it cannot mount, or the credentials
        may not pull from ``from_repo``)."""
        scope = (*self.scope, repository_scope(from_repo, "pull"))
        url = self.url(host, "blobs", "uploads/", query={"mount": digest, "from": from_repo})
        resp = self.request("POST", host, url, scope=scope, headers={"Content-Length": "0"})
        if resp.status_code == 201:
            return True
        if resp.status_code in (202, 401, 403, 404, 405):
            self.sender.log(f"mount of {digest} from {from_repo}: HTTP {resp.status_code}")
            if resp.status_code == 202:
                self._cancel_upload(host, resp)
            return False
        raise resp.error()

    def _cancel_upload(self, host: RegistryHost, resp: Response) -> None:
        loc = resp.headers.get("Location")
        if loc:
            with contextlib.suppress(RegistryError):
                self.request("DELETE", host, urljoin(resp.url, loc), retry=False).close()

    def upload_blob(
        self,
        host: RegistryHost,
        desc: Descriptor,
        opener: Callable[[], Iterable[bytes]],
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        """POST a session, then PUT the blob monolithically, or PATCH it in chunks when it is
        larger than ``chunk_size``; the registry checks the digest on the final PUT."""
        resp = self.request(
            "POST", host, self.url(host, "blobs", "uploads/"), headers={"Content-Length": "0"}
        )
        if resp.status_code == 201:
            return  # the registry already had it
        if resp.status_code not in (200, 202, 204):
            raise resp.error()
        location = self._location(resp)
        if desc.size <= chunk_size:
            put = self.request(
                "PUT",
                host,
                _add_query(location, {"digest": desc.digest}),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(desc.size),
                },
                body=lambda: _counted(opener(), desc.size),
            )
            if put.status_code not in (200, 201, 202, 204):
                raise put.error()
            return
        start = 0
        buf = bytearray()

        def patch(data: bytes) -> None:
            nonlocal location, start
            end = start + len(data) - 1
            r = self.request(
                "PATCH",
                host,
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(data)),
                    "Content-Range": f"{start}-{end}",
                },
                body=lambda: data,
            )
            if r.status_code not in (202, 204):
                raise r.error()
            location = self._location(r)
            start = end + 1

        for chunk in opener():
            buf += chunk
            while len(buf) >= chunk_size:
                patch(bytes(buf[:chunk_size]))
                del buf[:chunk_size]
        if buf:
            patch(bytes(buf))
        put = self.request(
            "PUT",
            host,
            _add_query(location, {"digest": desc.digest}),
            headers={"Content-Length": "0"},
        )
        if put.status_code not in (200, 201, 202, 204):
            raise put.error()

    def _location(self, resp: Response) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError("registry did not return an upload location")
        url = urljoin(resp.url, loc)
        host = next((h for h in self.hosts if h.has("push")), None)
        if host is not None and host.needs_ns(self.ref_host):
            url = _add_query(url, {"ns": self.ref_host})
        return url

    def manifest_exists(self, host: RegistryHost, reference: str, digest: str) -> bool:
        resp = self.request(
            "HEAD",
            host,
            self.url(host, "manifests", reference),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if resp.status_code == 200:
            return (
                resp.headers.get("Docker-Content-Digest", "") == digest
                if not reference.startswith("sha256:")
                else True
            )
        if resp.status_code == 404:
            return False
        raise resp.error()

    def put_manifest(
        self, host: RegistryHost, reference: str, desc: Descriptor, data: bytes
    ) -> str:
        resp = self.request(
            "PUT",
            host,
            self.url(host, "manifests", reference),
            headers={"Content-Type": desc.media_type, "Content-Length": str(len(data))},
            body=lambda: data,
        )
        if resp.status_code not in (200, 201, 202, 204):
            raise resp.error()
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != desc.digest:
            raise RegistryError(
                f"registry stored manifest {reference} as {got}, expected {desc.digest}"
            )
        return desc.digest

    def ping(self, host: RegistryHost) -> None:
        """GET /v2/ with authentication, for login."""
        resp = self.request("GET", host, f"{host.scheme}://{host.host}{host.path}/")
        if resp.status_code == 401:
            raise RegistryError("unauthorized: incorrect username or password", 401, "UNAUTHORIZED")
        if resp.status_code >= 400 and resp.status_code != 404:
            raise resp.error()


def _kind(desc: Descriptor) -> str:
    return "manifests" if is_manifest(desc.media_type) or is_index(desc.media_type) else "blobs"


def _about(err: RegistryError, what: str) -> RegistryError:
    """``err`` with ``what`` (e.g. ``blob sha256:…``) in front, unless it names it already."""
    digest = what.rsplit(" ", 1)[-1]
    if digest in str(err):
        return err
    return type(err)(f"{what}: {err}", err.status, err.code)


def _sniff_media_type(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return ""
    if isinstance(doc, dict):
        if isinstance(doc.get("mediaType"), str):
            return str(doc["mediaType"])
        if "manifests" in doc:
            return "application/vnd.oci.image.index.v1+json"
        if "layers" in doc:
            return "application/vnd.oci.image.manifest.v1+json"
    return ""


def _add_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(params)
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(sorted(query.items())), "")
    )


def _counted(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        yield chunk
    if total != size:
        raise PyctlError(f"blob source gave {total} bytes, expected {size}")
