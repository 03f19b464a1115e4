"""WWW-Authenticate challenges as registries send them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyctl.registry.challenge import Challenge, parse_www_authenticate

# ---------------------------------------------------------------------------------------------
# WWW-Authenticate
# ---------------------------------------------------------------------------------------------


def one(value: str) -> Challenge:
    found = parse_www_authenticate([value])
    assert len(found) == 1, found
    return found[0]


def test_docker_hub_challenge() -> None:
    ch = one(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    assert ch.scheme == "bearer"
    assert ch.realm == "https://auth.docker.io/token"
    assert ch.service == "registry.docker.io"
    assert ch.params["scope"] == "repository:samalba/my-app:pull,push"
    assert ch.scopes == ("repository:samalba/my-app:pull,push",)
    assert ch.error is None


@pytest.mark.parametrize(
    ("value", "scheme", "params"),
    [
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        ("BASIC REALM=x", "basic", {"realm": "x"}),
        ("Basic", "basic", {}),
        ('  Bearer   realm = "r" ,  service = s  ', "bearer", {"realm": "r", "service": "s"}),
        ('Bearer realm="a\\"b\\\\c\\d"', "bearer", {"realm": 'a"b\\cd'}),
        (
            'Bearer realm="with, comma", service="x"',
            "bearer",
            {"realm": "with, comma", "service": "x"},
        ),
        ('Bearer realm="", service=""', "bearer", {"realm": "", "service": ""}),
        ("Bearer realm=", "bearer", {"realm": ""}),
        (
            "Bearer realm=https://auth.example/token?x=1, service=reg",
            "bearer",
            {"realm": "https://auth.example/token?x=1", "service": "reg"},
        ),
        (
            'Bearer realm="r",scope="a:b:pull b:c:push"',
            "bearer",
            {"realm": "r", "scope": "a:b:pull b:c:push"},
        ),
        ('Bearer realm="r", realm="second"', "bearer", {"realm": "second"}),
        ('Bearer realm="unterminated', "bearer", {}),
        ('Bearer service="s", realm="unterminated\\', "bearer", {"service": "s"}),
        ('Bearer realm="r" junk, service="s"', "bearer", {"realm": "r", "service": "s"}),
        ('Bearer ,, realm="r",,', "bearer", {"realm": "r"}),
        (
            'Bearer realm="r", error="insufficient_scope", error_description="need \\"push\\""',
            "bearer",
            {"realm": "r", "error": "insufficient_scope", "error_description": 'need "push"'},
        ),
        ('Bearer realm="ünïcode"', "bearer", {"realm": "ünïcode"}),
    ],
)
def test_parse_single_challenge(value: str, scheme: str, params: dict[str, str]) -> None:
    ch = one(value)
    assert ch.scheme == scheme
    assert dict(ch.params) == params


def test_error_params() -> None:
    ch = one('Bearer realm="r",error="invalid_token",error_description="expired"')
    assert ch.error == "invalid_token"
    assert ch.params["error_description"] == "expired"


def test_multiple_headers_bearer_first() -> None:
    found = parse_www_authenticate(
        ['Basic realm="basic-realm"', 'Digest realm="d", nonce="n"', 'Bearer realm="https://t/"']
    )
    assert [c.scheme for c in found] == ["bearer", "basic", "digest"]
    assert found[0].realm == "https://t/"
    assert found[1].realm == "basic-realm"


def test_comma_joined_challenges() -> None:
    # what requests' resp.headers gives for two WWW-Authenticate headers
    found = parse_www_authenticate(['Basic realm="b", Bearer realm="https://t/", service="s"'])
    assert [(c.scheme, dict(c.params)) for c in found] == [
        ("bearer", {"realm": "https://t/", "service": "s"}),
        ("basic", {"realm": "b"}),
    ]
    found = parse_www_authenticate(["Negotiate, Basic"])
    assert [c.scheme for c in found] == ["basic", "negotiate"]


@pytest.mark.parametrize(
    "value",
    ["", "   ", ",", "=", '"Bearer"', "realm=x", '=realm="x"', "\x00\x01", "é", '"', "\\"],
)
def test_garbage_yields_nothing(value: str) -> None:
    assert parse_www_authenticate([value]) == []


def test_garbage_does_not_hide_valid_parts() -> None:
    assert parse_www_authenticate(["@@@", 'Bearer realm="r"', ""]) == [
        Challenge("bearer", {"realm": "r"})
    ]
    assert parse_www_authenticate(['=x, Bearer realm="r"'])[0].realm == "r"
    assert parse_www_authenticate(None) == []
    assert parse_www_authenticate('Basic realm="x"')[0].scheme == "basic"  # a bare string


def test_token68_is_tolerated() -> None:
    found = parse_www_authenticate(["Negotiate a87421000492aa874209af8bc028", 'Bearer realm="r"'])
    assert [c.scheme for c in found] == ["bearer", "negotiate"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from(list('Bb ea,r="\\=x\t\né')), max_size=60)
        | st.text(max_size=60),
        max_size=4,
    )
)
def test_parser_never_raises_or_hangs(values: list[str]) -> None:
    for ch in parse_www_authenticate(values):
        assert ch.scheme and ch.scheme == ch.scheme.lower()
        assert all(k == k.lower() for k in ch.params)
