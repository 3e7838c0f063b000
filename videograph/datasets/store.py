r"""``GraphStore``: graphs on disk in shards of PyG's :class:`~torch_geometric.data.OnDiskDataset` (SQLite), read
by many workers and processes, written atomically.

Layout of a store folder::

    root/
      shard-00000.db   shard-00000.json   # one SQLite database per shard, then its description
      shard-00001.db   shard-00001.json
      manifest.json                        # written last: the shards, their counts, sizes and the schema

Every tensor is stored as its raw bytes in a ``BLOB`` column of an explicit schema (one column per key) with its
shape in an ``int64`` ``videograph_shapes`` column; Python ``int`` / ``float`` / ``str`` attributes are native SQL columns.
Nothing is pickled, in either direction. A shard's JSON is written (temp file + rename) only after its database
is complete, and the manifest only after every shard: a folder without a manifest, or whose manifest disagrees
with the files, is an unfinished build. :class:`GraphStore` rebuilds it when given the graphs, and refuses to
read it otherwise.
"""
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data, Dataset, OnDiskDataset
from tqdm import tqdm

__all__ = ["GraphStore", "write_shard", "finalize_store", "shard_name"]

MANIFEST = "manifest.json"
_FORMAT = 1
_SHAPES = "videograph_shapes"      # the int64 column holding every tensor's rank and shape
_SCALARS = {"int": int, "float": float, "str": str}
# dtypes whose raw bytes round-trip through NumPy (PyG's SQLite backend serialises with ``Tensor.numpy()``)
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.bool, torch.complex64, torch.complex128)}


def shard_name(index: int) -> str:
    """``shard-00007`` for shard 7 (the database is ``<name>.db``, its description ``<name>.json``)."""
    return f"shard-{index:05d}"


def _describe(data: Data, where: str) -> Dict[str, str]:
    """``key -> dtype name`` (tensors) or ``"int" | "float" | "str"`` of one graph, in key order."""
    if not isinstance(data, Data):
        raise TypeError(f"{where} must be a torch_geometric.data.Data, got {type(data).__name__}")
    schema = {}
    for key, value in sorted(data.to_dict().items()):
        if isinstance(value, Tensor):
            if value.layout != torch.strided:
                raise TypeError(f"{where}: key {key!r} is a {value.layout} tensor; only dense tensors are stored")
            name = str(value.dtype).removeprefix("torch.")
            if name not in _DTYPES:
                raise TypeError(f"{where}: key {key!r} has dtype {value.dtype}; stored dtypes are {sorted(_DTYPES)}")
            schema[key] = name
        elif isinstance(value, bool) or type(value).__name__ not in _SCALARS:
            raise TypeError(f"{where}: key {key!r} is a {type(value).__name__}; a store holds tensors, int, float "
                            "and str (no pickling)")
        else:
            schema[key] = type(value).__name__
    return schema


def _column(key: str) -> str:
    if not key.isidentifier() or key == _SHAPES:
        raise ValueError(f"key {key!r} cannot be stored: keys must be identifiers other than {_SHAPES!r}")
    return key


class _Shard(OnDiskDataset):
    """One shard: an ``OnDiskDataset`` over ``<root>/<name>.db`` with the store's explicit schema."""

    def __init__(self, root: str, name: str, schema: Dict[str, str]):
        self._name, self.keys_schema = name, dict(schema)
        self.tensor_keys = [k for k, kind in schema.items() if kind not in _SCALARS]
        db_schema: Dict[str, Any] = {_SHAPES: dict(dtype=torch.int64, size=(-1,))}
        for key, kind in schema.items():
            db_schema[_column(key)] = _SCALARS[kind] if kind in _SCALARS else dict(dtype=_DTYPES[kind], size=(-1,))
        super().__init__(root, backend="sqlite", schema=db_schema, log=False)

    @property
    def processed_dir(self) -> str:
        return self.root

    @property
    def processed_file_names(self) -> str:
        return f"{self._name}.db"

    def serialize(self, data: Data) -> Dict[str, Any]:
        row, meta = {}, []
        items = data.to_dict()
        for key, kind in self.keys_schema.items():
            value = items[key]
            if kind in _SCALARS:
                row[key] = value
            else:
                meta += [value.dim(), *value.shape]
                row[key] = value.detach().cpu().contiguous().view(-1)
        row[_SHAPES] = torch.tensor(meta, dtype=torch.int64)
        return row

    def deserialize(self, row: Dict[str, Any]) -> Data:
        meta, at, out = row.pop(_SHAPES).tolist(), 0, {}
        for key, kind in self.keys_schema.items():
            value = row[key]
            if kind not in _SCALARS:
                ndim = meta[at]
                value = value.view(meta[at + 1:at + 1 + ndim]).clone()   # own the memory (frombuffer shares it)
                at += 1 + ndim
            out[key] = value
        return Data.from_dict(out)


def _write_json(path: str, content: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(content, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


_PAGE_SIZE = 16384     # 4x SQLite's default: a quarter of the write calls for the same bytes, same size on disk


def _build_mode(shard: _Shard) -> None:
    """No rollback journal and no sync per commit while a shard is built: its database is private to the
    building process under a temporary name and thrown away when the build fails (atomicity comes from the
    rename), so SQLite's crash protection would only cost a journal file and a disk flush per ``extend``. The
    finished file is flushed once (:func:`_fsync`). The (still empty) database gets pages of ``_PAGE_SIZE``."""
    shard.db.cursor.execute(f"PRAGMA page_size={_PAGE_SIZE}")
    shard.db.cursor.execute("VACUUM")
    shard.db.cursor.execute("PRAGMA journal_mode=OFF")
    shard.db.cursor.execute("PRAGMA synchronous=OFF")


def _fsync(path: str) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_shard(root: str, index: int, graphs: Iterable[Data], *, progress: bool = False,
                batch_size: int = 256) -> dict:
    r"""Writes shard ``index`` of a store from ``graphs`` and returns its description. The database is written
    under a temporary name (without SQLite's journal), flushed to disk, renamed when complete, then described in
    ``<shard>.json``; a shard whose JSON exists is finished (callers resume by skipping it)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"'index' must be an int >= 0, got {index!r}")
    os.makedirs(root, exist_ok=True)
    name = shard_name(index)
    final = os.path.join(root, f"{name}.db")
    building = f"{name}.building-{os.getpid()}"
    path = os.path.join(root, f"{building}.db")
    for leftover in (final, path):
        if os.path.exists(leftover):
            os.remove(leftover)
    shard, schema, count, pending = None, None, 0, []
    try:
        for data in tqdm(graphs, desc=f"shard {index}", disable=not progress, leave=False):
            described = _describe(data, f"graph {count} of shard {index}")
            if schema is None:
                schema = described
                shard = _Shard(root, building, schema)
                _build_mode(shard)
            elif described != schema:
                raise ValueError(f"graph {count} of shard {index} has keys/dtypes {described}, but the store's first "
                                 f"graph has {schema}: every graph of a store must have the same keys and dtypes")
            pending.append(data)
            count += 1
            if len(pending) == batch_size:
                shard.extend(pending)
                pending = []
        if schema is None:
            raise ValueError(f"'graphs' of shard {index} is empty")
        if pending:
            shard.extend(pending)
    finally:
        if shard is not None:
            shard.close()
    _fsync(path)                        # on disk before it is renamed and described as finished
    os.replace(path, final)
    description = {"format": _FORMAT, "name": name, "count": count, "schema": schema, "bytes": os.path.getsize(final)}
    _write_json(os.path.join(root, f"{name}.json"), description)
    return description


def finalize_store(root: str, num_shards: int) -> dict:
    """Checks shards ``0 … num_shards - 1`` of ``root`` and writes the manifest. Raises a ``ValueError`` naming the
    first missing, unfinished or inconsistent shard."""
    shards = []
    for index in range(num_shards):
        description = _read_json(os.path.join(root, f"{shard_name(index)}.json"))
        if description is None or not _shard_intact(root, description):
            raise ValueError(f"shard {index} of the store {root!r} is missing or unfinished")
        if shards and description["schema"] != shards[0]["schema"]:
            raise ValueError(f"shard {index} of {root!r} has schema {description['schema']}, shard 0 has "
                             f"{shards[0]['schema']}")
        shards.append(description)
    manifest = {"format": _FORMAT, "count": sum(s["count"] for s in shards), "schema": shards[0]["schema"],
                "shards": [{k: s[k] for k in ("name", "count", "bytes")} for s in shards]}
    _write_json(os.path.join(root, MANIFEST), manifest)
    return manifest


def _shard_intact(root: str, description: dict) -> bool:
    path = os.path.join(root, f"{description['name']}.db")
    return os.path.exists(path) and os.path.getsize(path) == description["bytes"]


def _complete(root: str) -> Optional[dict]:
    manifest = _read_json(os.path.join(root, MANIFEST))
    if manifest is None or manifest.get("format") != _FORMAT:
        return None
    if not all(_shard_intact(root, s) for s in manifest["shards"]):
        return None
    return manifest


class GraphStore(Dataset):
    r"""A folder of graph shards (see the module docstring), read like a PyG dataset.

    ``GraphStore(root)`` opens a finished store; ``GraphStore(root, graphs)`` builds it first when it is absent
    or unfinished (a crashed build is detected and rebuilt, never reused) and opens it. ``store[i]`` is a
    :class:`~torch_geometric.data.Data`, ``store[a:b]`` / ``store[index_tensor]`` a subset view (PyG's
    ``index_select``) whose batched reads (``__getitems__``, used by :class:`torch.utils.data.DataLoader`) fetch the
    subset's rows. Connections are opened lazily per process, so a store is safe in ``DataLoader`` workers (fork)
    and under ``spawn`` (it pickles without them).

    Args:
        root: the store folder.
        graphs: graphs to build from when the store is not finished (any iterable of ``Data`` with the same keys
            and dtypes). (default: :obj:`None`)
        shard_size: graphs per shard when building. (default: :obj:`4096`)
        rebuild: rebuild even when finished (needs ``graphs``). (default: :obj:`False`)
        transform: applied to every graph read. (default: :obj:`None`)
        progress: a progress bar while building. (default: :obj:`True`)
    """

    def __init__(self, root: str, graphs: Optional[Iterable[Data]] = None, *, shard_size: int = 4096,
                 rebuild: bool = False, transform=None, progress: bool = True):
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"'shard_size' must be a positive int, got {shard_size!r}")
        self.store_root = os.fspath(root)
        manifest = None if rebuild else _complete(self.store_root)
        if manifest is None:
            if graphs is None:
                state = "unfinished" if os.path.isdir(self.store_root) else "absent"
                raise FileNotFoundError(f"the graph store {self.store_root!r} is {state} (no valid {MANIFEST}): "
                                        "pass 'graphs' to build it")
            manifest = self.build(self.store_root, graphs, shard_size=shard_size, progress=progress)
        self.manifest = manifest
        counts = torch.tensor([s["count"] for s in manifest["shards"]])
        self._offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self._shards: Optional[List[_Shard]] = None
        self._pid = None
        super().__init__(None, transform=transform, log=False)

    @staticmethod
    def build(root: str, graphs: Iterable[Data], *, shard_size: int = 4096, progress: bool = True) -> dict:
        """Writes ``graphs`` into ``root`` in shards of ``shard_size`` and finalises it; stale files of an earlier
        build are removed first. Returns the manifest."""
        os.makedirs(root, exist_ok=True)
        for name in os.listdir(root):
            if name == MANIFEST or name.startswith("shard-"):
                os.remove(os.path.join(root, name))
        iterator, index = iter(graphs), 0
        bar = tqdm(desc="graph store", unit="graph", disable=not progress)
        while True:
            chunk = []
            for data in iterator:
                chunk.append(data)
                bar.update(1)
                if len(chunk) == shard_size:
                    break
            if not chunk:
                break
            write_shard(root, index, chunk)
            index += 1
        bar.close()
        if index == 0:
            raise ValueError("'graphs' is empty: a store needs at least one graph")
        return finalize_store(root, index)

    # connections: one set per process --------------------------------------------------------------------------
    def _open(self) -> List[_Shard]:
        if self._shards is None or self._pid != os.getpid():
            schema = self.manifest["schema"]
            self._shards = [_Shard(self.store_root, s["name"], schema) for s in self.manifest["shards"]]
            self._pid = os.getpid()
        return self._shards

    def close(self) -> None:
        """Closes this process's connections (they reopen on the next read)."""
        if self._shards is not None and self._pid == os.getpid():
            for shard in self._shards:
                shard.close()
        self._shards = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_shards"], state["_pid"] = None, None
        return state

    # PyG Dataset interface ----------------------------------------------------------------------------------------
    def len(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, indices: Sequence[int]) -> Tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        shard = torch.searchsorted(self._offsets, index, right=True) - 1
        return shard, index - self._offsets[shard]

    def get(self, idx: int) -> Data:
        shard, local = self._locate([idx])
        return self._open()[int(shard)].get(int(local))

    def __getitems__(self, indices: Sequence[int]) -> List[Data]:
        """Batched read of positions ``indices`` of this view (the subset's own rows, in the given order)."""
        rows, size = self.indices(), len(self)
        bad = [i for i in indices if not -size <= i < size]
        if bad:
            raise IndexError(f"index {bad[0]} is out of range for a store (view) of {size} graphs")
        shard, local = self._locate([rows[i] for i in indices])
        shards = self._open()
        out: List[Optional[Data]] = [None] * len(indices)
        for s in shard.unique().tolist():
            where = (shard == s).nonzero().flatten()
            for position, data in zip(where.tolist(), shards[s].multi_get(local[where].tolist())):
                out[position] = data
        if self.transform is not None:
            out = [self.transform(data) for data in out]
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, shards={len(self.manifest['shards'])})"
