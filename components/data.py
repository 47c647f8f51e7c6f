"""Split IO with schema checks, atomic writes, seeded torch data helpers.

Why: every stage hands the next one files. Writes are atomic (temp then rename) so a failed
stage never leaves a half-written artifact behind, and reads check the schema so bad data is
reported by file and column instead of as a shape error deep inside a training loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.config import ConfigError

SPLITS = ("train", "val", "test")


class DataError(ConfigError):
    """Bad or missing data: the message names the file (and column)."""


def set_seeds(seed: int) -> None:
    """Seed every generator a loop may touch, so the same params give the same metrics on CPU."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp dir beside `target`; on success it replaces `target`, on error it vanishes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; outputs are ordinary readable directories
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def write_split(path: Path, table: pa.Table) -> None:
    """Parquet with a fixed writer config (the file is a DVC output, rewritten on rerun)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def read_split(path: Path, schema: pa.Schema) -> pa.Table:
    """Read a split and check every expected column exists with the expected type."""
    if not path.is_file():
        raise DataError(f"{path}: split not found (run the prepare stage first)")
    table = pq.read_table(path)
    for field in schema:
        if field.name not in table.column_names:
            raise DataError(f"{path}: missing column {field.name!r} (has {table.column_names})")
        actual = table.schema.field(field.name).type
        if actual != field.type:
            raise DataError(f"{path}: column {field.name!r} has type {actual}, expected {field.type}")
        if table.column(field.name).null_count:
            raise DataError(f"{path}: column {field.name!r} has {table.column(field.name).null_count} nulls")
    if table.num_rows == 0:
        raise DataError(f"{path}: split is empty")
    return table.select(schema.names)


def dir_md5(path: Path) -> str:
    """A content hash of a directory (paths + bytes), for lineage tags and determinism checks."""
    h = hashlib.md5()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(hashlib.md5(f.read_bytes()).digest())
    return h.hexdigest()


def dvc_dir_md5(path: Path) -> str:
    """The md5 DVC records for a directory in a .dvc file (md5 of its sorted file listing)."""
    entries = []
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        entries.append({"md5": hashlib.md5(f.read_bytes()).hexdigest(), "relpath": f.relative_to(path).as_posix()})
    entries.sort(key=lambda e: tuple(e["relpath"].split("/")))
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def seeded_loader(dataset: Any, batch_size: int, shuffle: bool, seed: int) -> Any:
    """A DataLoader whose shuffling depends only on `seed` (no worker processes on 2 cores)."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0
    )
