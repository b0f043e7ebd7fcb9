"""The layers' boundaries, read from the source: the engine knows nothing of HTTP or of the service's settings,
and the web layer imports the engine's errors without torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from .gunicorn_process import ROOT

ENGINE = ROOT / "app" / "engine"
# What the engine may not import: the web layer's errors and settings, and any web framework.
FORBIDDEN = ("app.errors", "app.config", "app.api", "app.media", "flask", "werkzeug")
HTTP = re.compile(r"Retry-After|status_code|\bHTTP\b")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved against its package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_engine_imports_nothing_from_the_web_layer():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.startswith(FORBIDDEN))
        for path in ENGINE.rglob("*.py")
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))]
    return {id(node.body[0].value) for node in nodes if ast.get_docstring(node, clean=False) is not None}


def test_the_engine_names_no_http_status_or_header():
    """No header names or statuses in what the engine raises or returns (its docstrings may say why not)."""
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        skip = docstrings(tree)
        strings = [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        ]
        named = [value for value in strings if HTTP.search(value)]
        assert not named, f"{path.relative_to(ROOT)}: {named}"
        assert "status=" not in path.read_text() and "headers=" not in path.read_text(), path


def test_the_web_layer_imports_the_engines_errors_without_torch():
    code = (
        "import sys, app.errors, app.api.http.error_handlers, app.engine.errors\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
