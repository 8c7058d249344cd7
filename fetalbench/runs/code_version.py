"""A method's code version: a digest of the source that trains and tests a run of it.

A spec hash names what a run was asked to do, not the code that did it: a grid resumed after a
code change keeps the old code's records under the same hashes. So each successful record carries
``code_version`` (:func:`method_code_version`), and the leaderboard never puts two versions of
one method in one table (:mod:`fetalbench.report.setup`).

The digest covers every module the method's own module and the run executor
(:mod:`fetalbench.runs.execute`) import, transitively, within fetalbench (and within the
method's own top-level package, for a plugin), parent packages included: imports anywhere in a
module count, those inside functions too. Each module enters as its abstract syntax tree without
docstrings, so a comment, a reworded docstring or a reformatting is the same code, and any change
to what runs is another version. It is computed once per process and method, when the run starts
(:func:`fetalbench.runs.execute.execute_run`), so a long grid reports the code it imported, not
files edited meanwhile.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from fetalbench.methods import METHODS
from fetalbench.storage.digests import sha256_hex

EXECUTOR = "fetalbench.runs.execute"
"""The module that runs every method: its imports are every method's code."""


def _source_file(module: str) -> Path | None:
    """The ``.py`` file of ``module``; None for a module that is not Python source or not
    importable (a name imported from a module rather than a module)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _imported(tree: ast.Module, packages: tuple[str, ...]) -> set[str]:
    """The modules of ``packages`` that ``tree`` imports (and, for ``from m import n``, ``m.n``
    when that is a module), with their parent packages."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    inside = {name for name in names if name.split(".")[0] in packages}
    parents = {".".join(name.split(".")[:i]) for name in inside
               for i in range(1, name.count(".") + 1)}
    return inside | parents


def code_digest(roots: tuple[str, ...]) -> str:
    """The first 16 hex digits of the sha256 of the docstring-free syntax trees of ``roots``
    and of every module they import within their top-level packages, transitively."""
    packages = tuple(sorted({root.split(".")[0] for root in roots}))
    pending, trees = list(roots), {}
    while pending:
        module = pending.pop()
        if module in trees:
            continue
        path = _source_file(module)
        if path is None:
            trees[module] = None
            continue
        tree = _without_docstrings(ast.parse(path.read_text(encoding="utf-8")))
        trees[module] = ast.dump(tree, include_attributes=False)
        pending += sorted(_imported(tree, packages) - trees.keys())
    text = "\n".join(f"{module}\n{dump}" for module, dump in sorted(trees.items()) if dump)
    return sha256_hex(text.encode())[:16]


@functools.cache
def method_code_version(method: str) -> str:
    """The code version of ``method``: :func:`code_digest` of its module (its ``train``'s, or
    its ``encoder``'s for an encoder-only method) and the executor."""
    registered = METHODS.get(method)
    module = (registered.train or registered.encoder).__module__
    return code_digest(tuple(sorted({"fetalbench", EXECUTOR, module})))
