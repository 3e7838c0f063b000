"""``write_video``: uint8 frames to a video file with PyAV."""
import os
from fractions import Fraction
from typing import Iterable, Optional, Union

import av
import numpy as np
from torch import Tensor


def _check_frame(image, shape=None) -> np.ndarray:
    if isinstance(image, Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"write_video: a frame must be a Tensor or np.ndarray (got {type(image).__name__})")
    if image.dtype != np.uint8:
        raise TypeError(f"write_video: 'frames' must be uint8 (got {image.dtype})")
    if image.ndim != 3 or image.shape[-1] != 3 or (shape is not None and image.shape != shape):
        want = f"{shape}" if shape is not None else "[H, W, 3]"
        raise ValueError(f"write_video: each frame must have shape {want} (got {tuple(image.shape)})")
    return image


def write_video(path: Union[str, os.PathLike], frames: Union[Tensor, np.ndarray, Iterable], fps: float,
                codec: str = "libx264", *, options: Optional[dict] = None) -> int:
    """Write uint8 RGB frames ``[T, H, W, 3]`` to ``path`` (the container follows its extension).

    ``frames`` may also be any iterable of ``[H, W, 3]`` frames (a generator writes a long video without
    holding it in memory). ``libx264`` writes H.264 in ``yuv420p`` (so ``H`` and ``W`` must be even)
    with x264's defaults, B-frames included; ``options`` go to the encoder (e.g. ``{"crf": "0"}``,
    ``{"bf": "0"}`` for no B-frames, ``{"g": "12"}`` for a keyframe every 12 frames, ``{"preset":
    "veryfast"}``).

    Args:
        path (str or os.PathLike): the file to write (overwritten).
        frames (Tensor, np.ndarray or iterable): uint8 ``[T, H, W, 3]``, RGB, ``T >= 1``.
        fps (float): frames per second (the closest fraction with a denominator <= 1001 is used).
        codec (str, optional): an FFmpeg encoder name. (default: :obj:`"libx264"`)
        options (dict, optional): encoder options, strings to strings.

    Returns:
        int: the number of frames written.
    """
    if isinstance(frames, (Tensor, np.ndarray)):
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            raise ValueError(f"write_video: 'frames' must have shape [T, H, W, 3] with T >= 1 "
                             f"(got {tuple(frames.shape)})")
    elif not isinstance(frames, Iterable) or isinstance(frames, (str, bytes)):
        raise TypeError(f"write_video: 'frames' must be a Tensor, np.ndarray or an iterable of frames "
                        f"(got {type(frames).__name__})")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"write_video: 'fps' must be a positive number (got {fps!r})")
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError("write_video: 'frames' holds no frame (T must be >= 1)")
    first = _check_frame(first)
    h, w, _ = first.shape
    if codec in ("libx264", "libx265", "h264", "hevc", "mpeg4") and (h % 2 or w % 2):
        raise ValueError(f"write_video: codec {codec!r} in yuv420p needs an even height and width "
                         f"(got {h}x{w})")
    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=dict(options or {}))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        image = first
        while image is not None:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_check_frame(image, (h, w, 3))),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
            image = next(iterator, None)
        for packet in stream.encode():
            container.mux(packet)
    return count


__all__ = ["write_video"]
