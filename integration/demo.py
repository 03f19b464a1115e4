"""The pyctl demo: the mission line against a private containerd and a Harbor-like registry.

    bash scripts/dev.sh demo          # sets up, then: python -m integration.demo

It starts, in temporary directories and on loopback only:

* a private containerd (its own socket, root and state; the CRI plugin on),
* a registry with TLS from its own CA and Harbor-style token auth (user ``admin``),
* a hosts.toml that maps the name ``harbor.local`` to that registry, with its CA,

seeds an image offline, and then runs what an operator runs on a node: ``pyctl hosts``,
``pyctl login harbor.local``, ``pyctl -n k8s.io pull harbor.local/team/app:1.4``, ``images``,
``tag``, ``push``, ``ctr -n k8s.io run --rm`` of the pulled image, listing of containers, and
``rmi``. Everything it started is stopped at the end, also when a step fails.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from integration.images import build_image, build_index, write_oci_archive
from integration.testbed import (
    CertAuthority,
    Containerd,
    Registry,
    TokenAuth,
    skopeo,
    write_cert_dir,
)

USER, PASSWORD = "admin", "Harbor12345"
K8S = "k8s.io"
IMAGE = "harbor.local/team/app:1.4"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


class Demo:
    def __init__(self, cd: Containerd, tmp: Path, env: dict[str, str]) -> None:
        self.cd = cd
        self.tmp = tmp
        self.env = env

    def pyctl(self, *args: str, stdin: str | None = None, shown: str | None = None) -> str:
        """Run pyctl as an operator would type it; stop the demo if it fails."""
        print("$ " + (shown or "pyctl " + " ".join(shlex.quote(a) for a in args)), flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pyctl", *args],
            env=self.env,
            text=True,
            capture_output=True,
            input=stdin,
        )
        sys.stdout.write(proc.stderr)
        sys.stdout.write(proc.stdout)
        sys.stdout.flush()
        if proc.returncode != 0:
            raise SystemExit(f"demo: step failed (exit {proc.returncode}): pyctl {' '.join(args)}")
        return proc.stdout

    def ctr(self, *args: str, namespace: str) -> None:
        print(f"$ ctr -n {namespace} " + " ".join(shlex.quote(a) for a in args), flush=True)
        sys.stdout.write(self.cd.ctr(*args, namespace=namespace).stdout)
        sys.stdout.flush()


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="pyctl-demo-") as tmpname,
        Containerd() as cd,
    ):
        tmp = Path(tmpname)
        ca = CertAuthority(tmp / "ca", common_name="demo harbor CA")
        tls = ca.issue_server_cert("harbor")
        auth = TokenAuth(users={USER: PASSWORD}, permissions={USER: {"*": "pull,push"}}, tls=tls)
        with Registry(tls=tls, auth=auth) as registry:
            run_demo(cd, registry, ca, tmp)


def run_demo(cd: Containerd, registry: Registry, ca: CertAuthority, tmp: Path) -> None:
    # Node configuration: hosts.toml maps harbor.local to the registry and trusts its CA;
    # pyctl.toml points pyctl at that hosts directory; credentials go to a private config.json.
    certs_d = tmp / "certs.d"
    host_dir = certs_d / "harbor.local"
    host_dir.mkdir(parents=True)
    shutil.copy(ca.cert_path, host_dir / "ca.crt")
    (host_dir / "hosts.toml").write_text(f'server = "https://{registry.host}"\nca = "ca.crt"\n')
    config = tmp / "pyctl.toml"
    config.write_text(f'hosts_dir = ["{certs_d}"]\n')
    env = dict(
        os.environ,
        CONTAINERD_ADDRESS=cd.address,
        PYCTL_CONFIG=str(config),
        DOCKER_CONFIG=str(tmp / "docker"),
    )
    env.pop("CONTAINERD_NAMESPACE", None)
    demo = Demo(cd, tmp, env)

    banner(f"a private containerd ({cd.address}) and a Harbor-like registry at {registry.host}")
    demo.pyctl("version")
    print(f"$ cat {host_dir}/hosts.toml")
    print((host_dir / "hosts.toml").read_text(), end="", flush=True)

    banner("seed the registry offline: team/app:1.4 (busybox-based) and a multi-platform tools:1")
    seed_dir = write_cert_dir(tmp / "seed-certs" / registry.host, ca=ca.cert_path)
    app = write_oci_archive(tmp / "app.tar", build_image(variant_content="app 1.4"), IMAGE)
    tools = write_oci_archive(tmp / "tools.tar", build_index(), "harbor.local/team/tools:1")
    for archive, ref, extra in ((app, "team/app:1.4", []), (tools, "team/tools:1", ["--all"])):
        skopeo(
            "copy",
            *extra,
            "--quiet",
            "--dest-creds",
            f"{USER}:{PASSWORD}",
            "--dest-cert-dir",
            str(seed_dir),
            f"oci-archive:{archive.path}",
            f"docker://{registry.host}/{ref}",
        )
    print(f"pushed {IMAGE} and harbor.local/team/tools:1 with skopeo", flush=True)

    banner("how pyctl will reach harbor.local")
    demo.pyctl("hosts", "harbor.local")

    banner("log in once; later pulls and pushes reuse the credentials")
    demo.pyctl(
        "login",
        "harbor.local",
        "-u",
        USER,
        "--password-stdin",
        stdin=PASSWORD + "\n",
        shown=f"echo '{PASSWORD}' | pyctl login harbor.local -u {USER} --password-stdin",
    )

    banner("the mission: pull for the kubelet")
    demo.pyctl("-n", K8S, "pull", IMAGE)
    demo.pyctl("-n", K8S, "pull", "--all-platforms", "harbor.local/team/tools:1")
    demo.pyctl("-n", K8S, "images")
    print("# the CRI plugin has adopted the images (its own sha256:<config> records):")
    demo.ctr("images", "ls", "-q", namespace=K8S)
    demo.ctr("run", "--rm", IMAGE, "demo-run", "echo", f"hello from {IMAGE}", namespace=K8S)

    banner("tag and push back to the registry")
    demo.pyctl("-n", K8S, "tag", IMAGE, "harbor.local/team/app:1.4-node")
    demo.pyctl("-n", K8S, "push", "harbor.local/team/app:1.4-node")
    demo.pyctl("-n", K8S, "images", "--format", "{{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Platform}}")

    banner("containers made by ctr, listed by pyctl")
    demo.ctr("run", "-d", IMAGE, "demo-web", "sleep", "300", namespace=K8S)
    demo.pyctl("-n", K8S, "ps")
    demo.pyctl("-n", K8S, "inspect", "--format", "{{.Id}} {{json .RootFS}}", IMAGE)
    demo.pyctl("namespace", "ls")

    banner("remove the extra tag, log out")
    demo.pyctl("-n", K8S, "rmi", "harbor.local/team/app:1.4-node")
    demo.pyctl("logout", "harbor.local")

    banner("done: stopping containerd and the registry, removing everything they held")
    cd.clean_namespace(K8S, delete=False)


if __name__ == "__main__":
    main()
