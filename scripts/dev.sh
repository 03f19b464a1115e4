#!/usr/bin/env bash
# pyctl developer entry point.
#
#   bash scripts/dev.sh demo    set everything up, then run the demo (private containerd + registry)
#   bash scripts/dev.sh test    set everything up, then run lint, type checks and all tests
#   bash scripts/dev.sh setup   only install what is missing (apt packages, .venv, pyctl)
#   bash scripts/dev.sh bench   set up, then run the benchmarks against ctr
#
# Setup is idempotent: apt packages are installed only when missing, the venv is reused.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
APT_PACKAGES=(containerd runc docker-registry golang-github-containerd-containerd-dev
              busybox-static skopeo zstd docker.io tmux zsh fish)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

setup_apt() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup: installing ${missing[*]}" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

setup_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "setup: creating $VENV" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
    fi
    # (Re)install pyctl and the dev tools; fast when nothing changed.
    "$VENV/bin/pip" install -q -e ".[dev]"
}

setup() {
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
