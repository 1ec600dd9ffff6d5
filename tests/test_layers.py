"""The layer rule: a package of ``emoca`` imports only packages below it (any import,
module-level or inside a function, since lazy imports are still dependencies)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "emoca"

# top to bottom; each may import itself and anything after it
ORDER = ["cli", "api", "viewer", "animation", "pipeline", "train", "model", "data", "nets",
         "losses", "render", "face_model", "detect", "io", "assets"]
# small shared modules every layer may use; they import nothing above ``errors``
SHARED = {"errors": set(), "device": {"errors"}, "geometry": set(), "metrics": set()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "emoca"


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {_layer(n) for n in names if n == "emoca" or n.startswith("emoca.")}
    return out


def test_every_package_is_placed() -> None:
    found = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())
             and p.name != "__init__.py" and p.name != "__pycache__"}
    assert found <= set(ORDER) | set(SHARED), sorted(found - set(ORDER) - set(SHARED))


def test_no_layer_imports_a_higher_one() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        layer = rel.parts[0].removesuffix(".py")
        if layer == "__init__":
            continue  # the package's lazy name table points at every layer by design
        for dep in _imports(path) - {layer, "emoca"}:
            if layer in SHARED:
                ok = dep in SHARED[layer]
            else:
                ok = dep in SHARED or ORDER.index(dep) > ORDER.index(layer)
            if not ok:
                bad.append(f"{rel} imports emoca.{dep}")
    assert not bad, "\n".join(sorted(bad))
