"""streamchar.malloc: the CLI keeps freed memory in the process (glibc), with an opt-out."""

import ctypes
import sys

import pytest

from streamchar.errors import StreamCharError
from streamchar.malloc import retain_freed_memory

glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL("libc.so.6"), "gnu_get_libc_version")


@pytest.mark.skipif(not glibc, reason="glibc's mallopt")
def test_retains_on_glibc(monkeypatch):
    monkeypatch.delenv("STREAMCHAR_MALLOC", raising=False)
    assert retain_freed_memory() is True


def test_opt_out_keeps_defaults(monkeypatch):
    monkeypatch.setenv("STREAMCHAR_MALLOC", "default")
    assert retain_freed_memory() is False


def test_bad_setting_is_named(monkeypatch):
    monkeypatch.setenv("STREAMCHAR_MALLOC", "jemalloc")
    with pytest.raises(StreamCharError, match="STREAMCHAR_MALLOC='jemalloc'"):
        retain_freed_memory()
