"""The daemon's big transient buffers (a status page, a /metrics render) are mapped on their own
and given back when freed, so they cannot leave holes in the heap (see serve.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from heartbeatd.cli.serve import GLIBC

pytestmark = pytest.mark.skipif(not GLIBC, reason="glibc only")

# Prints how many more blocks glibc has mapped while a render-sized buffer is alive, after one
# twice its size was mapped and freed (as glibc ships, that raises its threshold past the
# render). The render is bigger than all the heap's free space, so no free chunk can serve it.
PROBE = """
import ctypes, sys
from heartbeatd.cli.serve import _keep_big_buffers_off_the_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    _keep_big_buffers_off_the_heap()
libc.malloc_trim(0)
size = max(130_000, libc.mallinfo2().fordblks + 65_536)
page = bytearray(2 * size)
del page
libc.malloc_trim(0)
before = libc.mallinfo2().hblks
render = bytearray(size)
print(libc.mallinfo2().hblks - before)
"""


def mapped_while_alive(how: str, **env: str) -> int:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, how],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_a_render_sized_buffer_is_mapped_on_its_own_even_after_a_bigger_one_was_freed() -> None:
    assert mapped_while_alive("tuned") == 1


def test_as_glibc_ships_the_same_buffer_would_come_from_the_heap() -> None:
    """What the tuning is for; and the probe above can tell the two apart."""
    assert mapped_while_alive("untuned") == 0


def test_a_threshold_the_operator_set_is_left_as_it_is() -> None:
    assert mapped_while_alive("tuned", MALLOC_MMAP_THRESHOLD_="1000000") == 0
