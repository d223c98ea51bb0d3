"""Benchmark scripts are files, not package modules: load one by name."""

from __future__ import annotations

import importlib.util

from conjure.config import REPO_ROOT


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
