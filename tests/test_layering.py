"""Dependencies point one way (see influence_ssl/__init__.py): checked from the import statements."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "influence_ssl"
MATH = {"pergrad", "influence", "optimizers", "weights"}
# Which top-level parts of the package each part may import.
ALLOWED = {
    **{part: MATH for part in MATH},
    "ssl": MATH | {"ssl"},
    "models": MATH | {"models"},
    "data": {"data"},
    "augment": {"augment"},
    "metrics": {"metrics"},
    "stats": set(),
    "fields": set(),
}


def project_imports(path):
    """Top-level names imported from `influence_ssl` or `experiments` by one file."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "influence_ssl":
                modules += [f"influence_ssl.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "experiments":
                names.add("experiments")
            elif parts[0] == "influence_ssl" and len(parts) > 1:
                names.add(parts[1])
    return names


def part_of(path):
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    imported = project_imports(path)
    assert "experiments" not in imported, f"{path} imports experiments/: the package never may."
    part = part_of(path)
    if part in ALLOWED:
        extra = imported - ALLOWED[part]
        assert not extra, f"{path} ({part}) may not import {sorted(extra)}"


def test_checker_sees_violations(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from influence_ssl.trainer import loop\nimport experiments.synthetic\n")
    assert project_imports(bad) == {"trainer", "experiments"}
