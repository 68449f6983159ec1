"""The layers of docs/design.md, checked on the source itself (AST: imports inside functions
count, and so do the command modules the CLI registry names), plus the 400-line limit.

A new folder fails `test_every_folder_has_a_place` until it is given its place in LAYERS
below (and in docs/design.md's picture).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("amc_tf", "converters", "benchmarks")  # the product's folders
MAPPED = ("converters", "benchmarks")  # folders that import as amc_tf.<folder> (setup.cfg's package_dir)
CHECKED = PRODUCT + ("scripts", "tests")  # folders whose .py files are read
MAX_LINES = 400

CORE = "amc_tf/core"
MIDDLE = {"converters", "benchmarks", "benchmarks/adbemu"}
SERVICES = {"amc_tf/services", "amc_tf/services/layerdiff", "amc_tf/services/study"}
CLI = "amc_tf/cli"
# folder -> the other folders its modules may import. Bottom to top; keep docs/design.md in step.
LAYERS: dict[str, set[str]] = {
    CORE: set(),
    "converters": {CORE},
    "benchmarks": {CORE, "converters"},  # a benchmark target may build the models it times
    "benchmarks/adbemu": {CORE, "benchmarks"},
    "amc_tf/services": {CORE} | MIDDLE,
    "amc_tf/services/layerdiff": {CORE} | MIDDLE,
    "amc_tf/services/study": {CORE} | MIDDLE | {"amc_tf/services"},  # reuses evaluate
    CLI: {CORE} | MIDDLE | SERVICES,
    "amc_tf": {CORE} | MIDDLE | SERVICES | {CLI},  # entry points: __init__, __main__, demo
    # the project's own tools, outside the product: they may use all of it, nothing uses them
    "benchmarks/perf": {CORE} | MIDDLE | SERVICES | {CLI, "amc_tf"},
    "scripts": {CORE} | MIDDLE | SERVICES | {CLI, "amc_tf"},
}
REGISTRY = ("amc_tf.cli.commands", "COMMAND_MODULES", "amc_tf.cli")  # module, tuple, package of its names


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in MAPPED:
        parts.insert(0, "amc_tf")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    """Every .py file of the product and of the project's tools, by module name."""
    files = {}
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[_module_name(path)] = path
    return files


SOURCES = _sources()


def _folder(module: str) -> str:
    return SOURCES[module].parent.relative_to(ROOT).as_posix()


def _resolve(name: str) -> str | None:
    """The deepest project module `name` names (a.b.c -> a.b.c, else a.b, ...)."""
    while name:
        if name in SOURCES and name.split(".")[0] == "amc_tf":
            return name
        name = name.rpartition(".")[0]
    return None


def _registry_names(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == REGISTRY[1] for t in node.targets):
            return [f"{REGISTRY[2]}.{elt.value}" for elt in node.value.elts]
    raise AssertionError(f"{REGISTRY[0]} has no {REGISTRY[1]}")


def _imports(module: str) -> list[tuple[int, str]]:
    """(line, imported project module) for every import in the file, wherever it stands."""
    path = SOURCES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in SOURCES else base for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        for target in dict.fromkeys(_resolve(name) for name in names):
            if target and target != module:
                found.append((node.lineno, target))
    if module == REGISTRY[0]:
        found += [(0, _resolve(name) or name) for name in _registry_names(tree)]
    return found


def _graph() -> dict[str, set[str]]:
    return {module: {target for _, target in _imports(module)} for module in SOURCES if module.split(".")[0] != "tests"}


def test_every_folder_has_a_place():
    folders = {_folder(m) for m in SOURCES if m.split(".")[0] != "tests"}
    assert folders <= set(LAYERS), f"folders without a layer (add them to LAYERS and docs/design.md): {sorted(folders - set(LAYERS))}"
    assert set(LAYERS) <= folders, f"LAYERS names folders that do not exist: {sorted(set(LAYERS) - folders)}"


def test_the_layers_themselves_have_no_cycle():
    seen: dict[str, int] = {}

    def visit(folder: str, path: tuple[str, ...]) -> None:
        assert folder not in path, f"LAYERS has a cycle: {' -> '.join(path + (folder,))}"
        if seen.get(folder):
            return
        for lower in LAYERS[folder]:
            visit(lower, path + (folder,))
        seen[folder] = 1

    for folder in LAYERS:
        visit(folder, ())


def test_imports_run_down_the_layers():
    wrong = []
    for module in SOURCES:
        if module.split(".")[0] == "tests":
            continue
        here = _folder(module)
        for line, target in _imports(module):
            there = _folder(target)
            if there != here and there not in LAYERS[here]:
                wrong.append(f"{SOURCES[module].relative_to(ROOT)}:{line} imports {target} ({here} -> {there})")
    assert not wrong, "imports against the layers of docs/design.md:\n" + "\n".join(wrong)


def test_no_folder_imports_a_folder_that_imports_it_back():
    edges = {(_folder(a), _folder(b)) for a, targets in _graph().items() for b in targets}
    back = sorted(f"{a} <-> {b}" for a, b in edges if a < b and (b, a) in edges)
    assert not back, f"folders importing each other: {back}"


def test_no_file_level_import_cycle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert not cycles, f"modules that import each other (directly or around a loop): {cycles}"


@pytest.mark.parametrize("top", CHECKED)
def test_no_file_over_the_line_limit(top):
    over = {str(p.relative_to(ROOT)): n for m, p in SOURCES.items() if p.relative_to(ROOT).parts[0] == top
            and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not over, f"files over {MAX_LINES} lines: {over}"


def test_the_checks_see_what_they_claim():
    """The walk reaches imports inside functions and the registry's command modules."""
    convert = _imports("amc_tf.converters.convert")
    assert ("amc_tf.converters.quantized_export" in {t for _, t in convert}
            and "amc_tf.core.torch_reference" in {t for _, t in convert}), convert  # both imported in functions
    registry = {t for _, t in _imports(REGISTRY[0])}
    assert {"amc_tf.cli.convert_cmd", "amc_tf.cli.bench_cmd", "amc_tf.cli.eval_cmd"} <= registry, registry
    assert len(SOURCES) > 60 and all(top in {p.relative_to(ROOT).parts[0] for p in SOURCES.values()} for top in CHECKED)


def test_importing_amc_tf_stays_light():
    code = ("import sys, amc_tf; heavy = ('tensorflow', 'numpy', 'click', 'torch', 'onnx', 'PIL'); "
            "print(amc_tf.__version__, sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.1.0", "[]"], out.stdout
