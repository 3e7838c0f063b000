"""The optional torchcodec backend: decoding by ``torchcodec.decoders.VideoDecoder``.

torchcodec is detected the way :mod:`videograph.typing` detects optional packages (a guarded import),
but lazily, on first use, and without importing anything of videograph: ``videograph.io`` stands alone.
The frame index (count, numbering, keyframes) stays the PyAV backend's, so both backends agree on what
frame ``i`` is; a read that torchcodec fails on is redone by PyAV, which names the frame that failed.
"""
import functools
import importlib
import warnings
import numpy as np

from ._pyav import rotate


@functools.lru_cache(maxsize=None)
def torchcodec_available() -> bool:
    """Whether ``torchcodec`` imports (it also needs the system FFmpeg libraries)."""
    try:
        importlib.import_module("torchcodec.decoders")
        return True
    except Exception as e:  # pragma: no cover - depends on the environment
        if not isinstance(e, ImportError):
            warnings.warn(f"An issue occurred while importing 'torchcodec'. Disabling its usage. "
                          f"Stacktrace: {e}", stacklevel=2)
        return False


class TorchCodecBackend:
    name = "torchcodec"

    def __init__(self, path: str, index, num_threads: int = 0):
        from torchcodec.decoders import VideoDecoder
        self.index = index  # the PyAVBackend: frame count, rotation, and the fallback decoder
        self.decoder = VideoDecoder(path, stream_index=index.stream.index, dimension_order="NHWC",
                                    seek_mode="exact", num_ffmpeg_threads=int(num_threads))
        n = self.decoder.metadata.num_frames
        if n != index.num_frames:
            raise ValueError(f"torchcodec counts {n} frames in {path!r}, PyAV {index.num_frames}")

    def read(self, wanted: np.ndarray, out: np.ndarray):
        # One frame at a time: torchcodec decodes forward without seeking when the next frame is ahead
        # in the same GOP, and its batch call was measured slower here.
        try:
            for j, i in enumerate(wanted):
                frame = self.decoder.get_frame_at(int(i)).data.numpy()
                if frame.shape != out.shape[1:]:  # a torchcodec that does not apply the rotation
                    frame = rotate(frame, self.index.rotation)
                out[j] = frame
        except RuntimeError:  # damaged data: PyAV redoes the read and names the frame that failed
            return self.index.read(wanted, out)
        return None

    def close(self) -> None:
        self.decoder = None


__all__ = ["TorchCodecBackend", "torchcodec_available"]
