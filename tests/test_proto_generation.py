"""The committed generated modules in pyctl/_api must match a fresh regeneration."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENPROTO = ROOT / "scripts" / "genproto.py"
API_DIR = ROOT / "pyctl" / "_api"

SERVICES = (
    "content",
    "images",
    "leases",
    "snapshots",
    "diff",
    "containers",
    "tasks",
    "namespaces",
    "version",
    "introspection",
    "events",
)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("genproto") / "_api"
    result = subprocess.run(
        [sys.executable, str(GENPROTO), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"genproto failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_regeneration_is_byte_identical(regenerated: Path) -> None:
    fresh = _tree(regenerated)
    committed = _tree(API_DIR)
    assert fresh, "genproto produced no files"
    hint = "run `.venv/bin/python scripts/genproto.py` and commit pyctl/_api"
    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    assert not missing, f"generated files missing from pyctl/_api ({hint}): {missing}"
    assert not extra, f"stale or hand-written files in pyctl/_api ({hint}): {extra}"
    differing = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not differing, f"pyctl/_api is out of date ({hint}): {differing}"


def test_regeneration_removes_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "_api"
    stale = out / "services" / "gone" / "v1" / "gone_pb2.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("# stale\n")
    (stale.parent / "__init__.py").write_text("")
    subprocess.run([sys.executable, str(GENPROTO), str(out)], cwd=ROOT, check=True)
    assert not (out / "services" / "gone").exists()
    assert (out / "services" / "images" / "v1" / "images_pb2.py").is_file()


def test_generated_imports_are_absolute() -> None:
    for path in API_DIR.rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("from types ") or stripped.startswith("import types"):
                pytest.fail(f"{path}: import shadows the stdlib types module: {line!r}")


@pytest.mark.parametrize(
    "module",
    [
        "pyctl._api.types.descriptor_pb2",
        "pyctl._api.types.mount_pb2",
        "pyctl._api.types.platform_pb2",
        "pyctl._api.types.task.task_pb2",
        *(f"pyctl._api.services.{name}.v1.{name}_pb2" for name in SERVICES),
        *(f"pyctl._api.services.{name}.v1.{name}_pb2_grpc" for name in SERVICES),
    ],
)
def test_module_importable(module: str) -> None:
    mod = importlib.import_module(module)
    assert (API_DIR.parent.parent / (module.replace(".", "/") + ".pyi")).is_file()
    if module.endswith("_pb2_grpc"):
        service = module.split(".")[3].capitalize()  # e.g. images -> ImagesStub
        assert hasattr(mod, f"{service}Stub")
