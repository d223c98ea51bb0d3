"""Command groups that live outside cli.py, one module per area (lab, preference, studies).

Each module defines `register(app)`, which adds its commands to the one Typer app; cli.py calls every
module here at start-up, so a new area never edits cli.py. Modules import heavy libraries inside their
commands only, so that `conjure --help` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register_all(app: typer.Typer) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(app)
