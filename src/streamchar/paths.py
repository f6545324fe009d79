"""The paths a command is given, checked before any work: each wrong kind of path gets one line naming it.

Inputs must exist and be of the right kind (a file where a file is read, a folder where a folder is); outputs
must be writable where they will be written, and an output folder is never replaced silently.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from streamchar.errors import StreamCharError


def input_file(path: str | Path, option: str) -> Path:
    """A file the command reads."""
    p = Path(path)
    if p.is_dir():
        raise StreamCharError(f"{option} {path} is a folder; give a file")
    if not p.exists():
        raise StreamCharError(f"{option} not found: {path}")
    if not os.access(p, os.R_OK):
        raise StreamCharError(f"{option} {path} cannot be read (permission denied)")
    return p


def input_folder(path: str | Path, option: str) -> Path:
    """A folder the command reads."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise StreamCharError(f"{option} {path} is a file; give a folder")
    if not p.is_dir():
        raise StreamCharError(f"{option} folder not found: {path}")
    return p


def _writable_folder(folder: Path, option: str) -> None:
    """Writes (and removes) a probe file: permissions, read-only mounts and pseudo file systems all show."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".streamchar-probe.", dir=folder)
    except OSError as e:
        raise StreamCharError(f"{option}: cannot write into folder {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def output_file(path: str | Path, option: str) -> Path:
    """A file the command writes (atomically: a temporary name beside it, then a rename)."""
    p = Path(path)
    if p.is_dir():
        raise StreamCharError(f"{option} {path} is a folder; give a file name")
    if p.parent.exists() and not p.parent.is_dir():
        raise StreamCharError(f"{option}: {p.parent} is a file, not a folder")
    if not p.parent.is_dir():
        raise StreamCharError(f"{option}: folder {p.parent} does not exist")
    _writable_folder(p.parent, option)
    return p


def output_folder(path: str | Path, option: str, overwrite: bool = False) -> Path:
    """A folder the command writes whole (with `atomic.atomic_folder`): its parent must exist and be writable; an
    existing file there, or an existing folder with anything in it unless `overwrite`, is an error naming it.
    Nothing is ever replaced silently."""
    p = Path(path)
    if p.parent.exists() and not p.parent.is_dir():
        raise StreamCharError(f"{option}: {p.parent} is a file, not a folder")
    if not p.parent.is_dir():
        raise StreamCharError(f"{option}: folder {p.parent} does not exist")
    if p.exists() and not p.is_dir():
        raise StreamCharError(f"{option} {path} is a file; give a folder name")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise StreamCharError(f"{option} {path} already holds data; pass --overwrite to replace it (the new "
                              "folder replaces it only once complete), or choose another folder")
    _writable_folder(p.parent, option)
    return p


RUN_MARKERS = ("checkpoints", "metrics.jsonl", "final", "pronunciations.json.gz")  # what training runs write


def run_folder(path: str | Path, option: str, overwrite: bool = False) -> Path:
    """A training run's folder, written as the run goes: absent, empty, or an earlier run (it holds one of
    RUN_MARKERS), which the run resumes. Anything else is refused unless `overwrite`, which removes it."""
    import shutil

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise StreamCharError(f"{option} {path} is a file; give a folder name")
    if p.is_dir() and any(p.iterdir()):
        if overwrite:
            shutil.rmtree(p)
        elif not any((p / m).exists() for m in RUN_MARKERS):
            raise StreamCharError(f"{option} {path} already holds data that is not a training run (no checkpoints/): "
                                  "choose another folder, or pass --overwrite to start over there")
    parent = p.parent
    while not parent.exists():  # the run creates missing parents
        parent = parent.parent
    if not parent.is_dir():
        raise StreamCharError(f"{option}: {parent} is a file, not a folder")
    _writable_folder(p if p.is_dir() else parent, option)
    return p
