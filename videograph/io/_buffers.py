"""Output buffers of a read: one uint8 array per call, recycled once nothing refers to it.

A full read of a 1080p clip returns hundreds of megabytes, and touching that much fresh memory costs
more than decoding it on a shared or virtualised machine (``docs/io.md``: 640 MB took 0.5 to 1.8 CPU
seconds here, the decoding 0.45 s). So a large buffer is:

* an anonymous private mapping populated in one system call (``MAP_POPULATE``) rather than page by
  page, and without transparent huge pages (NumPy asks for them on large arrays; with the kernel's
  default ``defrag=madvise`` each huge-page fault may compact memory synchronously, which measured 3x
  slower than 4 KiB pages here);
* recycled: when the last array (or tensor) that uses it is gone, it goes back to a small pool,
  marked ``MADV_FREE`` (the kernel may take the pages back under memory pressure; until it does, a
  later read of about the same size reuses them without a page fault). A buffer in use is never
  handed out again: the pool only receives a buffer from the finaliser of the array that views it.

Small buffers (under ``MIN_BYTES``), and every buffer where ``mmap`` has no anonymous private mappings
(Windows), are plain ``np.empty``.
"""
import mmap
import weakref
from typing import List, Tuple

import numpy as np

MIN_BYTES = 16 << 20
POOL_SIZE = 2  # buffers kept for reuse
_pool: List[mmap.mmap] = []  # most recently released last
# POSIX only: elsewhere (Windows has no anonymous private mappings in ``mmap``) every buffer is ``np.empty``.
_MAPPABLE = hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS")
_FLAGS = (mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)) if _MAPPABLE else 0


def _release(buf: mmap.mmap) -> None:
    # Run by the finaliser of the only array that viewed ``buf``: nothing refers to its memory now.
    if hasattr(mmap, "MADV_FREE"):
        try:
            buf.madvise(mmap.MADV_FREE)
        except OSError:  # pragma: no cover - kernels without MADV_FREE
            pass
    _pool.append(buf)
    while len(_pool) > POOL_SIZE:
        try:
            _pool.pop(0)  # the oldest is unmapped when its last reference goes
        except IndexError:  # another thread took buffers meanwhile
            break


def _take(nbytes: int):
    # The smallest pooled buffer that holds nbytes without wasting more than half of it.
    fits = [b for b in list(_pool) if nbytes <= len(b) <= 2 * nbytes]
    for buf in sorted(fits, key=len):
        try:
            _pool.remove(buf)  # atomic under the GIL: a concurrent taker gets ValueError
        except ValueError:
            continue
        return buf
    return None


def empty_frames(shape: Tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint8 array of ``shape`` (as ``np.empty``), from a recycled buffer when large."""
    shape = tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64))
    if nbytes < max(MIN_BYTES, 1) or not _MAPPABLE:
        return np.empty(shape, dtype=np.uint8)
    buf = _take(nbytes)
    if buf is None:
        buf = mmap.mmap(-1, nbytes, flags=_FLAGS)
    flat = np.frombuffer(buf, dtype=np.uint8, count=nbytes)  # views buf; every other view views flat
    finaliser = weakref.finalize(flat, _release, buf)
    finaliser.atexit = False
    return flat.reshape(shape)


def clear() -> None:
    """Drop the pooled buffers (their memory goes back to the system)."""
    _pool.clear()


__all__ = ["empty_frames", "clear", "MIN_BYTES"]
