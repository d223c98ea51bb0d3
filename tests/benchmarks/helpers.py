"""Benchmark and recipe scripts are files, not package modules: load one by path."""

from __future__ import annotations

import importlib.util

from conjure.config import REPO_ROOT


def load_script(relative: str, name: str | None = None):
    """The file REPO_ROOT/relative as a module (named after its stem unless `name` is given)."""
    path = REPO_ROOT / relative
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module."""
    return load_script(f"benchmarks/{name}.py", name)
