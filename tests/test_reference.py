"""Tests for pyctl.reference: every vector of protocol.md §B5, plus the API around them."""

from __future__ import annotations

import pytest

from pyctl.errors import InvalidReferenceError, PyctlError
from pyctl.oci import is_digest
from pyctl.reference import (
    DIGEST_RE,
    IDENTIFIER_RE,
    Reference,
    familiarize,
    parse,
    parse_docker_ref,
    parse_normalized_named,
    parse_repo_tag,
)

BUSYBOX_DIGEST = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
E669 = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"
DBCC = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
SONG = "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"
LONG_NAMESPACE = (
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker"
)

# (input, ParseNormalizedNamed -> String(), familiar string or None when §B5 leaves it blank)
NORMALIZED = [
    ("ubuntu", "docker.io/library/ubuntu", "ubuntu"),
    ("ubuntu:22.04", "docker.io/library/ubuntu:22.04", "ubuntu:22.04"),
    ("library/ubuntu", "docker.io/library/ubuntu", "ubuntu"),
    ("docker.io/ubuntu", "docker.io/library/ubuntu", "ubuntu"),
    ("index.docker.io/library/ubuntu", "docker.io/library/ubuntu", "ubuntu"),
    ("index.docker.io/foo/bar", "docker.io/foo/bar", "foo/bar"),
    ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest", "dmcgowan/myapp:latest"),
    ("library/foo/bar", "docker.io/library/foo/bar", "library/foo/bar"),
    ("store/foo/bar", "docker.io/store/foo/bar", "store/foo/bar"),
    ("myhost/foo", "docker.io/myhost/foo", "myhost/foo"),
    ("test_com/foo", "docker.io/test_com/foo", None),
    ("localhost/fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar"),
    ("localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1"),
    ("test-com:8080/foo", "test-com:8080/foo", None),
    (
        "example.com:8000/private/moonbase",
        "example.com:8000/private/moonbase",
        "example.com:8000/private/moonbase",
    ),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase"),
    ("xn--n3h.com/foo", "xn--n3h.com/foo", None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000/repo:tag", None),
    ("[fc00::1]:5000/docker", "[fc00::1]:5000/docker", None),
    ("Foo/bar", "Foo/bar", "Foo/bar"),
    ("FOO/bar", "FOO/bar", "FOO/bar"),
    ("LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo"),
    ("192.168.0.1", "docker.io/library/192.168.0.1", "192.168.0.1"),
    ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", None),
    ("localhost", "docker.io/library/localhost", None),
    ("localhost:5000", "docker.io/library/localhost:5000", None),
    ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080", None),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", None),
    (
        f"busybox:latest@{BUSYBOX_DIGEST}",
        f"docker.io/library/busybox:latest@{BUSYBOX_DIGEST}",
        f"busybox:latest@{BUSYBOX_DIGEST}",
    ),
    (f"docker.io/{HEX64}", f"docker.io/library/{HEX64}", None),
    (SONG, f"docker.io/library/{SONG}", None),
    ("dock__er/docker", "docker.io/dock__er/docker", None),
    ("docker---rules/docker", "docker.io/docker---rules/docker", None),
    ("d/docker", "docker.io/d/docker", None),
    ("jess/t", "docker.io/jess/t", None),
    ("a/b:" + "x" * 128, "docker.io/a/b:" + "x" * 128, None),
]


@pytest.mark.parametrize(("text", "normalized", "familiar"), NORMALIZED)
def test_parse_normalized_named(text: str, normalized: str, familiar: str | None) -> None:
    ref = parse_normalized_named(text)
    assert str(ref) == normalized
    if familiar is not None:
        assert ref.familiar() == familiar
        assert familiarize(text) == familiar
    # the normalized form is a fixed point, and the familiar form parses back to it
    # (except a 64-hex repository, whose familiar form reads as an image ID, as upstream)
    assert str(parse_normalized_named(normalized)) == normalized
    if not IDENTIFIER_RE.fullmatch(ref.familiar()):
        assert str(parse_normalized_named(ref.familiar())) == normalized


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("test-com:8080/foo", "test-com:8080", "foo", None, None),
        ("test_com/foo", "docker.io", "test_com/foo", None, None),
        ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None),
        ("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None),
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),
        ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None),
        ("Foo/bar", "Foo", "bar", None, None),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", None, None),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", None, None),
        (f"busybox:latest@{BUSYBOX_DIGEST}", "docker.io", "library/busybox", "latest",
         BUSYBOX_DIGEST),
    ],
)  # fmt: skip
def test_normalized_components(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    assert parse_normalized_named(text) == Reference(domain, path, tag, digest)


LOWERCASE = "must be lowercase"
FORMAT = "invalid reference format"
TOO_LONG = "must not be more than 255 characters"

INVALID = [
    (HEX64, "cannot specify 64-byte hexadecimal strings"),
    ("docker/Docker", "repository name (docker/Docker) must be lowercase"),
    ("docker.io/docker/Docker", "repository name (docker/Docker) must be lowercase"),
    ("Uppercase:tag", "repository name (library/Uppercase) must be lowercase"),
    ("https://github.com/docker/docker", FORMAT),
    ("-docker", FORMAT),
    ("-docker/docker", FORMAT),
    ("docker-/docker", FORMAT),
    ("-docker-/docker", FORMAT),
    ("-docker.io/docker/docker", FORMAT),
    ("docker///docker", FORMAT),
    ("docker.io/docker///docker", FORMAT),
    ("docker/", FORMAT),
    ("____/____", FORMAT),
    ("_docker/_docker", FORMAT),
    ("dock..er/docker", FORMAT),
    ("dock_.er/docker", FORMAT),
    ("dock-.er/docker", FORMAT),
    ("[fc00::1]", FORMAT),
    ("[fc00::1]:5000", FORMAT),
    ("fc00::1:5000/debian", FORMAT),
    ("[fe80::1%eth0]:5000/debian", FORMAT),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", FORMAT),
    ("a" * 256 + "/docker", TOO_LONG),
    (LONG_NAMESPACE, TOO_LONG),
    ("ubuntu:", FORMAT),
    ("ubuntu:-x", FORMAT),
    (":tag", FORMAT),
    ("a/b:" + "x" * 129, FORMAT),
    ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
    ("validname@sha512:" + "f" * 128, "unsupported digest algorithm"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_parse_normalized_named_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_normalized_named(text)
    assert fragment in str(info.value)
    # every message names the offending input
    assert text in str(info.value)
    assert isinstance(info.value, PyctlError)


def test_error_message_shape() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_normalized_named("-docker")
    assert str(info.value) == 'invalid reference "-docker": invalid reference format'
    with pytest.raises(InvalidReferenceError) as info:
        parse_normalized_named("docker/Docker")
    assert str(info.value) == (
        'invalid reference "docker/Docker": '
        "invalid reference format: repository name (docker/Docker) must be lowercase"
    )
    with pytest.raises(InvalidReferenceError) as info:
        parse_normalized_named(HEX64)
    assert str(info.value) == (
        f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"
    )


# --- strict Parse ----------------------------------------------------------------------------


def test_parse_strict_too_long() -> None:
    with pytest.raises(InvalidReferenceError, match=TOO_LONG):
        parse("domain/" + "a" * 256 + ":tag")
    ref = parse("example.com/" + "a" * 255)
    assert ref.domain == "example.com"
    assert len(ref.path) == 255


def test_parse_strict_no_normalization() -> None:
    assert parse("ubuntu") == Reference("", "ubuntu")
    assert str(parse("ubuntu:22.04")) == "ubuntu:22.04"
    assert parse("foo/bar") == Reference("foo", "bar")
    assert parse("docker.io/ubuntu") == Reference("docker.io", "ubuntu")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "repository name must have at least one component"),
        ("foo/Bar", "repository name must be lowercase"),
        ("foo/bar:", "invalid reference format"),
        ("foo@sha256:" + "F" * 64, "invalid checksum digest format"),
        ("foo@sha256:" + "f" * 63, "invalid checksum digest length"),
        ("foo@sha512:" + "f" * 128, "unsupported digest algorithm"),
    ],
)
def test_parse_strict_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError, match=fragment):
        parse(text)


def test_trailing_newline_is_not_accepted() -> None:
    with pytest.raises(InvalidReferenceError):
        parse("ubuntu\n")
    with pytest.raises(InvalidReferenceError):
        parse_normalized_named("ubuntu\n")


# --- ParseDockerRef / ParseAnyReference ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
        (f"gcr.io/library/busybox:latest@{E669}", f"gcr.io/library/busybox@{E669}"),
        (f"busybox@{E669}", f"docker.io/library/busybox@{E669}"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ],
)
def test_parse_docker_ref(text: str, expected: str) -> None:
    assert str(parse_docker_ref(text)) == expected


# --- Reference properties and helpers --------------------------------------------------------


def test_reference_properties() -> None:
    ref = parse_normalized_named(f"ubuntu:22.04@{BUSYBOX_DIGEST}")
    assert ref.name == "docker.io/library/ubuntu"
    assert ref.familiar_name == "ubuntu"
    assert ref.tag == "22.04" and ref.digest == BUSYBOX_DIGEST
    other = parse_normalized_named("harbor.local/team/app:1.4")
    assert other.name == "harbor.local/team/app"
    assert other.familiar() == "harbor.local/team/app:1.4"
    assert other.path == "team/app"


def test_reference_is_frozen_and_hashable() -> None:
    ref = parse_normalized_named("ubuntu")
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]
    assert {ref, parse_normalized_named("docker.io/library/ubuntu")} == {ref}


def test_familiarize_accepts_reference() -> None:
    assert familiarize(parse_normalized_named("docker.io/library/ubuntu:22.04")) == "ubuntu:22.04"
    assert familiarize("index.docker.io/foo/bar:1") == "foo/bar:1"


def test_is_digest_and_regexes() -> None:
    assert is_digest(f"sha256:{DBCC}")
    assert not is_digest(DBCC)
    assert not is_digest(f"sha256:{DBCC.upper()}")
    assert not is_digest(f"sha256:{DBCC[:-1]}")
    assert not is_digest("sha512:" + "f" * 128)
    assert not is_digest("sha256:")
    assert not is_digest(":abc")
    assert IDENTIFIER_RE.fullmatch(DBCC)
    assert not IDENTIFIER_RE.fullmatch(DBCC[:63])
    assert DIGEST_RE.fullmatch("sha512:" + "f" * 128)
    assert DIGEST_RE.fullmatch("multihash+base58:" + "f" * 32)
    assert not DIGEST_RE.fullmatch("sha256:" + "f" * 31)


@pytest.mark.parametrize(
    ("name", "repo_tag"),
    [
        ("docker.io/library/alpine:3.19", ("alpine", "3.19")),
        ("docker.io/library/alpine", ("alpine", "latest")),
        (f"docker.io/library/alpine@sha256:{DBCC}", ("alpine", "")),
        (f"sha256:{DBCC}", ("", "")),
        ("harbor.local/team/app:1.4", ("harbor.local/team/app", "1.4")),
        ("<none>@sha256:" + DBCC, ("", "")),
    ],
)
def test_parse_repo_tag(name: str, repo_tag: tuple[str, str]) -> None:
    assert parse_repo_tag(name) == repo_tag
