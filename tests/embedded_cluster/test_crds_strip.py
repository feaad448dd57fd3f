"""scripts/strip-crds: the committed schema-only copies are fresh and carry no
descriptions; --check notices a stale, missing or unexpected copy."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "strip-crds"
SOURCE = REPO.parent / "shared" / "crds"
TARGET = REPO / "service" / "embedded_cluster" / "crds"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(path: Path) -> list[Any]:
    return list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=LOADER))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=REPO)


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("strip_crds", str(SCRIPT))
    spec = importlib.util.spec_from_loader("strip_crds", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def schema_descriptions(node: Any, *, names: bool = False) -> int:
    """How many schema-level ``description`` keys ``node`` holds (property names excluded)."""
    if isinstance(node, list):
        return sum(schema_descriptions(item) for item in node)
    if not isinstance(node, dict):
        return 0
    found = 0
    for key, value in node.items():
        if names:
            found += schema_descriptions(value)
        elif key == "description":
            found += 1
        elif key not in ("example", "default", "enum", "x-doc-examples"):
            found += schema_descriptions(value, names=key == "properties")
    return found


@pytest.fixture(scope="module")
def source_dir() -> Path:
    if not any(SOURCE.glob("*.yaml")):
        pytest.fail(f"the upstream CRDs are missing: expected them in {SOURCE} (../shared/crds next to the clone)")
    return SOURCE


def test_committed_copies_are_fresh(source_dir: Path) -> None:
    result = run("--check", "--source", str(source_dir))
    assert result.returncode == 0, result.stderr


def test_every_upstream_crd_has_a_copy_and_the_copies_have_no_descriptions(source_dir: Path) -> None:
    upstream = sorted(path.name for path in source_dir.glob("*.yaml"))
    assert set(upstream) <= {path.name for path in TARGET.glob("*.yaml")}
    assert sum(schema_descriptions(load_all(path)) for path in source_dir.glob("*.yaml")) > 100
    for path in TARGET.glob("*.yaml"):
        assert schema_descriptions(load_all(path)) == 0, path.name


def without_descriptions(node: Any, *, names: bool = False) -> Any:
    """The test's own stripping, to compare the script's output with."""
    if isinstance(node, list):
        return [without_descriptions(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: value if key in ("example", "default", "enum", "x-doc-examples") and not names
            else without_descriptions(value, names=key == "properties" and not names)
            for key, value in node.items() if names or key != "description"}


def test_stripping_changes_nothing_but_descriptions(source_dir: Path) -> None:
    for source in source_dir.glob("*.yaml"):
        original, stripped = load_all(source), load_all(TARGET / source.name)
        assert stripped == without_descriptions(original), source.name


def test_a_property_named_description_and_data_values_are_kept() -> None:
    strip = load_script().strip
    schema = {"type": "object", "description": "drop me", "properties": {
        "description": {"type": "string", "description": "drop me too"},
        "note": {"type": "object", "default": {"description": "data"}, "example": {"description": "data"},
                 "x-doc-examples": [{"description": "data"}]}},
        "items": [{"description": "x", "type": "string"}]}
    assert strip(schema) == {"type": "object", "properties": {
        "description": {"type": "string"},
        "note": {"type": "object", "default": {"description": "data"}, "example": {"description": "data"},
                 "x-doc-examples": [{"description": "data"}]}},
        "items": [{"type": "string"}]}


def test_check_reports_stale_missing_and_unexpected_copies(source_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "crds"
    shutil.copytree(TARGET, target)
    stale = target / "virtualdisksnapshots.yaml"
    stale.write_text(stale.read_text() + "# edited by hand\n")
    (target / "virtualdisks.yaml").unlink()
    (target / "stray.yaml").write_text("kind: Nothing\n")
    result = run("--check", "--source", str(source_dir), "--target", str(target))
    assert result.returncode == 1
    assert "virtualdisksnapshots.yaml: stale" in result.stderr
    assert "virtualdisks.yaml: missing" in result.stderr
    assert "stray.yaml: no upstream CRD" in result.stderr
    assert "dataexports.yaml" not in result.stderr   # hand-written, never stale


def test_writing_regenerates_identical_copies(source_dir: Path, tmp_path: Path) -> None:
    result = run("--source", str(source_dir), "--target", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for path in source_dir.glob("*.yaml"):
        assert (tmp_path / path.name).read_text() == (TARGET / path.name).read_text()


def test_a_missing_source_is_a_clear_failure(tmp_path: Path) -> None:
    result = run("--check", "--source", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "no CRDs found" in result.stderr
