"""Oracles and fixtures of the io tests: the ffmpeg CLI as an independent decoder, barcoded frames.

The helpers reach the tests through the ``oracles`` fixture (a ``tests/io`` package would shadow the
standard library's ``io``)."""
import os
import subprocess

from types import SimpleNamespace

import numpy as np
import pytest

from videograph.io import write_video


BITS = 8  # barcode bits: frame indices < 256
BAR_H, BAR_W, H, W = 32, 12, 64, BITS * 12


def ffmpeg_decode(path, height, width, extra=(), every=1):
    """The frames of ``path``'s first video stream as the ffmpeg CLI of the imageio-ffmpeg wheel shows
    them (autorotated, no frame dropped or duplicated), every ``every``-th one from the first:
    uint8 ``[N, height, width, 3]``."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    select = ["-vf", f"select=not(mod(n\\,{every}))"] if every > 1 else []
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *extra, "-i", os.fspath(path), "-map", "0:v:0",
           *select, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = bytearray(subprocess.run(cmd, capture_output=True).stdout)  # writable, for torch
    frame = height * width * 3
    assert len(out) % frame == 0, f"ffmpeg gave {len(out)} bytes, not whole {height}x{width} frames"
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, height, width, 3)


def barcode_frames(num_frames, seed=0):
    """Frames carrying their index in the top band (BITS black/white bars) over moving noise, so that
    the encoder uses motion, P- and B-frames."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(H, 2 * W, 3), dtype=np.uint8)
    frames = np.empty((num_frames, H, W, 3), dtype=np.uint8)
    for i in range(num_frames):
        shift = (3 * i) % W
        frames[i] = texture[:, shift:shift + W]
        bits = (i >> np.arange(BITS)) & 1
        frames[i, :BAR_H] = np.repeat(bits * 255, BAR_W).astype(np.uint8)[None, :, None]
    return frames


def read_barcode(frames):
    """The indices the frames ``[N, H, W, 3]`` carry (tolerant of compression)."""
    frames = np.asarray(frames)
    band = frames[:, 4:BAR_H - 4].astype(np.float64).mean(axis=(1, 3))  # [N, W]
    bars = band.reshape(len(frames), BITS, BAR_W)[:, :, 2:-2].mean(axis=2) > 127.5
    return (bars * (1 << np.arange(BITS))).sum(axis=1)


@pytest.fixture(scope="session")
def oracles():
    return SimpleNamespace(ffmpeg_decode=ffmpeg_decode, barcode_frames=barcode_frames,
                           read_barcode=read_barcode, H=H, W=W)


@pytest.fixture(scope="session")
def barcode_video(tmp_path_factory):
    """An H.264 mp4 with B-frames and a keyframe every 12 frames: (path, num_frames)."""
    path = tmp_path_factory.mktemp("io") / "barcode.mp4"
    n = 90
    write_video(path, barcode_frames(n), fps=25,
                options={"g": "12", "keyint_min": "12", "bf": "3", "x264-params": "b-adapt=0"})
    return path, n
