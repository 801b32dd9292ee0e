"""The package's shape: no import cycles (module-level or lazy), and no module too long to read
in one sitting (the teaching BPE aside)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "scratchgpt"
LONGEST = 600
LONG_ON_PURPOSE = {"tokenizers/bpe.py"}  # GPT-2's BPE written out to be read end to end


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the scratchgpt modules it imports}, lazy (function-level) imports included;
    the TYPE_CHECKING block of the package's __init__ is not an import at run time."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {
            id(child)
            for node in tree.body
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
            for child in ast.walk(node)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or id(node) in skipped:
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                hit = sub if sub in modules else target
                if hit in modules and hit != name:
                    graph[name].add(hit)
    return graph


def test_no_import_cycles():
    graph = _imports(_modules())
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the graph was really read


def test_no_module_is_too_long():
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if rel not in LONG_ON_PURPOSE:
            assert lines <= LONGEST, f"{rel} has {lines} lines: split it by concern"
