"""Video files in: decoding (:class:`VideoReader`, and :class:`FrameFolder` for a folder of frame images),
writing (:func:`write_video`) and clip sampling (:func:`clip_indices`). This package imports nothing else of
videograph."""
from .frames import FrameFolder
from .reader import VideoMetadata, VideoReader
from .sampling import clip_indices
from .writer import write_video

__all__ = ["VideoReader", "VideoMetadata", "FrameFolder", "write_video", "clip_indices"]
