"""The PyAV backend: a frame index built from the demuxed packets, GOP-wise seeking, threaded decoding."""
from fractions import Fraction
from typing import Iterator, Optional, Tuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter


class DecodeError(Exception):
    """Frame ``index`` (and every later one) could not be decoded; ``reason`` says why."""

    def __init__(self, index: int, reason: str):
        super().__init__(index, reason)
        self.index = index
        self.reason = reason


def rotate(array: np.ndarray, rotation: int) -> np.ndarray:
    """Turn ``[..., H, W, 3]`` pixels as the display matrix says: ``rotation`` degrees counter-clockwise
    (FFmpeg's sign), the way the ffmpeg CLI autorotates."""
    k = (rotation // 90) % 4
    return np.rot90(array, k, axes=(-3, -2)) if k else array


class PyAVBackend:
    """Decodes one video stream with PyAV.

    Frame numbering. At open the video packets are demuxed (not decoded) once: their count is the frame
    count, whatever the header claims. Where the container stores presentation timestamps (every
    ``pts`` present and distinct, and the container is not AVI), frame ``i`` is the packet with the
    ``i``-th smallest ``pts`` and decoded frames are numbered by their ``pts``, whatever order the
    packets come in. Otherwise (AVI, whose timestamps do not give the display order of reordered
    frames) frames are numbered by the decoder's output order, counted from the keyframe the decoder
    was positioned on; where the stream reorders frames (B-frames) that count is only sure from the
    first frame, so such files are decoded forward from their start (see ``_index``).

    Seeking lands on a keyframe: a request for frame ``i`` positions the demuxer on the last keyframe at
    or before ``i`` and decodes forward; a request that lies ahead of the current position, in the same
    or a later GOP that starts before it, continues without seeking.
    """

    name = "pyav"

    def __init__(self, path: str, num_threads: int = 0):
        self.path = path
        self.container = av.open(path)  # raises av.FFmpegError on empty / non-media files
        try:
            if not self.container.streams.video:
                raise ValueError(f"{path!r} has no video stream")
            self.stream = self.container.streams.video[0]
            self._index()
            if self.num_frames == 0:
                raise ValueError(f"{path!r}: its video stream holds no frames")
            self.stream.thread_type = "AUTO"  # frame + slice threading
            self.stream.thread_count = int(num_threads)
            # One swscale context for every frame: ``frame.to_ndarray(format=...)`` builds a new one
            # (and its thread pool) per frame. Same conversion, same pixels.
            self._reformatter = VideoReformatter()
            self._sws_threads = int(num_threads)
            self._gen: Optional[Iterator[Tuple[int, "av.VideoFrame"]]] = None
            self._first = None
            self._cursor = -1  # index of the next frame _gen yields (-1: no generator)
            first = self._first_frame()
            self._first = first  # reused by a read that starts at frame 0 right after the open
            self.rotation = int(first.rotation or 0) if hasattr(first, "rotation") else 0
            h, w = first.height, first.width
            self.height, self.width = (w, h) if self.rotation % 180 else (h, w)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------------------------- index
    def _index(self) -> None:
        s = self.stream
        pts, dts, key = [], [], []
        for packet in self.container.demux(s):
            if packet.size == 0 or packet.is_discard:
                continue
            pts.append(packet.pts)
            dts.append(packet.dts)
            key.append(bool(packet.is_keyframe))
        self.num_frames = n = len(pts)
        if n == 0:
            return
        # AVI stores no presentation timestamps: what its demuxer reports as pts are decode times, or
        # guesses that MPEG-4 packed B-frames break.
        real_pts = ("avi" not in self.container.format.name.split(",") and None not in pts
                    and len(set(pts)) == n)
        self.by_pts = real_pts
        self.reorders = True  # whether frames may be shown in another order than decoded
        key = np.asarray(key, dtype=bool)
        key[0] = True  # decoding always starts at the first packet
        if real_pts:
            order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
            self.pts_sorted = np.asarray(pts, dtype=np.int64)[order]
            self._rank = {int(p): i for i, p in enumerate(self.pts_sorted)}
            key_rank = np.sort(np.searchsorted(self.pts_sorted, np.asarray(pts, dtype=np.int64)[key]))
            self.key_index = key_rank  # presentation index of each keyframe
            self.key_ts = self.pts_sorted[key_rank]  # seek target of each
        else:
            # Decode-order numbering. Without reordering, a keyframe's decode position is its display
            # index. With reordering (B-frames) and no presentation timestamps, a keyframe may be
            # followed in decode order by frames shown before it (an open GOP), which a decoder drops
            # after a seek: nothing tells its display index without decoding, so the only entry point
            # is the first frame and every read decodes forward from there (or from where it is).
            self.reorders = reorders = bool(s.codec_context.has_b_frames) or any(
                a is not None and b is not None and b < a for a, b in zip(pts, pts[1:]))
            pos = np.flatnonzero(key) if not reorders else np.zeros(1, dtype=np.int64)
            self.key_index = pos  # decode position == display index of each usable entry point
            stamps = [d if d is not None else p for p, d in zip(pts, dts)]
            self._pos = {}
            for i, t in enumerate(stamps):
                if t is not None:
                    self._pos.setdefault(int(t), i)
            seekable = all(stamps[i] is not None and self._pos[int(stamps[i])] == i for i in pos)
            self.key_ts = np.asarray([stamps[i] for i in pos], dtype=np.int64) if seekable else None
        tb = s.time_base or Fraction(1, 1)
        rate = s.average_rate or s.guessed_rate
        if real_pts and n > 1:
            span = float((self.pts_sorted[-1] - self.pts_sorted[0]) * tb)
            self.duration = span * n / (n - 1)
        elif s.duration is not None:
            self.duration = float(s.duration * tb)
        elif self.container.duration is not None:
            self.duration = self.container.duration / av.time_base
        else:
            self.duration = n / float(rate) if rate else 0.0
        self.fps = float(rate) if rate else (n / self.duration if self.duration else 0.0)
        self.codec = s.codec_context.name

    # ---------------------------------------------------------------------------------- decode
    def _frames_from(self, k: int) -> Iterator[Tuple[int, "av.VideoFrame"]]:
        """Yield ``(index, frame)`` in presentation order, from keyframe number ``k`` onward."""
        start = int(self.key_index[k])
        if start == 0:
            self.container.seek(0)
        elif self.key_ts is None:  # cannot identify where a seek lands: decode from the start
            self.container.seek(0)
            start = 0
        else:
            self.container.seek(int(self.key_ts[k]), stream=self.stream, backward=True, any_frame=False)
        count = None  # decode-order numbering starts at the packet the seek landed on
        nxt = start
        for packet in self.container.demux(self.stream):
            if count is None and not self.by_pts and packet.size:
                t = packet.dts if packet.dts is not None else packet.pts
                count = self._pos.get(int(t)) if t is not None else None
                if count is None:  # landed on a packet the index does not know: from the start
                    self.container.seek(0)
                    count = 0
                    continue
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                raise DecodeError(nxt, f"{type(e).__name__}: {e}") from None
            for frame in frames:
                if self.by_pts:
                    index = self._rank.get(frame.pts) if frame.pts is not None else None
                    if index is None:
                        index = nxt
                else:
                    index = count
                    count += 1
                if index < start:  # leading frames of an open GOP after a seek: not ours
                    continue
                nxt = index + 1
                yield index, frame

    def _first_frame(self) -> "av.VideoFrame":
        for index, frame in self._iter_at(0):
            return frame
        raise AssertionError("unreachable")

    def _iter_at(self, target: int, from_start: bool = False) -> Iterator[Tuple[int, "av.VideoFrame"]]:
        """The frame generator positioned so that its next yields reach ``target``."""
        k = 0 if from_start else int(np.searchsorted(self.key_index, target, side="right")) - 1
        if from_start or self._gen is None or not (self.key_index[k] <= self._cursor <= target):
            if self._gen is not None:
                self._gen.close()
            self._gen = self._frames_from(k)
            self._cursor = int(self.key_index[k]) if self.key_ts is not None else 0
        while True:
            try:
                index, frame = next(self._gen)
            except StopIteration:
                missing = self._cursor if 0 <= self._cursor <= target else target
                self._gen, self._cursor = None, -1
                raise DecodeError(missing, "the stream ended before it") from None
            except DecodeError:
                self._gen, self._cursor = None, -1
                raise
            self._cursor = index + 1
            yield index, frame

    def _to_rgb(self, frame: "av.VideoFrame", out: np.ndarray) -> None:
        """Convert ``frame`` to RGB (FFmpeg's swscale, as ``to_ndarray(format="rgb24")``) into ``out``
        (uint8 ``[H, W, 3]``, displayed orientation)."""
        rgb = self._reformatter.reformat(frame, format="rgb24", threads=self._sws_threads)
        out[...] = rotate(rgb.to_ndarray(), self.rotation)

    def read(self, wanted: np.ndarray, out: np.ndarray) -> Optional[DecodeError]:
        """Decode the frames of ``wanted`` (sorted, unique) into ``out[j]`` (uint8 ``[len(wanted), H, W,
        3]``). Returns the error that stopped decoding, ``None`` when every frame came; frames are
        decoded in increasing order, so on an error ``out`` holds exactly the frames before its index."""
        i, n = 0, len(wanted)
        first, self._first = self._first, None
        if first is not None and n and wanted[0] == 0 and self._cursor == 1:
            self._to_rgb(first, out[0])
            i = 1
        retried = -1
        while i < n:
            target = int(wanted[i])
            try:
                for index, frame in self._iter_at(target, from_start=retried == target):
                    if index < target:
                        continue
                    if index > target:  # the decoder skipped the target
                        if retried != target:
                            retried = target  # a seek that landed past it: once more from the start
                            break
                        raise DecodeError(target, "the decoder skipped it")
                    self._to_rgb(frame, out[i])
                    i += 1
                    if i == n:
                        break
                    target = int(wanted[i])
                    k = int(np.searchsorted(self.key_index, target, side="right")) - 1
                    if self.key_index[k] > self._cursor:  # seeking skips decoding: leave the loop
                        break
            except DecodeError as e:
                if self._gen is not None:
                    self._gen.close()
                self._gen, self._cursor = None, -1
                return e
        return None

    def close(self) -> None:
        gen, self._gen = getattr(self, "_gen", None), None
        if gen is not None:
            gen.close()
        container, self.container = getattr(self, "container", None), None
        if container is not None:
            container.close()


__all__ = ["PyAVBackend", "DecodeError", "rotate"]
