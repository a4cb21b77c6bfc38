"""The package's layers stay as its docstring draws them: no upward import, no import circle.

Every `import tunelab...` counts, at module level or inside a function, under TYPE_CHECKING
or not: a lazy upward import is still an upward dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tunelab

PACKAGE = Path(tunelab.__file__).parent


def _layers() -> list[str]:
    """The layer names, top first, as the package docstring lists them."""
    return re.findall(r"^    (\w+)  ", tunelab.__doc__, flags=re.MULTILINE)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The tunelab modules `path` imports (from-imports name the module and each name)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "tunelab"}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # `from tunelab.data import parallel` names a module; `... import check_file` not.
        graph[name] = {target for target in _imports(path) if target in modules} - {name}
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_the_docstring_names_every_subpackage_and_top_module() -> None:
    layers = set(_layers())
    present = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
               if (path.suffix == ".py" or (path / "__init__.py").is_file())}
    assert present - {"__init__", "__main__"} == layers


def test_no_module_imports_a_layer_above_its_own() -> None:
    rank = {name: index for index, name in enumerate(_layers())}
    upward = []
    for module, targets in _graph().items():
        source = _layer(module)
        if source not in rank:
            continue
        for target in targets:
            layer = _layer(target)
            if layer in rank and rank[layer] < rank[source]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_circles_between_modules() -> None:
    graph = _graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package's __init__ re-exporting its own modules is not a circle of ideas.
    circles = [c for c in circles if not any(_is_package_init(m, c) for m in c)]
    assert circles == []


def _is_package_init(module: str, circle: list[str]) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file() \
        and all(other == module or other.startswith(module + ".") for other in circle)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    # The test above must be able to fail: an import of cli from data is caught by _imports.
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from tunelab.cli.app import main\n")
    assert "tunelab.cli.app" in _imports(sample)
