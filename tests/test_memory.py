"""retain_freed_memory: glibc's allocator keeps freed blocks for reuse."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

# a fresh process per setting: it is process-wide and one-way. mallinfo2 (glibc >= 2.33) reports
# the bytes free inside the heap: a freed 64 MB tensor is there only when it was kept.
CODE = """
import ctypes, sys
import torch
from tunelab.utils.memory import retain_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "on":
    assert retain_freed_memory() and retain_freed_memory()  # idempotent
x = torch.ones(16, 1 << 20)  # 64 MB: above glibc's largest dynamic mmap threshold (32 MB)
mapped = libc.mallinfo2().hblkhd
del x
print(mapped, libc.mallinfo2().fordblks)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_block_stays_in_the_heap():
    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("not glibc >= 2.33")
    got = {}
    for mode in ("off", "on"):
        out = subprocess.run(
            [sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True
        )
        got[mode] = [int(v) for v in out.stdout.split()[-2:]]
    mb = 1 << 20
    off_mapped, off_free = got["off"]
    on_mapped, on_free = got["on"]
    assert off_mapped >= 64 * mb and off_free < 64 * mb, got  # default: mapped, handed back
    assert on_mapped < 64 * mb and on_free >= 64 * mb, got  # retained: from the heap, kept
