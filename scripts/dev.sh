#!/usr/bin/env bash
# pyctl developer entry point.
#
#   bash scripts/dev.sh demo    set everything up, then run the demo (private containerd + registry)
#   bash scripts/dev.sh test    set everything up, then run lint, type checks and all tests
#   bash scripts/dev.sh setup   only install what is missing (apt packages, .venv, pyctl)
#   bash scripts/dev.sh bench   set up, then run the benchmarks against ctr
#
# Setup is idempotent: apt packages are installed only when missing, the venv is reused.
# It runs on Debian 12 and 13; a package this release does not offer is an error naming it.
# PYCTL_PYTHON: the interpreter the venv is made from (default: python3 on PATH, >= 3.11).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
APT_PACKAGES=(containerd runc docker-registry golang-github-containerd-containerd-dev
              busybox-static skopeo zstd docker.io tmux zsh fish valgrind)

# tests/test_wire_compat.py compiles containerd's API protos, which import gogo.proto and
# google/rpc/status.proto: Debian 12's containerd-dev (1.6) pulls these two in, Debian 13's
# (1.7) does not.
APT_PACKAGES+=(golang-github-gogo-protobuf-dev golang-github-gogo-googleapis-dev)
PYTHON="${PYCTL_PYTHON:-python3}"
VENV_PACKAGE=""  # the Debian package that gives $PYTHON its ensurepip, when it lacks one

die() {
    echo "setup: $*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

release_name() {  # e.g. "Debian 13 (trixie)"
    if [ ! -r /etc/os-release ]; then
        echo "this system"
        return
    fi
    (
        . /etc/os-release
        if [ -n "${VERSION_ID:-}" ]; then
            echo "${NAME%% *} ${VERSION_ID}${VERSION_CODENAME:+ ($VERSION_CODENAME)}"
        else
            echo "${PRETTY_NAME:-${ID:-this system}}"
        fi
    )
}

apt_offers() {  # PKG: this release's package lists have an installation candidate for it
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" {print $2; exit}')
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

has_ensurepip() {
    "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1
}

# The interpreter must be 3.11 or newer and able to make a venv. Debian's python3 needs the
# python3-venv package for that (ensurepip); another interpreter must bring its own.
check_python() {
    local path real
    path=$(command -v "$PYTHON") \
        || die "no $PYTHON on PATH: install Debian's python3 and python3-venv, or set PYCTL_PYTHON"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$path is Python $("$PYTHON" -c 'import platform; print(platform.python_version())')," \
               "pyctl needs 3.11 or newer: set PYCTL_PYTHON to one"
    has_ensurepip && return 0
    real=$(realpath "$path")
    if [ "$real" = "$(realpath /usr/bin/python3 2>/dev/null)" ]; then
        VENV_PACKAGE=python3-venv
    elif [[ "$real" =~ ^/usr/bin/python(3\.[0-9]+)$ ]]; then
        VENV_PACKAGE="python${BASH_REMATCH[1]}-venv"
    else
        die "$path ($real) cannot make a virtualenv: it has no ensurepip module;" \
            "install its venv support, or use Debian's: PYCTL_PYTHON=/usr/bin/python3"
    fi
    APT_PACKAGES+=("$VENV_PACKAGE")
}

setup_apt() {
    command -v apt-get >/dev/null \
        || die "apt-get not found: setup installs Debian packages and runs on Debian 12 or 13"
    local missing=() unavailable=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    as_root apt-get update -qq || die "apt-get update failed (see above); nothing was installed"
    for pkg in "${missing[@]}"; do
        apt_offers "$pkg" || unavailable+=("$pkg")
    done
    if [ "${#unavailable[@]}" -eq 1 ]; then
        die "package ${unavailable[0]} is not available on $(release_name):" \
            "apt-cache policy ${unavailable[0]} shows no installation candidate after" \
            "apt-get update; nothing was installed"
    elif [ "${#unavailable[@]}" -gt 1 ]; then
        die "packages ${unavailable[*]} are not available on $(release_name):" \
            "apt-cache policy shows no installation candidate after apt-get update;" \
            "nothing was installed"
    fi
    echo "setup: installing ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed (see above)"
}

venv_works() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

setup_venv() {
    if ! venv_works; then
        # none yet, or one a failed setup left half made, or its interpreter is gone
        [ ! -e "$VENV" ] || echo "setup: $VENV does not work; making it again" >&2
        rm -rf "$VENV"
        has_ensurepip || die "$PYTHON has no ensurepip module even with $VENV_PACKAGE" \
            "installed; cannot make $VENV"
        echo "setup: creating $VENV with $(command -v "$PYTHON")" >&2
        if ! "$PYTHON" -m venv "$VENV" || ! "$VENV/bin/python" -m pip install -q --upgrade pip
        then
            rm -rf "$VENV"
            die "could not make $VENV with $PYTHON (see above); removed what was made"
        fi
    fi
    # (Re)install pyctl and the dev tools; fast when nothing changed.
    "$VENV/bin/pip" install -q -e ".[dev]" \
        || die "pip install -e '.[dev]' into $VENV failed (see above)"
}

setup() {
    check_python
    setup_apt
    setup_venv
}

run_tests() {
    setup
    local rc=0
    echo "== ruff" >&2
    "$VENV/bin/ruff" check pyctl tests integration bench scripts || rc=1
    echo "== mypy --strict pyctl" >&2
    "$VENV/bin/mypy" --strict pyctl || rc=1
    echo "== pytest" >&2
    "$VENV/bin/pytest" -q -p no:cacheprovider tests integration "$@" || rc=1
    return "$rc"
}

case "${1:-}" in
    setup) setup ;;
    test) shift; run_tests "$@" ;;
    demo) setup; shift; exec "$VENV/bin/python" -m integration.demo "$@" ;;
    bench) setup; shift; exec "$VENV/bin/python" -m bench.run "$@" ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
