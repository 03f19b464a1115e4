"""The pyctl demo: a private containerd started here, images seeded offline, pyctl at work.

    bash scripts/dev.sh demo          # sets up, then: python -m integration.demo

Everything the demo starts (containerd, its containers) is stopped again at the end, also
when a step fails.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from integration.images import build_image, build_index, write_oci_archive
from integration.testbed import Containerd

NAMESPACE = "pyctl-demo"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def show(cmd: list[str], env: dict[str, str]) -> None:
    """Run a pyctl command (``[python, -m, pyctl, ...]``), echoing it as the operator types it."""
    shown = ["pyctl", *cmd[3:]]
    print("$ " + " ".join(shlex.quote(c) for c in shown), flush=True)
    proc = subprocess.run(cmd, env=env, text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"demo: step failed (exit {proc.returncode}): {' '.join(shown)}")


def main() -> None:
    pyctl = [sys.executable, "-m", "pyctl"]
    with tempfile.TemporaryDirectory(prefix="pyctl-demo-") as tmp, Containerd() as cd:
        env = dict(os.environ, CONTAINERD_ADDRESS=cd.address, CONTAINERD_NAMESPACE=NAMESPACE)
        env.pop("PYCTL_CONFIG", None)

        def run(*args: str) -> None:
            show([*pyctl, *args], env)

        def ctr(*args: str) -> None:
            print("$ ctr " + " ".join(shlex.quote(a) for a in args), flush=True)
            out = cd.ctr(*args, namespace=NAMESPACE)
            sys.stdout.write(out.stdout)

        banner(f"a private containerd at {cd.address} (namespace {NAMESPACE})")
        run("version")
        run("info")

        banner("seed images offline: busybox and a multi-platform index, imported with ctr")
        tmpdir = Path(tmp)
        bb = write_oci_archive(
            tmpdir / "busybox.tar", build_image(), "docker.io/library/busybox:1.36"
        )
        multi = write_oci_archive(tmpdir / "multi.tar", build_index(), "harbor.local/team/app:1.4")
        ctr("images", "import", str(bb.path))
        ctr("images", "import", "--all-platforms", str(multi.path))

        banner("list, tag, inspect")
        run("images")
        run("tag", "busybox:1.36", "harbor.local/team/tools:latest")
        run("images", "--format", "{{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Platform}}")
        run("images", "--format", "json", "harbor.local/team/app")
        run("inspect", "--format", "{{.Id}} {{json .RootFS}}", "busybox:1.36")

        banner("containers made by ctr, listed by pyctl")
        ctr("run", "-d", "docker.io/library/busybox:1.36", "demo-web", "sleep", "300")
        ctr("containers", "create", "docker.io/library/busybox:1.36", "demo-idle", "true")
        run("ps")
        run("ps", "-a", "--format", "table {{.Names}}\t{{.Status}}\t{{.Command}}")
        run("namespace", "ls")

        banner("rmi refuses an image in use, removes the tag we made")
        print("$ pyctl rmi busybox:1.36   # in use: refused", flush=True)
        proc = subprocess.run(
            [*pyctl, "rmi", "busybox:1.36"], env=env, text=True, capture_output=True
        )
        sys.stdout.write(proc.stderr)
        run("rmi", "harbor.local/team/tools:latest")
        run("images", "-q")

        banner("done: stopping containerd and removing everything it held")
        cd.clean_namespace(NAMESPACE)


if __name__ == "__main__":
    main()
