"""Where finished export files live, so that every web process can serve them.

One interface, chosen by ``TABULA_FILE_STORE``: a folder (default ``<instance>/files``; on several machines a
shared mount), or ``database``: the files in the database every machine already shares. A file is put whole
(a temporary local file, complete, handed over in one step), so the store never holds a half-written file
under a published key.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from flask import current_app
from sqlalchemy import delete, func, insert, select

from app.extensions import db
from models.exports import StoredFileChunk

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


class DatabaseStore:
    """Files as 1 MB chunks in ``tabula_file_chunk``: for several machines without a shared folder. A file is
    written in its own transaction, all chunks or none."""

    table = StoredFileChunk.__table__

    def put(self, local: Path, key: str) -> None:
        with db.engine.begin() as connection:
            connection.execute(delete(self.table).where(self.table.c.key == key))
            with open(local, "rb") as handle:
                for seq, data in enumerate(iter(lambda: handle.read(CHUNK), b"")):
                    connection.execute(insert(self.table), {"key": key, "seq": seq, "data": data})
        Path(local).unlink(missing_ok=True)

    def chunks(self, key: str) -> Iterator[bytes]:
        count = db.session.scalar(select(func.count()).where(self.table.c.key == key))
        if not count:
            raise FileNotFoundError(key)
        return self._read(key, count)

    def _read(self, key: str, count: int) -> Iterator[bytes]:
        for seq in range(count):  # one chunk in memory at a time
            chunk = select(self.table.c.data).where(self.table.c.key == key, self.table.c.seq == seq)
            yield db.session.scalar(chunk)

    def delete(self, key: str) -> None:
        with db.engine.begin() as connection:
            connection.execute(delete(self.table).where(self.table.c.key == key))

    def exists(self, key: str) -> bool:
        found = select(self.table.c.seq).where(self.table.c.key == key).limit(1)
        return db.session.scalar(found) is not None


def file_store() -> FileStore:
    """The store this installation is configured with."""
    config = current_app.config
    where = (config.get("TABULA_FILE_STORE") or "").strip()
    if where == "database":
        return DatabaseStore()
    return FolderStore(Path(where) if where else Path(config["TABULA_INSTANCE_DIR"]) / "files")


def scratch_dir() -> Path:
    """A local folder for files being written (never served)."""
    path = Path(current_app.config["TABULA_INSTANCE_DIR"]) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
