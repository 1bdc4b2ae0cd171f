"""Where finished export files live, so that every web process can serve them.

One interface, chosen by ``TABULA_FILE_STORE``: a folder (default ``<instance>/files``; on several machines a
shared mount), or an S3-compatible object store (``s3://bucket/prefix``, with the usual ``AWS_*`` variables
and ``TABULA_S3_ENDPOINT`` for MinIO and the like). A file is put whole (a temporary local file, complete,
handed over in one step), so the store never holds a half-written file under a published key.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from flask import current_app

CHUNK = 1 << 20


class FileStore(Protocol):
    def put(self, local: Path, key: str) -> None:
        """Take the complete file ``local`` under ``key`` (the local file is gone afterwards)."""

    def chunks(self, key: str) -> Iterator[bytes]:
        """The stored file's bytes; ``FileNotFoundError`` when there is none."""

    def delete(self, key: str) -> None:
        """Remove the file (nothing when it is not there)."""

    def exists(self, key: str) -> bool: ...


class FolderStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"bad key {key!r}")
        return path

    def put(self, local: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        shutil.move(str(local), partial)  # a copy across file systems: complete before the rename
        os.replace(partial, target)

    def chunks(self, key: str) -> Iterator[bytes]:
        with open(self._path(key), "rb") as handle:
            yield from iter(lambda: handle.read(CHUNK), b"")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class S3Store:
    def __init__(self, bucket: str, prefix: str, endpoint: str | None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint or None)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key))
        Path(local).unlink(missing_ok=True)

    def chunks(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        yield from body.iter_chunks(CHUNK)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return False
        return True


def file_store() -> FileStore:
    """The store this installation is configured with."""
    config = current_app.config
    where = (config.get("TABULA_FILE_STORE") or "").strip()
    if where.startswith("s3://"):
        parts = urlsplit(where)
        return S3Store(parts.netloc, parts.path, config.get("TABULA_S3_ENDPOINT"))
    return FolderStore(Path(where) if where else Path(config["TABULA_INSTANCE_DIR"]) / "files")


def scratch_dir() -> Path:
    """A local folder for files being written (never served)."""
    path = Path(current_app.config["TABULA_INSTANCE_DIR"]) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
