"""An import inside a function (of onebit itself or of a heavy or optional package) is there for a
reason: the torch-free runtime and CLI, the lazy ``import onebit``, a cycle or startup time. Each
such import says why in a comment on its own lines or on a comment line just before it (a comment
line before a run of consecutive imports covers the run); every other import belongs at the
module's top."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import onebit

PACKAGE = Path(onebit.__file__).parent
WATCHED = ("onebit", "torch", "yaml", "lightning", "matplotlib", "safetensors", "onnx")


def _watched(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        if node.level:  # a relative import is one of onebit's own modules
            return True
        names = [node.module or ""]
    else:
        names = [alias.name for alias in node.names]
    return any(name.split(".")[0].startswith(WATCHED) for name in names)


def _comment_lines(source: str) -> tuple[set[int], set[int]]:
    """(lines holding a comment, lines holding nothing but a comment)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    comments = [tok for tok in tokens if tok.type == tokenize.COMMENT]
    return ({tok.start[0] for tok in comments},
            {tok.start[0] for tok in comments if not tok.line[:tok.start[1]].strip()})


def uncommented_local_imports(source: str, name: str = "<source>") -> list[str]:
    """``name:line: statement`` for each function-local watched import that no comment explains."""
    tree = ast.parse(source)
    comments, comment_only = _comment_lines(source)
    lines = source.splitlines()
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for block in ast.walk(func):
            for field in ("body", "orelse", "finalbody", "handlers"):
                body = getattr(block, field, None)
                if not isinstance(body, list):
                    continue
                for i, stmt in enumerate(body):
                    if not isinstance(stmt, (ast.Import, ast.ImportFrom)) or not _watched(stmt):
                        continue
                    first = i
                    while first > 0 and isinstance(body[first - 1], (ast.Import, ast.ImportFrom)):
                        first -= 1
                    own = set(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
                    if own & comments or {stmt.lineno - 1, body[first].lineno - 1} & comment_only:
                        continue
                    found.append(f"{name}:{stmt.lineno}: {lines[stmt.lineno - 1].strip()}")
    return sorted(set(found))


def test_every_function_local_import_says_why():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        missing += uncommented_local_imports(path.read_text(), str(path.relative_to(PACKAGE)))
    assert not missing, ("function-local imports without a comment saying why (move them to the "
                         "module's top, or say which rule keeps them local):\n" + "\n".join(missing))


def test_the_check_sees_uncommented_and_commented_imports():
    source = (
        "import torch\n"
        "def f():\n"
        "    import yaml\n"
        "    from . import x\n"
        "    import json\n"
        "def g():\n"
        "    # torch only here: the runtime runs without it\n"
        "    import torch\n"
        "    from onebit.train import runner\n"
        "    if True:\n"
        "        from onebit.models import create  # cycle: models imports this module\n"
        "    x = 1  # not an import\n"
        "    import lightning\n"
        "    '# a string, not a comment'\n"
        "    import onnxruntime\n"
        "    import numpy  # not watched\n"
        "    # the line before covers the import after it\n"
        "    import matplotlib\n"
    )
    assert uncommented_local_imports(source) == [
        "<source>:13: import lightning",
        "<source>:15: import onnxruntime",
        "<source>:3: import yaml",
        "<source>:4: from . import x",
    ]
