import json
import os
import subprocess
import sys

import pytest
import torch

from videograph.datasets import GraphStore, read_proposal_list
from videograph.datasets.formats import proposal_list_blocks
from videograph.datasets.store import MANIFEST, shard_name
from videograph.preprocess import intra_op_threads, preprocess, read_items

ANET = "pgcn/ssn_activitynet1.2_tag_val_normalized_proposal_list.txt"


@pytest.fixture
def proposal_list(shared_data, tmp_path):
    """The first 23 videos of SSN's ActivityNet 1.2 proposal list, in its own format."""
    text = open(os.path.join(shared_data, ANET)).read()
    blocks = text.split("#")[1:24]
    path = tmp_path / "list.txt"
    path.write_text("".join("#" + block for block in blocks))
    return str(path)


def _same(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert sorted(x.keys()) == sorted(y.keys())
        for key in x.keys():
            assert (torch.equal(x[key], y[key]) if isinstance(x[key], torch.Tensor) else x[key] == y[key]), key


def test_n_shards_merged_equal_the_serial_store(proposal_list, tmp_path):
    assert preprocess(proposal_list, "proposals", str(tmp_path / "serial"), shard_size=5, progress=False)
    assert preprocess(proposal_list, "proposals", str(tmp_path / "two"), shard_index=1, num_shards=2, shard_size=5,
                      progress=False) is None                          # blocks 1, 3 only: not finished
    manifest = preprocess(proposal_list, "proposals", str(tmp_path / "two"), shard_index=0, num_shards=2,
                          shard_size=5, progress=False)
    assert manifest["count"] == 23 and len(manifest["shards"]) == 5
    serial, two = GraphStore(tmp_path / "serial"), GraphStore(tmp_path / "two")
    _same(serial, two)
    entries = read_proposal_list(proposal_list)
    for i in (0, 11, 22):                                              # the list's order, its segments and labels
        assert serial[i].video == entries[i].video
        assert torch.equal(serial[i].segments, entries[i].segments.to(serial[i].segments.dtype))
        assert torch.equal(serial[i].y, entries[i].labels)


def test_a_crashed_run_resumes(proposal_list, tmp_path, monkeypatch):
    import videograph.preprocess as module
    out = str(tmp_path / "store")
    real = module._builder
    calls = {"n": 0}

    def crashing(kind, options):
        build = real(kind, options)

        def wrapped(item):
            calls["n"] += 1
            if calls["n"] == 13:
                raise RuntimeError("crash")
            return build(item)
        return wrapped

    monkeypatch.setattr(module, "_builder", crashing)
    with pytest.raises(RuntimeError, match="crash"):
        preprocess(proposal_list, "proposals", out, shard_size=5, progress=False)
    finished = sorted(f for f in os.listdir(out) if f.endswith(".json") and f.startswith("shard-"))
    assert finished == [f"{shard_name(0)}.json", f"{shard_name(1)}.json"] and not os.path.exists(
        os.path.join(out, MANIFEST))
    monkeypatch.setattr(module, "_builder", real)
    calls["n"] = 0
    seen = []
    monkeypatch.setattr(module, "_builder", lambda kind, options: (lambda item: seen.append(item) or
                                                                   real(kind, options)(item)))
    preprocess(proposal_list, "proposals", out, shard_size=5, progress=False)
    assert len(seen) == 13                                             # blocks 2, 3, 4 only
    _same(GraphStore(out), GraphStore(str(tmp_path / "fresh"), [real("proposals", {})(b) for b in
                                                                 proposal_list_blocks(proposal_list)], progress=False))


def test_other_inputs_into_the_same_store_are_refused(proposal_list, tmp_path):
    out = str(tmp_path / "store")
    preprocess(proposal_list, "proposals", out, shard_size=5, progress=False)
    with pytest.raises(ValueError, match="other inputs"):
        preprocess(proposal_list, "proposals", out, shard_size=4, progress=False)


def test_video_lists_and_bad_arguments(tmp_path):
    listing = tmp_path / "videos.txt"
    listing.write_text("a.mp4 3\nsub/b.avi\n\n")
    assert read_items(str(listing), "tubelets") == [(str(tmp_path / "a.mp4"), 3), (str(tmp_path / "sub/b.avi"), None)]
    listing.write_text("a.mp4 x\n")
    with pytest.raises(ValueError, match="label"):
        read_items(str(listing), "regions")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_items(str(tmp_path / "nope.txt"), "proposals")
    with pytest.raises(ValueError, match="kind"):
        read_items(str(listing), "boxes")
    with pytest.raises(ValueError, match="shard_index"):
        preprocess(str(listing), "proposals", str(tmp_path / "s"), shard_index=2, num_shards=2)


def test_cli_under_rank_environment(proposal_list, tmp_path):
    out = str(tmp_path / "store")
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for rank in (0, 1):
        subprocess.run([sys.executable, "-m", "videograph", "preprocess", proposal_list, "--kind", "proposals",
                        "--out", out, "--shard-size", "8", "--no-progress"], check=True,
                       env=dict(env, RANK=str(rank), WORLD_SIZE="2"), capture_output=True)
    assert json.loads(open(os.path.join(out, MANIFEST)).read())["count"] == 23


@pytest.mark.parametrize("num_shards, environ, cores, expected", [
    (1, {}, 8, None),                                    # one process: torch's default
    (2, {}, 2, 1), (2, {}, 8, 4), (3, {}, 8, 2), (16, {}, 2, 1),
    (4, {"LOCAL_WORLD_SIZE": "2"}, 8, 4),                # torchrun: 2 of the 4 shards on this machine
    (2, {"OMP_NUM_THREADS": "3"}, 8, None),              # the user's setting wins
])
def test_shard_processes_split_the_cores(num_shards, environ, cores, expected):
    assert intra_op_threads(num_shards, environ, cores) == expected


def test_sharded_call_restores_the_threads(proposal_list, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    import videograph.preprocess as module
    seen = []
    real = module._preprocess
    monkeypatch.setattr(module, "_preprocess", lambda *a: (seen.append(torch.get_num_threads()), real(*a))[1])
    before = torch.get_num_threads()
    preprocess(proposal_list, "proposals", str(tmp_path / "s"), shard_index=0, num_shards=2, progress=False)
    assert seen == [intra_op_threads(2)] and torch.get_num_threads() == before


@pytest.mark.parametrize("kind", ["tubelets", "regions"])
def test_cli_preprocesses_videos_as_build_graph_does(tmp_path, kind):
    """Two shards of a video list through the CLI (shape detector file) equal build_graph on each video."""
    from videograph import build_graph
    from videograph.cli import main
    from videograph.io import write_video
    from videograph.video.shape_detector import load_shape_detector, save_shape_detector, shape_detector_model

    generator = torch.Generator().manual_seed(0)
    names = []
    for i in range(2):
        frames = torch.randint(0, 256, (8, 48, 64, 3), dtype=torch.uint8, generator=generator)
        write_video(tmp_path / f"v{i}.mp4", frames, fps=8)
        names.append(f"v{i}.mp4 {i}")
    (tmp_path / "videos.txt").write_text("\n".join(names) + "\n")
    torch.manual_seed(0)
    weights = tmp_path / "shapes.pt"
    save_shape_detector(shape_detector_model((48, 64), score_thresh=0.0), weights, (48, 64))
    out = str(tmp_path / "store")
    for index in (1, 0):
        main(["preprocess", str(tmp_path / "videos.txt"), "--kind", kind, "--out", out, "--shard-size", "1",
              "--shard-index", str(index), "--num-shards", "2", "--detector", "shapes", "--weights", str(weights),
              "--score-threshold", "0", "--num-clips", "2", "--clip-len", "4", "--top-m", "3", "--no-progress"])
    store = GraphStore(out)
    detector = load_shape_detector(weights, score_threshold=0.0)
    assert len(store) == 2
    for i in range(2):
        expected = build_graph(str(tmp_path / f"v{i}.mp4"), kind=kind, detector=detector, num_clips=2, clip_len=4,
                               top_m=3, progress=False)
        got = store[i]
        assert got.video == f"v{i}.mp4" and got.y.tolist() == [i]
        for key in expected.keys():
            value = expected[key]
            assert (torch.equal(got[key], value) if isinstance(value, torch.Tensor) else got[key] == value), key


def test_cli_video_kinds_need_a_detector(tmp_path):
    from videograph.cli import main
    (tmp_path / "videos.txt").write_text("a.mp4\n")
    with pytest.raises(ValueError, match="--detector"):
        main(["preprocess", str(tmp_path / "videos.txt"), "--kind", "regions", "--out", str(tmp_path / "s")])
    with pytest.raises(ValueError, match="--weights"):
        main(["preprocess", str(tmp_path / "videos.txt"), "--kind", "regions", "--out", str(tmp_path / "s"),
              "--detector", "shapes"])
    with pytest.raises(FileNotFoundError, match="none.pt"):
        main(["preprocess", str(tmp_path / "videos.txt"), "--kind", "tubelets", "--out", str(tmp_path / "s"),
              "--detector", "shapes", "--weights", str(tmp_path / "none.pt")])
