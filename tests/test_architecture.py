"""Architecture checks: tunelab's layering, read from the source with ``ast`` (never imported).

Every check is a plain function of a source root (the folder holding ``tunelab/``), so the
meta-tests at the bottom can run it on a modified copy and prove that it can fail.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# The layer map (ARCHITECTURE.md points here). A module may import only modules of its own
# layer or a lower one; its layer is the longest matching prefix below (``tunelab.data``
# covers ``tunelab.data.sources``). The root package ``tunelab`` matches by exact name only.
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("tunelab.errors", "tunelab.version", "tunelab.utils", "tunelab.rundir"),
    1: ("tunelab.models", "tunelab.evaluation", "tunelab.data", "tunelab.reporting"),
    2: ("tunelab.methods",),
    3: ("tunelab.config",),
    4: ("tunelab.tasks",),
    5: ("tunelab.training",),
    6: ("tunelab.workflows",),
    7: ("tunelab.api", "tunelab.cli", "tunelab.__main__", "tunelab"),
}
ROOT = "tunelab"
ENTRY_POINTS = ("tunelab.api", "tunelab.cli")  # rule 4: nothing under src imports these
MAX_FILE_LINES, MAX_API_LINES, MAX_FUNCTION_LINES = 600, 300, 120

# Rule 7: built-in method names that legitimately appear outside methods/ in another meaning.
# (path relative to the source root, name)
ALLOWED_NAME_USES: set[tuple[str, str]] = {
    # activation_checkpointing: Literal["none", "selective", "full"], not the method
    ("tunelab/config/sections.py", "full"),
    ("tunelab/evaluation/human.py", "prompt"),  # the "prompt" field of a saved prediction row
    ("tunelab/reporting/report.py", "prompt"),  # the "prompt" column of the predictions table
}


def module_files(root: Path) -> dict[str, Path]:
    """Module name -> file, e.g. ``tunelab.data.sources`` -> root/tunelab/data/sources.py."""
    paths = sorted((root / ROOT).rglob("*.py"))
    dotted = (".".join(p.relative_to(root).with_suffix("").parts) for p in paths)
    return {d.removesuffix(".__init__"): p for d, p in zip(dotted, paths)}


def _where(root: Path, path: Path, line: int) -> str:
    return f"{path.relative_to(root.parent).as_posix()}:{line}"


def import_graph(root: Path) -> dict[str, set[tuple[str, str, int]]]:
    """Module -> {(imported tunelab module, imported name or "", line)}, self-edges dropped."""
    files = module_files(root)

    def is_module(dotted: str) -> bool:  # a file, or a folder (a namespace package)
        return dotted in files or (root / dotted.replace(".", "/")).is_dir()

    def target(dotted: str) -> str | None:  # longest prefix that is one of our modules
        parts = dotted.split(".")
        while parts and not is_module(".".join(parts)):
            parts.pop()
        return ".".join(parts) if parts and parts[0] == ROOT else None

    graph: dict[str, set[tuple[str, str, int]]] = {}
    for mod, path in files.items():
        edges = graph.setdefault(mod, set())
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            found: list[tuple[str | None, str]] = []
            if isinstance(node, ast.Import):
                found = [(target(alias.name), "") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: drop (level - 1) trailing parts of the package
                    parent = package.rsplit(".", node.level - 1)[0]
                    base = f"{parent}.{base}" if base else parent
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.append((sub if is_module(sub) else target(base), alias.name))
            edges.update((t, name, node.lineno) for t, name in found if t and t != mod)
    return graph


def _sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of size > 1, by reachability (the graphs are small)."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for w in graph.get(todo.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        reach[start] = seen
    comps = {
        frozenset(w for w in reach[v] if v in reach.get(w, ())) for v in graph if v in reach[v]
    }
    return sorted(sorted(c) for c in comps if len(c) > 1)


def layer_of(module: str) -> int | None:
    """The LAYERS entry with the longest matching prefix; None when there is none."""
    found = [
        (len(p), n)
        for n, ps in LAYERS.items()
        for p in ps
        if module == p or (p != ROOT and module.startswith(p + "."))
    ]
    return max(found)[1] if found else None


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def violations(root: Path) -> list[str]:
    """Rules 1-5 (cycles, package cycles, private names, entry points, layers)."""
    files, graph, out = module_files(root), import_graph(root), []
    # The first line of each (importer, imported module) pair, named in cycle reports.
    first: dict[tuple[str, str], tuple[str, int]] = {}
    for mod, edges in graph.items():
        for t, _, line in edges:
            first[mod, t] = (mod, min(line, first.get((mod, t), (mod, line))[1]))

    def cycles(rule: str, edges: dict[tuple[str, str], tuple[str, int]]) -> None:
        for comp in _sccs({a: {b for (x, b) in edges if x == a} for (a, _) in edges}):
            via = [
                f"{_where(root, files[m], n)} -> {b}"
                for (a, b), (m, n) in sorted(edges.items())
                if a in comp and b in comp
            ]
            out.append(f"[{rule}] {', '.join(comp)} via {'; '.join(via)}")

    cycles("rule 1: import cycle", first)  # between files
    # Rule 2: between first-level packages; edges to or from the root `tunelab` (layer 7,
    # which nothing may import) are left to rule 5.
    top: dict[tuple[str, str], tuple[str, int]] = {}
    for (a, b), where in sorted(first.items()):
        if ROOT not in (a, b) and _top(a) != _top(b):
            top.setdefault((_top(a), _top(b)), where)
    cycles("rule 2: package cycle", top)

    for mod, edges in sorted(graph.items()):
        where = files[mod]
        if layer_of(mod) is None:
            out.append(f"{_where(root, where, 1)} [rule 5: layers] {mod} has no layer in LAYERS")
        for t, name, line in sorted(edges, key=lambda e: (e[2], e[0], e[1])):
            at = _where(root, where, line)
            # Rule 3: private names, and private modules outside their own package.
            private = name.startswith("_") and not name.startswith("__")
            if private and not t.endswith("." + name):  # a module: checked just below
                out.append(f"{at} [rule 3: private name] {mod} imports {name} from {t}")
            parts = t.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])
                inside = mod == owner or mod.startswith(owner + ".")
                if part.startswith("_") and not part.startswith("__") and not inside:
                    out.append(f"{at} [rule 3: private module] {mod} imports {t}")
        # Rules 4 and 5, one line per (imported module, line).
        for t, line in sorted({(t, line) for t, _, line in edges}, key=lambda e: (e[1], e[0])):
            at = _where(root, where, line)
            if _top(t) in ENTRY_POINTS and _top(mod) != _top(t):  # (api/cli may become packages)
                out.append(f"{at} [rule 4: entry point] {mod} imports {t}")
            mine, theirs = layer_of(mod), layer_of(t)
            if mine is not None and theirs is not None and theirs > mine:
                out.append(
                    f"{at} [rule 5: layers] {mod} (layer {mine}) imports {t} (layer {theirs})"
                )
    return out


def size_violations(root: Path) -> list[str]:
    """Rule 6: file lengths, and function lengths (def line to last line, decorators excluded)."""
    out = []
    for path in module_files(root).values():
        text = path.read_text()
        limit = MAX_API_LINES if path == root / ROOT / "api.py" else MAX_FILE_LINES
        if (n := len(text.splitlines())) > limit:
            out.append(f"{_where(root, path, 1)} [rule 6: size] file has {n} lines (limit {limit})")
        for f in ast.walk(ast.parse(text, str(path))):
            is_function = isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            if is_function and (n := f.end_lineno - f.lineno + 1) > MAX_FUNCTION_LINES:
                out.append(
                    f"{_where(root, path, f.lineno)} [rule 6: size] function {f.name} "
                    f"has {n} lines (limit {MAX_FUNCTION_LINES})"
                )
    return out


def method_names(root: Path) -> set[str]:
    """The ``name = "..."`` class attributes of classes under tunelab/methods/."""
    names = set()
    for path in (root / ROOT / "methods").rglob("*.py"):
        classes = ast.walk(ast.parse(path.read_text(), str(path)))
        for stmt in (s for c in classes if isinstance(c, ast.ClassDef) for s in c.body):
            targets = getattr(stmt, "targets", [getattr(stmt, "target", None)])  # (Ann)Assign
            value = getattr(getattr(stmt, "value", None), "value", None)
            if isinstance(value, str) and any(getattr(t, "id", "") == "name" for t in targets):
                names.add(value)
    return names


def method_name_violations(root: Path) -> list[str]:
    """Rule 7: method names in collection literals or comparisons outside methods/."""
    names, out = method_names(root), []
    comparing = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)
    for path in module_files(root).values():
        rel = path.relative_to(root).as_posix()
        if rel.startswith(f"{ROOT}/methods/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            operands: list[ast.expr] = []
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                operands = node.elts
            elif isinstance(node, ast.Compare) and any(isinstance(o, comparing) for o in node.ops):
                operands = [node.left, *node.comparators]
            out += [
                f"{_where(root, path, c.lineno)} [rule 7: method names] "
                f"method name {c.value!r} hard-coded outside methods/"
                for c in operands
                if isinstance(c, ast.Constant)
                and c.value in names
                and (rel, c.value) not in ALLOWED_NAME_USES
            ]
    return sorted(set(out))


def _report(found: list[str]) -> str:
    return f"{len(found)} violation(s):\n" + "\n".join(found)


def test_layering_rules():
    found = violations(SRC)
    assert not found, _report(found)


def test_size_limits():
    found = size_violations(SRC)
    assert not found, _report(found)


def test_method_names_only_in_methods():
    assert {"lora", "full", "prefix"} <= method_names(SRC)  # the scan itself works
    found = method_name_violations(SRC)
    assert not found, _report(found)


# ---- meta-tests: the checker can fail ----


def test_checker_catches_an_upward_import(tmp_path):
    root = tmp_path / "src"
    shutil.copytree(SRC / ROOT, root / ROOT, ignore=shutil.ignore_patterns("__pycache__"))
    errors = root / ROOT / "errors.py"
    before = set(violations(root))
    line = len(errors.read_text().splitlines()) + 4  # after two blank lines and the def
    upward = "\n\ndef _upward():\n    from tunelab.api import train  # deliberate upward import\n"
    errors.write_text(errors.read_text() + upward)
    new = [v for v in violations(root) if v not in before]
    at = f"src/tunelab/errors.py:{line}"
    assert f"{at} [rule 4: entry point] tunelab.errors imports tunelab.api" in new, new
    assert f"{at} [rule 5: layers] tunelab.errors (layer 0) imports tunelab.api (layer 7)" in new
    cycles = [v for v in new if v.startswith("[rule 1: import cycle] ")]
    assert any("tunelab.api" in v and f"{at} -> tunelab.api" in v for v in cycles), new


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_checker_reports_synthetic_cycles_and_private_names(tmp_path):
    files = {
        "tunelab/__init__.py": "",
        "tunelab/errors.py": "_hidden = 1\n__version__ = '0'\n",
        "tunelab/utils/__init__.py": "",
        "tunelab/utils/a.py": "from tunelab.utils import b\n",  # b is a module: edge to it
        "tunelab/utils/b.py": "def f():\n    from .a import x\n",
        "tunelab/utils/_impl.py": "",
        "tunelab/utils/c.py": "from . import _impl\n",  # private module, own package: ok
        "tunelab/data/__init__.py": "from tunelab.errors import _hidden, __version__\n",
        "tunelab/data/x.py": "from tunelab.models.y import f\n",
        "tunelab/data/w.py": "import tunelab.utils._impl\n",
        "tunelab/models/__init__.py": "",
        "tunelab/models/y.py": "",
        "tunelab/models/z.py": "from tunelab.data import w\n",
    }
    root = _write(tmp_path / "src", files)
    graph = import_graph(root)
    assert graph["tunelab.utils.a"] == {("tunelab.utils.b", "b", 1)}
    assert graph["tunelab.utils.b"] == {("tunelab.utils.a", "x", 2)}
    found = violations(root)
    assert found[0] == (
        "[rule 1: import cycle] tunelab.utils.a, tunelab.utils.b via "
        "src/tunelab/utils/a.py:1 -> tunelab.utils.b; src/tunelab/utils/b.py:2 -> tunelab.utils.a"
    )
    assert found[1].startswith("[rule 2: package cycle] tunelab.data, tunelab.models via ")
    assert found[2:] == [
        "src/tunelab/data/__init__.py:1 [rule 3: private name] "
        "tunelab.data imports _hidden from tunelab.errors",
        "src/tunelab/data/w.py:1 [rule 3: private module] "
        "tunelab.data.w imports tunelab.utils._impl",
    ]


def test_checker_reports_sizes_and_method_names(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))  # def + 120 lines
    root = _write(
        tmp_path / "src",
        {
            "tunelab/methods/mine.py": 'class Mine:\n    name = "mine"\n',
            "tunelab/utils/io.py": f"def long():\n{body}",
            "tunelab/data/sources.py": 'OK = "mine"\nBAD = ["mine"]\nif OK != "mine":\n    pass\n',
        },
    )
    assert size_violations(root) == [
        "src/tunelab/utils/io.py:1 [rule 6: size] function long has 121 lines (limit 120)"
    ]
    rule7 = "[rule 7: method names] method name 'mine' hard-coded outside methods/"
    where = "src/tunelab/data/sources.py"
    assert method_name_violations(root) == [f"{where}:2 {rule7}", f"{where}:3 {rule7}"]
