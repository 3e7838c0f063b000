import os
import warnings

import av
import numpy as np
import pytest
import torch

from videograph.io import VideoMetadata, VideoReader, write_video
from videograph.io._torchcodec import torchcodec_available


CLIPS = [  # (path under videos/, frames ffmpeg decodes, a stride that keeps the check cheap)
    ("mmaction2/demo.mp4", 280, 1),
    ("mmaction2/test.mp4", 300, 1),
    ("mmaction2/part_0.mp4", 32, 1),
    ("mmaction2/demo_spatiotemporal_det.mp4", 57, 1),
    ("mmaction2/test.avi", 164, 1),
    ("mmaction2/S001C001P001R001A001_rgb.avi", 103, 17),  # 1080p: a strided subset
    ("decord/flipping_a_pancake.mkv", 310, 1),
    ("decord/unordered.mov", 4, 1),
    ("decord/video_0.mov", 3, 1),
    ("decord/video_90.mov", 3, 1),
    ("decord/video_180.mov", 3, 1),
    ("decord/video_270.mov", 3, 1),
]
needs_torchcodec = pytest.mark.skipif(not torchcodec_available(),
                                      reason="torchcodec (with the system FFmpeg libraries) is not installed")


def clip(shared_data, name):
    return os.path.join(shared_data, "videos", name)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def oracle(oracles):
    cache = {}

    def decode(path, height, width, every=1):
        if (path, every) not in cache:
            cache[path, every] = oracles.ffmpeg_decode(path, height, width, every=every)
        return cache[path, every]
    return decode


# ------------------------------------------------------------------------ real clips vs ffmpeg CLI
@pytest.mark.parametrize("name, count, stride", CLIPS)
def test_real_clip_matches_ffmpeg(shared_data, oracle, name, count, stride):
    path = clip(shared_data, name)
    with VideoReader(path, backend="pyav") as reader:
        m = reader.metadata
        assert len(reader) == m.num_frames == count  # counted from the stream
        expected = oracle(path, m.height, m.width, every=stride)
        index = np.arange(0, count, stride)
        assert len(expected) == len(index)
        frames = reader[::stride]
        assert frames.dtype == torch.uint8 and frames.shape == (len(index), m.height, m.width, 3)
        assert torch.equal(frames, torch.from_numpy(expected))


@pytest.mark.parametrize("name, count, stride", [c for c in CLIPS if c[1] > 3])
def test_real_clip_random_access_matches_ffmpeg(shared_data, oracle, name, count, stride):
    path = clip(shared_data, name)
    with VideoReader(path, backend="pyav") as reader:
        expected = oracle(path, reader.metadata.height, reader.metadata.width, every=stride)
        rng = np.random.default_rng(0)
        index = stride * rng.choice(len(expected), size=min(len(expected), 40), replace=False)
        index = np.concatenate([index, index[:3]])  # repeats too
        assert torch.equal(reader.get_frames_at(index), torch.from_numpy(expected[index // stride]))
        i = int(index.min())  # single-frame reads decode from the GOP start: keep the 1080p one short
        assert torch.equal(reader[i], torch.from_numpy(expected[i // stride]))
        assert torch.equal(reader[i - count], torch.from_numpy(expected[i // stride]))  # negative index


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_rotation_is_applied_like_ffmpeg(shared_data, oracle, angle):
    path = clip(shared_data, f"decord/video_{angle}.mov")
    with av.open(path) as c:  # the display matrix is there, and unapplied by PyAV
        raw = next(c.decode(video=0))
        stored = (raw.height, raw.width)
    with VideoReader(path) as reader:
        m = reader.metadata
        assert m.rotation % 360 == (-angle) % 360
        assert (m.height, m.width) == (stored if angle % 180 == 0 else stored[::-1])
        assert torch.equal(reader[:], torch.from_numpy(oracle(path, m.height, m.width)))


def test_unordered_pts_are_numbered_in_presentation_order(shared_data, oracle):
    path = clip(shared_data, "decord/unordered.mov")
    with av.open(path) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert pts != sorted(pts)  # the pitfall is present: packets come out of presentation order
    with VideoReader(path) as reader:
        expected = oracle(path, reader.metadata.height, reader.metadata.width)
        for i in (3, 0, 2, 1):
            assert torch.equal(reader[i], torch.from_numpy(expected[i]))


def test_header_frame_count_is_not_trusted(shared_data, tmp_path, oracles):
    # The mkv header holds no frame count (PyAV reports 0); the reader counts the stream's frames.
    path = clip(shared_data, "decord/flipping_a_pancake.mkv")
    with av.open(path) as c:
        assert c.streams.video[0].frames == 0
    with VideoReader(path) as reader:
        assert len(reader) == len(oracles.ffmpeg_decode(path, reader.metadata.height, reader.metadata.width))
    # A header that claims more frames than the data holds: corrupted.mp4 says 50, and decodes 28.
    with av.open(clip(shared_data, "decord/corrupted.mp4")) as c:
        assert c.streams.video[0].frames == 50


def test_metadata(shared_data):
    with VideoReader(clip(shared_data, "mmaction2/test.mp4")) as reader:
        m = reader.metadata
    assert isinstance(m, VideoMetadata)
    assert (m.num_frames, m.width, m.height, m.codec, m.backend, m.rotation) == (300, 340, 256, "h264",
                                                                              "pyav", 0)
    assert m.fps == pytest.approx(30.0)
    assert m.duration == pytest.approx(10.0, abs=0.05)


# -------------------------------------------------------------------- written fixtures: barcodes
def test_barcode_fixture_has_b_frames_and_gops(barcode_video):
    path, n = barcode_video
    with av.open(os.fspath(path)) as c:
        packets = [(p.pts, p.is_keyframe) for p in c.demux(video=0) if p.size]
    pts = [p for p, _ in packets]
    assert len(packets) == n and pts != sorted(pts)  # B-frames: decode order != presentation order
    assert sum(k for _, k in packets) >= 6  # several GOPs, so reads must seek


def test_sequential_read_of_barcodes(barcode_video, oracles):
    path, n = barcode_video
    with VideoReader(path) as reader:
        assert len(reader) == n
        assert (oracles.read_barcode(reader[:]) == np.arange(n)).all()
        assert (oracles.read_barcode(reader[5:80:7]) == np.arange(5, 80, 7)).all()
        assert (oracles.read_barcode(reader[::-3]) == np.arange(n)[::-3]).all()
        assert reader[10:10].shape == (0, oracles.H, oracles.W, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_get_frames_at_random_permutation(barcode_video, seed, oracles):
    path, n = barcode_video
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    with VideoReader(path) as reader:
        frames = reader.get_frames_at(perm)
        assert frames.shape == (n, oracles.H, oracles.W, 3)
        assert (oracles.read_barcode(frames) == perm.numpy()).all()
        sub = perm[:17]
        assert (oracles.read_barcode(reader.get_frames_at(sub.tolist())) == sub.numpy()).all()


def test_seek_decodes_forward_from_the_keyframe(barcode_video, oracles):
    path, n = barcode_video
    with av.open(os.fspath(path)) as c:
        s = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(s) if p.size)
        target = 12 * 5 + 7  # mid-GOP, not a keyframe
        c.seek(int(pts[target]), stream=s, backward=True, any_frame=False)
        first = next(c.decode(s))
    assert first.pts != pts[target]  # a plain seek lands on the keyframe before the target
    with VideoReader(path) as reader:
        for i in (target, 3, n - 1, 40, 41, 0, target):  # backward and forward jumps
            assert oracles.read_barcode(reader[i][None])[0] == i


@pytest.mark.parametrize("codec, options, seeks", [
    ("libx264", {"g": "12", "bf": "3", "x264-params": "b-adapt=0"}, False),  # B-frames: from the start
    ("mpeg4", {"g": "12", "bf": "2"}, False),  # open GOPs: leading B-frames follow each keyframe
    ("mpeg4", {"g": "12", "bf": "0"}, True),  # no reordering: every keyframe is an entry point
])
def test_avi_is_numbered_in_decoder_order(tmp_path, oracles, codec, options, seeks):
    path = tmp_path / f"barcode_{codec}.avi"
    n = 60
    write_video(path, oracles.barcode_frames(n), fps=25, codec=codec, options=options)
    expected = oracles.ffmpeg_decode(path, oracles.H, oracles.W)
    assert (oracles.read_barcode(expected) == np.arange(n)).all()
    with VideoReader(path) as reader:
        assert len(reader) == n and not reader._backend.by_pts
        assert (len(reader._backend.key_index) > 1) == seeks
        perm = np.random.default_rng(0).permutation(n)
        assert torch.equal(reader.get_frames_at(perm), torch.from_numpy(expected[perm]))
        for i in (41, 13, 59, 24, 25, 0):  # single reads, backward and forward
            assert torch.equal(reader[i], torch.from_numpy(expected[i]))
    if torchcodec_available():  # torchcodec numbers frames by timestamps: only without reordering
        if seeks:
            with VideoReader(path, backend="torchcodec") as reader:
                frames = reader.get_frames_at(perm).numpy()
            # The same frames, in the same order; MPEG-4 Part 2 leaves the IDCT's rounding to the
            # decoder, and torchcodec's FFmpeg (the system's) is another build than PyAV's: +-2.
            assert (oracles.read_barcode(frames) == perm).all()
            assert np.abs(frames.astype(int) - expected[perm]).max() <= 2
        else:
            with pytest.raises(ValueError, match="reorders frames"):
                VideoReader(path, backend="torchcodec")


def test_threading_is_on_and_does_not_change_frames(barcode_video):
    path, n = barcode_video
    with VideoReader(path) as threaded, VideoReader(path, num_threads=1) as single:
        assert threaded._backend.stream.thread_type in (av.codec.context.ThreadType.AUTO,
                                                        av.codec.context.ThreadType.FRAME)
        assert single._backend.stream.thread_count == 1
        assert torch.equal(threaded[:], single[:])


def test_write_video_round_trip(tmp_path, oracles):
    frames = oracles.barcode_frames(20)
    path = tmp_path / "out.mkv"
    write_video(path, torch.from_numpy(frames), fps=12.5)
    decoded = oracles.ffmpeg_decode(path, oracles.H, oracles.W)  # an independent decoder reads what we wrote
    assert len(decoded) == 20 and (oracles.read_barcode(decoded) == np.arange(20)).all()
    error = np.abs(decoded.astype(int) - frames)  # lossy, but the picture: the bars, and the noise
    assert error[:, :32].mean() < 3  # in 8x8 blocks (4:2:0 chroma keeps no per-pixel colour noise)
    blocks = (decoded.astype(float) - frames).reshape(20, 8, 8, 12, 8, 3).mean(axis=(2, 4))
    assert np.abs(blocks).mean() < 8
    with VideoReader(path) as reader:
        assert reader.metadata.fps == pytest.approx(12.5)
        assert torch.equal(reader[:], torch.from_numpy(decoded))


def test_write_video_from_an_iterable(tmp_path, oracles):
    frames = oracles.barcode_frames(15)
    path = tmp_path / "gen.mp4"
    assert write_video(path, (torch.from_numpy(f) for f in frames), fps=10) == 15
    decoded = oracles.ffmpeg_decode(path, oracles.H, oracles.W)
    assert (oracles.read_barcode(decoded) == np.arange(15)).all()
    with pytest.raises(ValueError, match="shape"):
        write_video(tmp_path / "bad.mp4", [frames[0], frames[1, :32]], fps=10)
    with pytest.raises(ValueError, match="no frame"):
        write_video(tmp_path / "none.mp4", iter(()), fps=10)


def test_reader_pickles_by_path(barcode_video, oracles):
    import pickle
    path, n = barcode_video
    with VideoReader(path, errors="truncate", num_threads=1) as reader:
        reader[5]
        clone = pickle.loads(pickle.dumps(reader))  # what a DataLoader worker receives
    with clone:
        assert (clone.errors, clone.metadata) == ("truncate", reader.metadata)
        assert (oracles.read_barcode(clone.get_frames_at([7, 2])) == [7, 2]).all()


@pytest.mark.parametrize("frames, fps, error", [
    (np.zeros((2, 8, 8, 3), dtype=np.float32), 10, TypeError),
    (np.zeros((8, 8, 3), dtype=np.uint8), 10, ValueError),
    (np.zeros((0, 8, 8, 3), dtype=np.uint8), 10, ValueError),
    (np.zeros((2, 7, 8, 3), dtype=np.uint8), 10, ValueError),
    (np.zeros((2, 8, 8, 3), dtype=np.uint8), 0, ValueError),
    ([[0]], 10, TypeError),
])
def test_write_video_bad_input(tmp_path, frames, fps, error):
    with pytest.raises(error, match="write_video"):
        write_video(tmp_path / "x.mp4", frames, fps)


# -------------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoReader(path)


def write_audio_only(path):
    with av.open(os.fspath(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16",
                                           layout="mono")
        frame.rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.mark.parametrize("kind", ["empty", "text", "audio", "directory"])
def test_not_a_video_raises_on_open(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "audio":
        path = tmp_path / "bad_audio.wav"
        write_audio_only(path)
        with av.open(os.fspath(path)) as c:
            assert len(c.streams.audio) == 1 and not c.streams.video
    else:
        path.mkdir()
    before = open_fds()
    with pytest.raises(ValueError, match=path.name):
        VideoReader(path)
    assert open_fds() == before


@pytest.mark.parametrize("kwargs, error", [
    ({"backend": "opencv"}, ValueError), ({"errors": "ignore"}, ValueError),
    ({"num_threads": -1}, ValueError), ({"num_threads": 1.5}, ValueError),
])
def test_bad_arguments(barcode_video, kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        VideoReader(barcode_video[0], **kwargs)


def test_bad_indices(barcode_video):
    path, n = barcode_video
    with VideoReader(path) as reader:
        with pytest.raises(IndexError, match=str(n)):
            reader[n]
        with pytest.raises(IndexError):
            reader.get_frames_at([0, -n - 1])
        with pytest.raises(TypeError):
            reader[1.0]
        with pytest.raises(TypeError):
            reader.get_frames_at(torch.tensor([0.5]))
        with pytest.raises(ValueError, match="1-D"):
            reader.get_frames_at([[0, 1]])
    with pytest.raises(ValueError, match="closed"):
        reader[0]


def first_failing_frame(oracles, path, height, width):
    """ffmpeg with -xerror stops at the first decoding error: the frames it wrote come before it."""
    return len(oracles.ffmpeg_decode(path, height, width, extra=("-xerror",)))


def test_corrupt_data_raises_naming_path_and_frame(shared_data, oracles):
    path = clip(shared_data, "decord/corrupted.mp4")
    with VideoReader(path) as reader:
        m = reader.metadata
        bad = first_failing_frame(oracles, path, m.height, m.width)
        assert 0 < bad < len(reader)
        assert reader[bad - 1].shape == (m.height, m.width, 3)  # frames before the damage decode
        with pytest.raises(ValueError, match=rf"corrupted\.mp4.*frame {bad} failed"):
            reader[:]
        with pytest.raises(ValueError, match=rf"frame {bad} failed"):
            reader[bad + 3]


def test_corrupt_data_truncate_returns_frames_before_damage(shared_data, oracles):
    path = clip(shared_data, "decord/corrupted.mp4")
    with VideoReader(path, errors="truncate") as reader:
        m = reader.metadata
        expected = oracles.ffmpeg_decode(path, m.height, m.width, extra=("-xerror",))
        bad = len(expected)
        with pytest.warns(UserWarning, match=rf"frame {bad} failed.*loses {len(reader) - bad}"):
            frames = reader[:]
        assert torch.equal(frames, torch.from_numpy(expected))
        with pytest.warns(UserWarning, match="loses 2"):
            some = reader.get_frames_at([bad + 1, 3, bad + 5, 1])
        assert torch.equal(some, torch.from_numpy(expected[[3, 1]]))
        with pytest.raises(ValueError, match=rf"frame {bad} failed.*frame {bad + 2} lies"):
            reader[bad + 2]  # a single frame past the damage: nothing to return
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert torch.equal(reader[2:9], torch.from_numpy(expected[2:9]))  # no damage, no warning


# ----------------------------------------------------------------------------- open files
@pytest.mark.parametrize("backend", ["pyav", pytest.param("torchcodec", marks=needs_torchcodec)])
def test_an_open_reader_holds_the_file_and_close_releases_it(barcode_video, backend):
    import gc
    path, n = barcode_video
    before = open_fds()
    reader = VideoReader(path, backend=backend)
    reader.get_frames_at([60, 2])
    assert open_fds() > before  # the check can see an open file
    reader.close()
    assert open_fds() == before
    reader = VideoReader(path, backend=backend)
    reader[n - 1]
    del reader  # dropped without close: the finaliser closes it
    gc.collect()
    assert open_fds() == before


def test_no_leaked_file_descriptors(shared_data, barcode_video):
    path, n = barcode_video
    before = open_fds()
    for _ in range(2):
        with VideoReader(path) as reader:
            reader.get_frames_at([50, 3, 80])
        reader = VideoReader(clip(shared_data, "mmaction2/part_0.mp4"))
        reader[5]
        reader.close()
        with VideoReader(clip(shared_data, "decord/corrupted.mp4")) as reader:
            with pytest.raises(ValueError):
                reader[:]
    assert open_fds() == before


# ------------------------------------------------------------------------------ torchcodec
def test_videograph_typing_flag_agrees():
    import videograph.typing
    assert videograph.typing.WITH_TORCHCODEC is torchcodec_available()


@needs_torchcodec
@pytest.mark.parametrize("name, count, stride", [c for c in CLIPS if not c[0].endswith(".avi")])
def test_torchcodec_and_pyav_give_identical_frames(shared_data, name, count, stride):
    path = clip(shared_data, name)
    index = np.random.default_rng(0).permutation(count)[:40]
    with VideoReader(path, backend="pyav") as a, VideoReader(path, backend="torchcodec") as b:
        assert b.metadata.backend == "torchcodec"
        assert a.metadata == VideoMetadata(**{**b.metadata.__dict__, "backend": "pyav"})
        assert torch.equal(a[:], b[:])
        assert torch.equal(a.get_frames_at(index), b.get_frames_at(index))


@needs_torchcodec
def test_torchcodec_on_barcodes_and_damage(shared_data, barcode_video, oracles):
    path, n = barcode_video
    perm = np.random.default_rng(3).permutation(n)
    with VideoReader(path, backend="torchcodec") as reader:
        assert (oracles.read_barcode(reader.get_frames_at(perm)) == perm).all()
    with VideoReader(clip(shared_data, "decord/corrupted.mp4"), backend="torchcodec") as reader:
        bad = first_failing_frame(oracles, reader.path, reader.metadata.height, reader.metadata.width)
        with pytest.raises(ValueError, match=rf"frame {bad} failed"):
            reader[:]


@needs_torchcodec
def test_torchcodec_refuses_avi_with_reordered_frames(shared_data):
    with pytest.raises(ValueError, match="pyav"):
        VideoReader(clip(shared_data, "mmaction2/test.avi"), backend="torchcodec")
