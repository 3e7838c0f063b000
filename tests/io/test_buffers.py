"""The reader's output buffers: recycled only once nothing refers to them, never while in use."""
import gc
import os
import threading

import numpy as np
import pytest
import torch

from videograph.io import VideoReader
from videograph.io import _buffers


@pytest.fixture
def pool(monkeypatch):
    """An empty pool, with every buffer pooled (also the small ones of the test fixtures)."""
    monkeypatch.setattr(_buffers, "MIN_BYTES", 0)
    _buffers.clear()
    yield _buffers
    _buffers.clear()


def address(array):
    return array.__array_interface__["data"][0]


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (0, 8, 8, 3)])
def test_small_buffers_are_plain_arrays_and_not_pooled(shape):
    _buffers.clear()
    a = _buffers.empty_frames(shape)
    assert a.shape == shape and a.dtype == np.uint8 and a.flags.writeable and a.flags.c_contiguous
    assert a.base is None  # np.empty's own memory
    del a
    gc.collect()
    assert len(_buffers._pool) == 0


def test_without_anonymous_mappings_every_buffer_is_a_plain_array(pool, monkeypatch):
    monkeypatch.setattr(_buffers, "_MAPPABLE", False)  # as on Windows
    a = _buffers.empty_frames((4, 16, 16, 3))
    assert a.shape == (4, 16, 16, 3) and a.base is None
    del a
    gc.collect()
    assert len(_buffers._pool) == 0


@pytest.mark.parametrize("holder", ["array", "view", "tensor", "tensor_view"])
def test_a_buffer_in_use_is_never_handed_out(pool, holder):
    shape = (4, 16, 16, 3)
    a = pool.empty_frames(shape)
    assert a.shape == shape and a.dtype == np.uint8 and a.flags.writeable and a.flags.c_contiguous
    a[:] = np.arange(a.size, dtype=np.int64).reshape(shape) % 251
    expected = a.copy()
    kept = {"array": a, "view": a[1:3], "tensor": torch.from_numpy(a),
            "tensor_view": torch.from_numpy(a)[2]}[holder]
    start = address(a)
    del a
    gc.collect()
    others = [pool.empty_frames(shape) for _ in range(3)]  # same size: would take a released buffer
    for other in others:
        other[:] = 7
        assert address(other) != start
    held = kept if isinstance(kept, np.ndarray) else kept.numpy()
    part = {"array": slice(None), "view": slice(1, 3), "tensor": slice(None), "tensor_view": 2}[holder]
    np.testing.assert_array_equal(held, expected[part])  # not overwritten by the later buffers


def test_a_released_buffer_is_reused(pool):
    shape = (3, 10, 12, 3)
    a = pool.empty_frames(shape)
    start = address(a)
    t = torch.from_numpy(a)[1:]
    del a
    gc.collect()
    assert len(pool._pool) == 0  # the tensor view still uses it
    del t
    gc.collect()
    assert len(pool._pool) == 1
    b = pool.empty_frames(shape)
    assert address(b) == start and len(pool._pool) == 0
    smaller = (2, 10, 12, 3)  # at least half of a released buffer is used, else a new one is made
    del b
    gc.collect()
    c = pool.empty_frames(smaller)
    assert address(c) == start and c.shape == smaller
    del c
    gc.collect()
    d = pool.empty_frames((1, 10, 12, 3))  # under half: a fresh buffer
    assert address(d) != start and len(pool._pool) == 1


def test_the_pool_is_bounded(pool):
    arrays = [pool.empty_frames((1, 8, 8, 3)) for _ in range(pool.POOL_SIZE + 3)]
    del arrays
    gc.collect()
    assert len(pool._pool) == pool.POOL_SIZE


def test_reader_results_stay_intact_across_reads(pool, barcode_video, oracles):
    # Reads into recycled buffers, while earlier results are held and after they are dropped.
    path, n = barcode_video
    rng = np.random.default_rng(0)
    with VideoReader(path) as reader:
        held = []
        for r in range(6):
            idx = rng.permutation(n)[:40] if r % 2 else np.arange(n)
            frames = reader.get_frames_at(idx)
            assert (oracles.read_barcode(frames) == idx).all()
            held.append((idx, frames))
            if r == 3:
                held = held[-1:]  # drop the earlier results: their buffers return to the pool
                gc.collect()
        for idx, frames in held:
            assert (oracles.read_barcode(frames) == idx).all()
    with VideoReader(path) as reader:
        assert torch.equal(reader[:], reader.get_frames_at(np.arange(n)))


def vm_flags(address):
    """The VmFlags of the mapping that holds ``address`` (from /proc/self/smaps)."""
    flags, inside = None, False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split()[0]
            if not first.endswith(":"):  # a mapping's header: "start-end perms ..."
                lo, hi = (int(x, 16) for x in first.split("-"))
                inside = lo <= address < hi  # (the kernel may have merged it with a neighbour)
            elif inside and first == "VmFlags:":
                flags = line.split()[1:]
    assert flags is not None
    return flags


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc")
def test_large_buffers_skip_transparent_huge_pages():
    # 32 MiB: above MIN_BYTES, a mapping of its own; the kernel is never asked for huge pages, where
    # np.empty asks for them (madvise "hg", from the second page on) on a kernel that has them.
    shape = (32, 1024, 1024)
    a = _buffers.empty_frames(shape)
    assert "hg" not in vm_flags(address(a) + a.nbytes // 2)
    core = getattr(np, "_core", None) or np.core
    get = getattr(core.multiarray, "_get_madvise_hugepage", None)
    if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled") and get is not None and get():
        b = np.empty(shape, dtype=np.uint8)  # the oracle's side: the test can tell
        assert "hg" in vm_flags(address(b) + b.nbytes // 2)


def test_concurrent_readers_share_the_pool_safely(pool, barcode_video, oracles):
    # Threads reading, holding and dropping results at once: every result carries the frames it asked for.
    path, n = barcode_video
    failures = []

    def work(seed):
        rng = np.random.default_rng(seed)
        with VideoReader(path) as reader:
            held = []
            for r in range(5):
                idx = rng.permutation(n)[:30]
                held.append((idx, reader.get_frames_at(idx)))
                if not (oracles.read_barcode(held[-1][1]) == idx).all():
                    failures.append(seed)
                if r % 2:
                    held.pop(0)
                    gc.collect()
            # the results still held were not overwritten by the other threads' reads
            failures.extend(seed for idx, frames in held if not (oracles.read_barcode(frames) == idx).all())

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
