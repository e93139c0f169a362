"""The arrows point one way: ``fusion`` never imports ``downstream`` (downstream registers into fusion's registries
through entry points instead)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.append(arg.value)
    return names


def test_fusion_never_imports_downstream():
    offenders = [f"{p.relative_to(ROOT)}: {name}" for p in sorted((ROOT / "fusion").rglob("*.py"))
                 for name in _imports(p) if name == "downstream" or name.startswith("downstream.")]
    assert offenders == []
    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "fusion").rglob("*.py"))
    assert '"downstream.' not in text and "'downstream." not in text  # no import by string either


def test_downstream_plugins_are_found_through_entry_points():
    from fusion.fusers import list_fusers
    from fusion.stream.perceive import list_perceivers

    assert "tcmoa_e2e" in list_fusers()
    assert {"segment", "detect"} <= set(list_perceivers())
