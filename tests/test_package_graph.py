"""The packages import one way (docs/ARCHITECTURE.md): read from every module's source, top-level and lazy imports
alike, so a new edge fails here before it makes a cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_runtime", "train", "compress", "benchmarks", "web")
SHARED = {"config", "runs"}           # mask2face.config / mask2face.runs serve every package but edge_runtime
ALLOWED = {
    "edge_runtime": set(),
    "train": {"edge_runtime"} | SHARED,
    "compress": {"train", "edge_runtime"} | SHARED,
    "web": {"edge_runtime"},
    "benchmarks": {"train", "compress", "edge_runtime", "web"} | SHARED,
}


def _ours(tree: ast.AST) -> set[str]:
    """The mask2face packages and top-level modules a module imports."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "mask2face" else [f"mask2face.{a.name}" for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("mask2face.")}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_sits_below_it(package):
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        extra = _ours(ast.parse(path.read_text(), str(path))) - ALLOWED[package] - {package}
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"imports against docs/ARCHITECTURE.md's one-way map: {bad}"


def test_the_reader_sees_every_import_form():
    tree = ast.parse("from mask2face import config, runs\nimport mask2face.train.pairs\n"
                     "def f():\n    from mask2face.benchmarks.bench import x\n")
    assert _ours(tree) == {"config", "runs", "train", "benchmarks"}
