import json
import multiprocessing
import os
import pickle

import pytest
import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Batch, Data

from videograph.datasets import GraphStore
from videograph.datasets.store import MANIFEST, finalize_store, shard_name, write_shard


def _graphs(count=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        n, e = 2 + i % 4, 3 * (i % 3)            # i % 3 == 0: no edges
        out.append(Data(x=torch.randn(n, 5, generator=g, dtype=torch.float32),
                        edge_index=torch.randint(0, n, (2, e), generator=g), edge_weight=torch.rand(e, generator=g,
                        dtype=torch.float64), mask=torch.rand(n, generator=g) > 0.5,
                        boxes=torch.rand(n, 3, 4, generator=g).to(torch.float16), y=i % 3, score=0.5 * i,
                        video=f"v{i}"))
    return out


def _assert_same(a: Data, b: Data):
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key] and type(a[key]) is type(b[key]), key


@pytest.mark.parametrize("shard_size", [1, 3, 100])
def test_round_trip_every_key_dtype_and_shape(tmp_path, shard_size):
    graphs = _graphs()
    store = GraphStore(tmp_path / "s", graphs, shard_size=shard_size, progress=False)
    assert len(store) == 10 and len(store.manifest["shards"]) == -(-10 // shard_size)
    for i, graph in enumerate(graphs):
        _assert_same(store[i], graph)
    _assert_same(store[-1], graphs[-1])
    reopened = GraphStore(tmp_path / "s")
    _assert_same(reopened[7], graphs[7])


def test_subsets_read_their_own_rows(tmp_path):
    graphs = _graphs()
    store = GraphStore(tmp_path / "s", graphs, shard_size=4, progress=False)
    view = store[3:9:2]                                   # rows 3, 5, 7
    assert len(view) == 3
    for got, row in zip(view.__getitems__([0, 1, 2]), (3, 5, 7)):
        _assert_same(got, graphs[row])
    picked = store[torch.tensor([9, 0, 4])]
    for got, row in zip(picked.__getitems__([2, 0, 1]), (4, 9, 0)):
        _assert_same(got, graphs[row])
    loader = DataLoader(picked, batch_size=3, collate_fn=Batch.from_data_list)
    batch = next(iter(loader))
    assert batch.video == ["v9", "v0", "v4"]
    with pytest.raises(IndexError):
        view.__getitems__([3])


def _read_all(store):
    loader = DataLoader(store, batch_size=4, num_workers=2, collate_fn=list,
                        multiprocessing_context=multiprocessing.get_context("spawn"))
    return [d.video for batch in loader for d in batch]


def test_workers_fork_and_spawn(tmp_path):
    graphs = _graphs(12)
    store = GraphStore(tmp_path / "s", graphs, shard_size=5, progress=False)
    store[0]                                                  # a connection open in the parent
    expected = [g.video for g in graphs]
    fork = DataLoader(store, batch_size=4, num_workers=2, collate_fn=list,
                      multiprocessing_context=multiprocessing.get_context("fork"))
    assert [d.video for batch in fork for d in batch] == expected
    assert _read_all(store) == expected
    assert pickle.loads(pickle.dumps(store))[5].video == "v5"


def test_nothing_is_unpickled_on_read(tmp_path, monkeypatch):
    store = GraphStore(tmp_path / "s", _graphs(), progress=False)
    fresh = GraphStore(tmp_path / "s")

    def refuse(*args, **kwargs):
        raise AssertionError("a store read must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    _assert_same(fresh[4], _graphs()[4])
    assert len(fresh.__getitems__([1, 2])) == 2 and len(store) == 10


def _crashing(graphs, at):
    for i, graph in enumerate(graphs):
        if i == at:
            raise RuntimeError("crash")
        yield graph


def test_a_crashed_build_is_detected_and_rebuilt(tmp_path):
    root, graphs = tmp_path / "s", _graphs()
    with pytest.raises(RuntimeError, match="crash"):
        GraphStore(root, _crashing(graphs, 7), shard_size=3, progress=False)
    assert (root / f"{shard_name(0)}.json").exists() and not (root / MANIFEST).exists()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        GraphStore(root)
    store = GraphStore(root, graphs, shard_size=3, progress=False)
    assert len(store) == 10
    _assert_same(store[9], graphs[9])
    # a shard rewritten behind the manifest's back (size mismatch) is not reused either
    with open(root / f"{shard_name(1)}.db", "ab") as handle:
        handle.write(b"\0" * 10)
    with pytest.raises(FileNotFoundError, match="unfinished"):
        GraphStore(root)


def test_sharded_writes_merge_equal_a_serial_build(tmp_path):
    graphs = _graphs(9)
    serial = GraphStore(tmp_path / "serial", graphs, shard_size=3, progress=False)
    for index in (2, 0, 1):                                   # any order, e.g. three workers
        write_shard(str(tmp_path / "sharded"), index, graphs[3 * index:3 * index + 3])
    with pytest.raises(ValueError, match="shard 3"):
        finalize_store(str(tmp_path / "sharded"), 4)
    finalize_store(str(tmp_path / "sharded"), 3)
    sharded = GraphStore(tmp_path / "sharded")
    for i in range(9):
        _assert_same(sharded[i], serial[i])
    manifest = json.loads((tmp_path / "sharded" / MANIFEST).read_text())
    assert manifest["count"] == 9 and [s["count"] for s in manifest["shards"]] == [3, 3, 3]


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        GraphStore(tmp_path / "none")
    with pytest.raises(ValueError, match="empty"):
        GraphStore(tmp_path / "a", [], progress=False)
    mixed = _graphs(3)
    mixed[2].extra = torch.zeros(1)
    with pytest.raises(ValueError, match="graph 2 .*same keys"):
        GraphStore(tmp_path / "b", mixed, progress=False)
    with pytest.raises(TypeError, match="'obj'"):
        GraphStore(tmp_path / "c", [Data(x=torch.zeros(1), obj=[1, 2])], progress=False)
    with pytest.raises(TypeError, match="bfloat16"):
        GraphStore(tmp_path / "d", [Data(x=torch.zeros(1, dtype=torch.bfloat16))], progress=False)
    with pytest.raises(TypeError, match="Data"):
        GraphStore(tmp_path / "e", [torch.zeros(3)], progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        GraphStore(tmp_path / "f", _graphs(2), shard_size=0)
    assert not os.path.exists(tmp_path / "b" / MANIFEST)


@pytest.mark.parametrize("batch_size", [1, 4, 256])
def test_shards_built_without_journal_are_flushed_and_intact(tmp_path, monkeypatch, batch_size):
    import sqlite3

    import videograph.datasets.store as store_module
    events = []
    real_fsync, real_write_json = store_module._fsync, store_module._write_json
    monkeypatch.setattr(store_module, "_fsync", lambda path: (events.append(("fsync", path)), real_fsync(path)))
    monkeypatch.setattr(store_module, "_write_json",
                        lambda path, content: (events.append(("json", path)), real_write_json(path, content)))
    graphs = _graphs(10)
    root = tmp_path / "s"
    description = write_shard(str(root), 0, graphs, batch_size=batch_size)
    # the database was flushed to disk (under its temporary name) before its description marked it finished
    assert [kind for kind, _ in events] == ["fsync", "json"] and ".building-" in events[0][1]
    assert sorted(os.listdir(root)) == [f"{shard_name(0)}.db", f"{shard_name(0)}.json"]
    # SQLite's own check of the file; readers get SQLite's default journal mode back
    with sqlite3.connect(root / f"{shard_name(0)}.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert connection.execute("PRAGMA page_size").fetchone() == (store_module._PAGE_SIZE,)
        assert connection.execute("SELECT COUNT(*) FROM _Shard").fetchone() == (10,)
    finalize_store(str(root), 1)
    store = GraphStore(root)
    assert description["count"] == 10
    for i in range(10):
        _assert_same(store[i], graphs[i])
