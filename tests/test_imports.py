"""The packages' import graphs have no circles (issue #16), and every module imports on its own.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import``
of a module of the same package counts, at module level or inside a function
(a lazy import that closes a circle is still a circle: the two modules depend
on each other). An edge from a module to its own parent packages is left out
(importing ``a.b`` always runs ``a/__init__.py`` first).
"""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"avatarizer": ROOT / "sdk", "avatarizer_export": ROOT / "export"}


def _modules(base: Path, package: str) -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in sorted((base / package).rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        mods[".".join(parts)] = (path, is_pkg)
    return mods


def import_graph(base: Path, package: str) -> dict[str, set[str]]:
    """module → the modules of ``package`` it imports (anywhere in its source)."""
    mods = _modules(base, package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        here = name if is_pkg else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")
                    parts = parts[:len(parts) - (node.level - 1)]
                    target = ".".join(parts + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                deps.update(subs if subs else [target] if target in mods else [])
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_circles(package):
    graph = import_graph(PACKAGES[package], package)
    assert len(graph) > 10  # the graph was read
    assert circles(graph) == []


def test_the_circles_of_issue_16_are_gone():
    sdk = import_graph(PACKAGES["avatarizer"], "avatarizer")
    export = import_graph(PACKAGES["avatarizer_export"], "avatarizer_export")
    for graph, a, b in ((sdk, "avatarizer.models", "avatarizer.trt_backend"),
                        (sdk, "avatarizer.prior", "avatarizer.schema"),
                        (sdk, "avatarizer.cli", "avatarizer.live"),
                        (sdk, "avatarizer.runtime.manifest", "avatarizer.runtime.onnx"),
                        (export, "avatarizer_export.lpips", "avatarizer_export.metrics"),
                        (export, "avatarizer_export.onnx_export", "avatarizer_export.quantize")):
        assert not (b in graph[a] and a in graph[b]), (a, b)
    # the runtime package sits below everything that uses it
    assert not any(m.startswith("avatarizer.pipeline") or m == "avatarizer.api"
                   for r in sdk if r.startswith("avatarizer.runtime") for m in sdk[r])


def _fresh(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)


_IMPORT_ALL = ("import importlib, sys\n"
               "for n in sys.argv[1:]:\n"
               "    importlib.import_module(n)\n")


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_imports_in_a_fresh_interpreter(package):
    names = [n for n in sorted(_modules(PACKAGES[package], package)) if not n.endswith("__main__")]
    if package == "avatarizer_export" and not all(importlib.util.find_spec(m) for m in ("torch", "onnx")):
        pytest.skip("the export side needs torch and onnx")
    for order in (names, names[::-1]):
        done = _fresh(_IMPORT_ALL, *order)
        assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("first", ["avatarizer.runtime", "avatarizer.runtime.manifest", "avatarizer.runtime.onnx",
                                   "avatarizer.runtime.tensorrt", "avatarizer.models", "avatarizer.trt_backend",
                                   "avatarizer.schema", "avatarizer.prior", "avatarizer.live"])
def test_restructured_modules_import_first(first):
    """Each module moved for issue #16 is importable as the first thing a program does."""
    done = _fresh(f"import {first}, avatarizer.schema as s; assert s.sample(1, seed=0).shape == (1, 629)")
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_defines_a_name_twice(package):
    """A second top-level ``def``/``class`` of the same name silently replaces
    the first (``hairbank.build_bank``, the make-models step, once shadowed
    the bank's clustering and broke ``avatarizer-export hairbank build``)."""
    twice = []
    for name, (path, _) in _modules(PACKAGES[package], package).items():
        seen: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name in seen:
                    twice.append(f"{name}.{node.name}")
                seen.add(node.name)
    assert twice == []
