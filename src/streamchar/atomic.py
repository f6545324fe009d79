"""Writing a folder atomically: build it under a temporary name beside it, then rename it into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from streamchar.errors import StreamCharError


@contextlib.contextmanager
def atomic_folder(path: str | Path):
    """Yields a fresh temporary folder next to `path`; on success it replaces `path` (an existing folder there is
    removed first), on any error it is deleted and `path` is left as it was."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private (0700); the folder should look like any other
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_folder(path: str | Path, option: str, overwrite: bool = False) -> Path:
    """An output folder a command is about to write (whole, with `atomic_folder`): its parent must exist; an
    existing file there, or an existing folder with anything in it unless `overwrite`, is an error naming it.
    Nothing is ever replaced silently."""
    path = Path(path)
    if not path.parent.is_dir():
        raise StreamCharError(f"{option}: folder {path.parent} does not exist")
    if path.exists() and not path.is_dir():
        raise StreamCharError(f"{option} {path} is a file; give a folder name")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise StreamCharError(f"{option} {path} already holds data; pass --overwrite to replace it (the new "
                              "folder replaces it only once complete), or choose another folder")
    return path
