"""``VideoReader``: frames of a video file as uint8 tensors, by index, slice or list of indices."""
import os
import warnings
from dataclasses import dataclass
from typing import Sequence, Union

import av
import numpy as np
import torch
from torch import Tensor

from ._buffers import empty_frames
from ._pyav import DecodeError, PyAVBackend
from ._torchcodec import TorchCodecBackend, torchcodec_available

BACKENDS = ("auto", "pyav", "torchcodec")
ERRORS = ("raise", "truncate")


@dataclass(frozen=True)
class VideoMetadata:
    """What :class:`VideoReader` knows of a video stream once it is open.

    ``num_frames`` is counted from the stream's packets (never the header); ``width`` and ``height`` are
    those of the frames returned, i.e. after the rotation is applied; ``rotation`` is the display matrix's
    angle in degrees, counter-clockwise (FFmpeg's sign); ``duration`` in seconds; ``backend`` the
    decoder used (``"pyav"`` or ``"torchcodec"``).
    """
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    rotation: int
    codec: str
    backend: str


class FrameIndexing:
    """``source[i]`` (uint8 ``[H, W, 3]``) and ``source[a:b:s]`` (``[N, H, W, 3]``) of a frame source with
    ``len()``, ``path``, ``get_frames_at(indices)`` and ``_one(i)`` (frame ``i``, ``0 <= i < len``)."""

    def __getitem__(self, key) -> Tensor:
        name = type(self).__name__
        if isinstance(key, slice):
            return self.get_frames_at(range(len(self))[key])
        if isinstance(key, (bool, np.bool_)) or not hasattr(key, "__index__") or (
                isinstance(key, Tensor) and key.dim() != 0):
            raise TypeError(f"{name} indices must be an int or a slice (got {type(key).__name__})")
        i, n = int(key.__index__()), len(self)
        if not -n <= i < n:
            raise IndexError(f"{name}: frame index {i} out of range for {n} frames of {self.path!r}")
        return self._one(i % n)

    def _indices(self, indices) -> np.ndarray:
        """``indices`` (a sequence, range, array or integer tensor; negative counts from the end) as a checked
        int64 array in ``[0, len)``."""
        if isinstance(indices, Tensor):
            if indices.is_floating_point() or indices.dtype == torch.bool:
                raise TypeError(f"get_frames_at: 'indices' must hold integers (got {indices.dtype})")
            idx = indices.detach().cpu().numpy()
        else:
            idx = np.asarray(indices if not isinstance(indices, range) else np.arange(
                indices.start, indices.stop, indices.step))
            if idx.size == 0:
                idx = idx.astype(np.int64)
            if idx.dtype.kind not in "iu":
                raise TypeError(f"get_frames_at: 'indices' must hold integers (got {idx.dtype})")
        if idx.ndim != 1:
            raise ValueError(f"get_frames_at: 'indices' must be 1-D (got shape {tuple(idx.shape)})")
        n = len(self)
        idx = idx.astype(np.int64)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"get_frames_at: index {int(idx[bad][0])} out of range for {n} frames "
                             f"of {self.path!r}")
        return idx % n


class VideoReader(FrameIndexing):
    r"""Random access to the frames of a video file, as torchcodec's ``VideoDecoder`` reads them.

    .. code-block:: python

        with VideoReader("clip.mp4") as reader:
            reader.metadata.num_frames, len(reader)    # counted from the stream
            reader[0]                                  # uint8 [H, W, 3]
            reader[10:40:2]                            # uint8 [15, H, W, 3]
            reader.get_frames_at([31, 2, 17])          # uint8 [3, H, W, 3], in the given order

    Frames are RGB in the displayed orientation (the rotation metadata is applied, as the ``ffmpeg`` CLI
    shows the file) and numbered in presentation order. Frames come from the first video stream.

    Args:
        path (str or os.PathLike): the video file.
        backend (str, optional): ``"pyav"`` (FFmpeg through PyAV, always there), ``"torchcodec"``
            (needs the ``torchcodec`` package and the system FFmpeg libraries; files whose timestamps
            cannot number reordered frames, such as AVI with B-frames, are refused) or ``"auto"``,
            which is PyAV: it measured faster than torchcodec on CPU (``benchmarks/video.py``). Both
            return identical frames, numbered by the same index. (default: :obj:`"auto"`)
        errors (str, optional): what corrupt data does. ``"raise"``: a :class:`ValueError` naming the
            file and the first frame that failed to decode. ``"truncate"``: the video is treated as
            ending before that frame: the requested frames decoded before the damage are returned and a
            :class:`UserWarning` says how many were lost. (default: :obj:`"raise"`)
        num_threads (int, optional): FFmpeg decoding threads; ``0`` lets FFmpeg choose (one per core).
            (default: :obj:`0`)

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty, not a video, has no video stream, or its first frame cannot be
            decoded (all raised when the reader opens).
    """

    def __init__(self, path: Union[str, os.PathLike], *, backend: str = "auto", errors: str = "raise",
                 num_threads: int = 0):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"VideoReader: 'path' must be a str or os.PathLike (got {type(path).__name__})")
        path = os.fspath(path)
        if backend not in BACKENDS:
            raise ValueError(f"VideoReader: 'backend' must be one of {BACKENDS} (got {backend!r})")
        if errors not in ERRORS:
            raise ValueError(f"VideoReader: 'errors' must be one of {ERRORS} (got {errors!r})")
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
            raise ValueError(f"VideoReader: 'num_threads' must be an int >= 0 (got {num_threads!r})")
        if not os.path.exists(path):
            raise FileNotFoundError(f"VideoReader: no such file: {path!r}")
        if not os.path.isfile(path):
            raise ValueError(f"VideoReader: {path!r} is not a file")
        if os.path.getsize(path) == 0:
            raise ValueError(f"VideoReader: {path!r} is empty (0 bytes), not a video")
        if backend == "torchcodec" and not torchcodec_available():
            raise ValueError("VideoReader: backend='torchcodec' needs the 'torchcodec' package and the "
                             "system FFmpeg libraries (pip install 'videograph[torchcodec]')")
        self.path = path
        self.errors = errors
        self._args = {"backend": backend, "errors": errors, "num_threads": num_threads}
        self._backend = self._decoder = None
        try:
            self._backend = PyAVBackend(path, num_threads)
        except av.FFmpegError as e:
            raise ValueError(f"VideoReader: {path!r} could not be opened as a video "
                             f"({type(e).__name__}: {e})") from None
        except ValueError as e:
            raise ValueError(f"VideoReader: {e}") from None
        except DecodeError as e:
            raise ValueError(f"VideoReader: the first frame of {path!r} could not be decoded "
                             f"({e.reason})") from None
        b = self._backend
        if backend == "torchcodec" and not (b.by_pts or not b.reorders):
            self.close()
            raise ValueError(f"VideoReader: backend='torchcodec' cannot number the frames of {path!r}: "
                             f"its timestamps are decode times of a stream that reorders frames "
                             f"(AVI-style); use backend='pyav'")
        if backend == "torchcodec":
            try:
                self._decoder = TorchCodecBackend(path, b, num_threads)
            except Exception as e:
                self.close()
                raise ValueError(f"VideoReader: torchcodec cannot read {path!r} ({e})") from None
        else:  # "auto" is PyAV: torchcodec 0.17 on CPU was never faster here (docs/io.md)
            self._decoder = b
        self.metadata = VideoMetadata(
            num_frames=b.num_frames, fps=b.fps, width=b.width, height=b.height, duration=b.duration,
            rotation=b.rotation, codec=b.codec, backend=self._decoder.name)

    # -------------------------------------------------------------------------------- protocol
    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()

    def close(self) -> None:
        """Close the file (the context manager does it); the reader cannot decode afterwards."""
        for name in ("_decoder", "_backend"):
            obj = getattr(self, name, None)
            setattr(self, name, None)
            if obj is not None:
                obj.close()

    def __getstate__(self) -> dict:
        # An open container does not pickle: a copy (a DataLoader worker's) reopens the file.
        return {"path": self.path, "args": self._args}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], **state["args"])

    def __len__(self) -> int:
        return self.metadata.num_frames

    def __repr__(self) -> str:
        m = self.metadata
        return (f"VideoReader({self.path!r}, num_frames={m.num_frames}, fps={m.fps:g}, "
                f"size={m.width}x{m.height}, backend={m.backend})")

    def _one(self, i: int) -> Tensor:
        return self._read(np.asarray([i]), single=True)[0]

    def get_frames_at(self, indices: Union[Sequence[int], Tensor, np.ndarray]) -> Tensor:
        """The frames at ``indices`` (any order, repeats allowed; negative counts from the end):
        uint8 ``[N, H, W, 3]``. Each needed GOP is decoded once, in file order; the frames are then put
        in the requested order."""
        return self._read(self._indices(indices))

    # --------------------------------------------------------------------------------- decode
    def _read(self, idx: np.ndarray, single: bool = False) -> Tensor:
        if self._decoder is None:
            raise ValueError(f"VideoReader: {self.path!r} is closed")
        m = self.metadata
        if idx.size == 0:
            return torch.empty((0, m.height, m.width, 3), dtype=torch.uint8)
        wanted, inverse = np.unique(idx, return_inverse=True)
        out = empty_frames((len(wanted), m.height, m.width, 3))
        error = self._decoder.read(wanted, out)
        if error is not None:
            lost = int((idx >= error.index).sum())
            if self.errors == "raise" or single:
                what = (f"frame {int(idx[0])} lies at or after the damage" if single and self.errors ==
                        "truncate" else f"{lost} of the {idx.size} requested frames are lost")
                raise ValueError(f"VideoReader: {self.path!r}: frame {error.index} failed to decode "
                                 f"({error.reason}); {what}")
            warnings.warn(f"VideoReader: {self.path!r}: frame {error.index} failed to decode "
                          f"({error.reason}); errors='truncate' returns the {idx.size - lost} requested "
                          f"frames before it and loses {lost}", UserWarning, stacklevel=3)
            keep = idx < error.index
            inverse = inverse[keep]
            out = out[:int((wanted < error.index).sum())]
        if len(inverse) == len(out) and (inverse == np.arange(len(out))).all():
            return torch.from_numpy(out)
        frames = empty_frames((len(inverse),) + out.shape[1:])
        return torch.from_numpy(np.take(out, inverse, axis=0, out=frames))
