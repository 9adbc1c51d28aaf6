"""The package's import graph: no cycles (imports inside functions count), and every module imports
on its own, whatever was imported before it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vidssl"


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """vidssl modules that ``name`` imports anywhere in its body (a package's own children excepted)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            if target in modules and target != name and not target.startswith(name + "."):
                if not (modules[target].name == "__init__.py" and name.startswith(target + ".")):
                    found.add(target)
    return found


def test_no_import_cycles() -> None:
    modules = module_names()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    # a package __init__ re-exporting its children is not a cycle of the children
    plain = {n: {t for t in ts if modules[t].name != "__init__.py"} for n, ts in graph.items()
             if modules[n].name != "__init__.py"}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(plain.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(plain):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_module_imports_on_its_own() -> None:
    """Each module in a clean slate of vidssl modules (third-party modules stay loaded, for speed)."""
    names = sorted(module_names())
    code = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "import torch, torchvision  # noqa: F401\n"
        "failed = []\n"
        "for name in names:\n"
        "    for key in [k for k in sys.modules if k == 'vidssl' or k.startswith('vidssl.')]:\n"
        "        del sys.modules[key]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


# (lower package, package above it): the lower one must not import the upper (issue 24). The engine
# trains methods, so methods cannot lean on the engine; tracking writes what data reads, so data
# cannot lean on tracking. Pieces both need live below both (vidssl.ema, vidssl.distributed,
# vidssl.data.tracks).
FORBIDDEN = [
    ("vidssl.methods", "vidssl.engine"),
    ("vidssl.data", "vidssl.tracking"),
    *[(lower, upper) for lower in ("vidssl.data", "vidssl.losses", "vidssl.models", "vidssl.ema", "vidssl.distributed")
      for upper in ("vidssl.engine", "vidssl.methods")],
]


def test_layering() -> None:
    """No module of a lower package imports a higher one (imports inside functions count)."""
    modules = module_names()
    found = [
        f"{name} imports {target}"
        for name, path in modules.items()
        for lower, upper in FORBIDDEN
        if name == lower or name.startswith(lower + ".")
        for target in sorted(imports_of(name, path, modules))
        if target == upper or target.startswith(upper + ".")
    ]
    assert not found, "; ".join(found)
