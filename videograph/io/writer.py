"""``write_video``: uint8 frames to a video file with PyAV."""
import os
from fractions import Fraction
from typing import Optional, Union

import av
import numpy as np
from torch import Tensor


def write_video(path: Union[str, os.PathLike], frames: Union[Tensor, np.ndarray], fps: float,
                codec: str = "libx264", *, options: Optional[dict] = None) -> None:
    """Write uint8 RGB frames ``[T, H, W, 3]`` to ``path`` (the container follows its extension).

    ``libx264`` writes H.264 in ``yuv420p`` (so ``H`` and ``W`` must be even) with x264's defaults,
    B-frames included; ``options`` are passed to the encoder (e.g. ``{"crf": "0"}`` for lossless luma,
    ``{"bf": "0"}`` for no B-frames, ``{"g": "12"}`` for a keyframe every 12 frames).

    Args:
        path (str or os.PathLike): the file to write (overwritten).
        frames (Tensor or np.ndarray): uint8 ``[T, H, W, 3]``, RGB, ``T >= 1``.
        fps (float): frames per second (a rational close to it is used as the time base).
        codec (str, optional): an FFmpeg encoder name. (default: :obj:`"libx264"`)
        options (dict, optional): encoder options, strings to strings.
    """
    if isinstance(frames, Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"write_video: 'frames' must be a Tensor or np.ndarray (got {type(frames).__name__})")
    if frames.dtype != np.uint8:
        raise TypeError(f"write_video: 'frames' must be uint8 (got {frames.dtype})")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"write_video: 'frames' must have shape [T, H, W, 3] with T >= 1 "
                         f"(got {tuple(frames.shape)})")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"write_video: 'fps' must be a positive number (got {fps!r})")
    t, h, w, _ = frames.shape
    if codec in ("libx264", "libx265", "h264", "hevc", "mpeg4") and (h % 2 or w % 2):
        raise ValueError(f"write_video: codec {codec!r} in yuv420p needs an even height and width "
                         f"(got {h}x{w})")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=dict(options or {}))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        for image in np.ascontiguousarray(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


__all__ = ["write_video"]
