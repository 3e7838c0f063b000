"""``FrameFolder``: a folder of numbered images (``0001.jpg``, ``0002.jpg``, ...) read like a video file."""
import os
import re
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, read_file

from .reader import FrameIndexing, VideoMetadata

__all__ = ["FrameFolder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_NUMBER = re.compile(r"(\d+)$")


class FrameFolder(FrameIndexing):
    r"""The frames of a video stored as one image per frame (Something-Else's ``annotated_videos/<id>/NNNN.jpg``,
    MMAction2's raw frames), with :class:`VideoReader`'s interface.

    .. code-block:: python

        with FrameFolder("annotated_videos/57082") as frames:
            len(frames), frames.metadata.width          # 38 images, 427 pixels wide
            frames[0]                                   # uint8 [H, W, 3], the image numbered start_index
            frames.get_frames_at([5, 0, 5])             # uint8 [3, H, W, 3], in the given order

    The images are the files of the folder whose extension is one of ``extensions`` (case-insensitive); each
    name ends in its frame number (``0001.jpg``, ``img_00001.jpg``). The numbers must run without a gap from the
    first one, :attr:`start_index`: frame ``i`` is the image numbered ``start_index + i``. A gap is an error, as a
    missing frame would shift every later one. Images are decoded by :func:`torchvision.io.decode_image` as RGB,
    only when asked for; every frame must have the size of the first (``metadata.width`` / ``height``).

    Args:
        path (str or os.PathLike): the folder.
        fps (float, optional): the frame rate the images were extracted at (a folder does not know it;
            Something-Else's frames are 12 fps). ``metadata.fps`` and ``metadata.duration`` are ``nan``
            without it. (default: :obj:`None`)
        extensions (sequence of str, optional): the image file extensions read. (default: :obj:`(".jpg",
            ".jpeg", ".png")`)

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a folder, holds no image, an image's name ends in no number, two images
            share a number, or the numbers have a gap (all raised when the folder opens); a frame that cannot
            be decoded or has another size (raised when it is read, naming the file).
    """

    def __init__(self, path: Union[str, os.PathLike], *, fps: Optional[float] = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"FrameFolder: 'path' must be a str or os.PathLike (got {type(path).__name__})")
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"FrameFolder: no such folder: {path!r}")
        if not os.path.isdir(path):
            raise ValueError(f"FrameFolder: {path!r} is not a folder")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0):
            raise ValueError(f"FrameFolder: 'fps' must be a positive number or None (got {fps!r})")
        if isinstance(extensions, str) or not all(isinstance(e, str) for e in extensions):
            raise TypeError("FrameFolder: 'extensions' must be a sequence of str such as ('.jpg', '.png')")
        wanted = tuple(e.lower() for e in extensions)
        names = [n for n in os.listdir(path) if os.path.splitext(n)[1].lower() in wanted]
        if not names:
            raise ValueError(f"FrameFolder: {path!r} holds no image ({', '.join(wanted)})")
        numbered = {}
        for name in names:
            match = _NUMBER.search(os.path.splitext(name)[0])
            if match is None:
                raise ValueError(f"FrameFolder: {os.path.join(path, name)!r}: the name does not end in a frame "
                                 f"number")
            number = int(match.group(1))
            if number in numbered:
                raise ValueError(f"FrameFolder: {path!r}: {numbered[number]!r} and {name!r} are both frame "
                                 f"{number}")
            numbered[number] = name
        numbers = sorted(numbered)
        self.start_index = numbers[0]
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if missing:
            raise ValueError(f"FrameFolder: {path!r} lacks frame {missing[0]} (numbered {numbers[0]} to "
                             f"{numbers[-1]}, {len(missing)} missing)")
        self.path = path
        self.files: List[str] = [os.path.join(path, numbered[n]) for n in numbers]
        first = self._decode(0)
        height, width = int(first.size(1)), int(first.size(2))
        rate = float("nan") if fps is None else float(fps)
        codec = os.path.splitext(self.files[0])[1].lower().lstrip(".").replace("jpg", "jpeg")
        self.metadata = VideoMetadata(num_frames=len(self.files), fps=rate, width=width, height=height,
                                      duration=len(self.files) / rate, rotation=0, codec=codec,
                                      backend="torchvision")

    # -------------------------------------------------------------------------------- protocol
    def __enter__(self) -> "FrameFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between reads; kept for :class:`VideoReader`'s interface."""

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        m = self.metadata
        return (f"FrameFolder({self.path!r}, num_frames={m.num_frames}, fps={m.fps:g}, size={m.width}x{m.height}, "
                f"start_index={self.start_index})")

    def get_frames_at(self, indices: Union[Sequence[int], Tensor, np.ndarray]) -> Tensor:
        """The frames at ``indices`` (any order, repeats allowed; negative counts from the end): uint8
        ``[N, H, W, 3]``. Each distinct image is decoded once."""
        idx = self._indices(indices)
        m = self.metadata
        if idx.size == 0:
            return torch.empty((0, m.height, m.width, 3), dtype=torch.uint8)
        wanted, inverse = np.unique(idx, return_inverse=True)
        frames = torch.stack([self._one(int(i)) for i in wanted])
        return frames[torch.from_numpy(inverse.reshape(-1))]

    # --------------------------------------------------------------------------------- decode
    def _decode(self, i: int) -> Tensor:
        file = self.files[i]
        try:
            return decode_image(read_file(file), mode=ImageReadMode.RGB)
        except RuntimeError as error:
            raise ValueError(f"FrameFolder: {file!r} could not be decoded ({error})") from None

    def _one(self, i: int) -> Tensor:
        image = self._decode(i)
        m = self.metadata
        if image.shape[1:] != (m.height, m.width):
            raise ValueError(f"FrameFolder: {self.files[i]!r} is {image.size(2)}x{image.size(1)}, the folder's "
                             f"first frame {m.width}x{m.height}")
        return image.permute(1, 2, 0).contiguous()
