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


class S3Storage:
    """An S3-compatible bucket (AWS, MinIO, Ceph, moto) under an optional key prefix, through boto3.

    Connection failures surface as `ConnectionError`, which workers retry with backoff; a missing object is
    `FileNotFoundError`, as for the local folder.
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None):
        import boto3
        from botocore.config import Config
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30))

    def _name(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, method: str, **kw):
        from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, ReadTimeoutError
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kw)
        except (BotoConnectionError, ReadTimeoutError) as e:
            raise ConnectionError(f"S3 endpoint unreachable: {e}") from e
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(kw.get("Key", "")) from None
            raise

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self._name(key), Body=data)   # a PUT is atomic: readers see old or new

    def get(self, key: str) -> bytes:
        return self._call("get_object", Key=self._name(key))["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=self._name(key))
        except FileNotFoundError:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        """The object named `prefix`, or every object under the folder `prefix/` (never `prefix2/...`)."""
        name = self._name(prefix.rstrip("/"))
        names = [name] if self.exists(prefix.rstrip("/")) else []
        token: dict = {}
        for _ in range(100_000):   # pages of up to 1000 keys
            page = self._call("list_objects_v2", Prefix=name + "/", **token)
            names += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        for i in range(0, len(names), 1000):
            self._call("delete_objects", Delete={"Objects": [{"Key": n} for n in names[i:i + 1000]], "Quiet": True})
        return len(names)


def make_storage(settings: Settings) -> Storage:
    """The storage chosen by `settings.storage_url`: "" = the folder files/ under home, file:///path, or
    s3://bucket/prefix (with `settings.s3_endpoint_url` for a server other than AWS)."""
    url = settings.storage_url
    if not url:
        return LocalStorage(settings.home / "files")
    if url.startswith("file://"):
        return LocalStorage(Path(url[len("file://"):]))
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"CONJURE_STORAGE_URL '{url}' names no bucket: give s3://bucket or s3://bucket/prefix")
        return S3Storage(bucket, prefix, settings.s3_endpoint_url or None)
    raise ValueError(f"CONJURE_STORAGE_URL '{url}' is not supported: leave it empty for local files, "
                     "or give file:///path or s3://bucket/prefix")
