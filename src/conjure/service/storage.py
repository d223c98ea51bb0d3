"""Where job files live (uploaded inputs, outputs): a local folder by default, S3-compatible when scaled out.

Keys are relative POSIX paths such as `jobs/<id>/0-out-0.png`; a backend never sees a user's file name.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Protocol

from conjure.config import Settings

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...            # FileNotFoundError when absent
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> int: ...  # how many files went


class LocalStorage:
    """A folder; writes are atomic (temporary name, then rename)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_bytes(data)
        tmp.replace(path)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        target = self.path(prefix.rstrip("/"))
        if target.is_file():
            target.unlink()
            return 1
        if not target.is_dir():
            return 0
        count = sum(1 for p in target.rglob("*") if p.is_file())
        shutil.rmtree(target, ignore_errors=True)
        return count


def make_storage(settings: Settings) -> Storage:
    """The storage chosen by `settings.storage_url` ("" = the folder files/ under home)."""
    url = settings.storage_url
    if not url:
        return LocalStorage(settings.home / "files")
    if url.startswith("file://"):
        return LocalStorage(Path(url[len("file://"):]))
    raise ValueError(f"CONJURE_STORAGE_URL '{url}' is not supported: leave it empty for local files "
                     "or give file:///path")
