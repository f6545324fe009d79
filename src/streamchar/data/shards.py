"""WebDataset-style tar shards: files `{key}.{ext}` side by side, one sample per key."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

from streamchar.errors import StreamCharError


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add one file with fixed metadata (mtime 0, mode 644), so the same content gives the same bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def read_samples(path: str | Path, exts: tuple[str, ...], what: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {ext: bytes}) once a key has all of `exts`; a corrupt or incomplete shard is an error
    naming `what` and the file."""
    path = Path(path)
    try:
        with tarfile.open(path) as tar:
            pending: dict[str, dict[str, bytes]] = {}
            for member in tar:
                key, ext = member.name.rsplit(".", 1)
                pending.setdefault(key, {})[ext] = tar.extractfile(member).read()
                if set(exts) <= pending[key].keys():
                    yield key, pending.pop(key)
        if pending:
            raise ValueError(f"incomplete samples {sorted(pending)[:3]} (each needs {', '.join(exts)})")
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise StreamCharError(f"corrupt {what} {path}: {e}") from None
