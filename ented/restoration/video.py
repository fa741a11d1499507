"""Video files in and out: frames as RGB ``uint8`` arrays, through the ffmpeg that ``imageio-ffmpeg`` ships.

The ``imageio-ffmpeg`` wheel (the ``video`` extra) carries an ffmpeg binary, so nothing else needs
installing::

    input.mp4 ──decode──> (H, W, 3) frames ──restore──> (H', W', 3) frames ──H.264──> video only
    video only + input.mp4's audio stream ──ffmpeg -map 0:v -map 1:a? -c copy──> output.mp4

The audio is copied as it is; a codec the output container cannot hold is re-encoded to AAC; if
that fails too the video is kept without sound (logged). The output is written under a temporary
name and moved into place (:mod:`ented.atomic_io`), so an interrupted run leaves no half-written
video.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ented.atomic_io import atomic_write

logger = logging.getLogger(__name__)


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file."""


def _imageio_ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise VideoError(
            "video needs imageio-ffmpeg (its wheel ships ffmpeg): pip install 'ented[video]'"
        ) from err
    return imageio_ffmpeg


class VideoReader:
    """The frames of a video file, decoded one by one.

    Attributes:
        fps: Frames per second (0 when the file does not say).
        size: ``(width, height)`` of the frames.
        has_audio: Whether the file has an audio stream.
        expected_frames: ``duration * fps`` rounded, a progress estimate (0 when unknown).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._frames = _imageio_ffmpeg().read_frames(str(self.path))
            meta = next(self._frames)
        except (OSError, RuntimeError, StopIteration) as err:
            raise VideoError(f"{self.path}: not a readable video ({err})") from None
        self.fps = float(meta.get("fps") or 0.0)
        self.size = tuple(meta["size"])
        self.has_audio = bool(meta.get("audio_codec"))
        self.expected_frames = round(float(meta.get("duration") or 0.0) * self.fps)

    def __iter__(self) -> Iterator[np.ndarray]:
        width, height = self.size
        try:
            for data in self._frames:
                yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
        except RuntimeError as err:
            raise VideoError(f"{self.path}: decoding failed ({err})") from None

    def close(self) -> None:
        self._frames.close()  # stops ffmpeg

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Writes RGB ``uint8`` frames as an H.264 MP4, then adds the audio of ``audio_from`` (if any).

    Use as a context manager: the file appears when the block ends without an error; otherwise
    nothing is left behind.

    Args:
        path: The output file (``.mp4``).
        fps: Frames per second.
        audio_from: A video whose audio stream is copied into the output (None: silent).
        quality: imageio-ffmpeg's 0-10 scale (default 8: crf 10, near-lossless).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        audio_from: str | os.PathLike | None = None,
        quality: int = 8,
    ):
        self.path, self.fps, self.audio_from, self.quality = Path(path), fps, audio_from, quality
        self.frames_written = 0
        self.audio_kept = False
        handle, self._video_only = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".video.mp4", dir=self.path.parent
        )
        os.close(handle)
        self._pipe = None

    def write(self, frame: np.ndarray) -> None:
        if self._pipe is None:
            height, width = frame.shape[:2]
            # macro_block_size=2: H.264 in yuv420p needs even sides (ffmpeg pads an odd one)
            self._pipe = _imageio_ffmpeg().write_frames(
                self._video_only, (width, height), fps=self.fps, quality=self.quality, macro_block_size=2
            )
            self._pipe.send(None)
        self._pipe.send(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames_written += 1

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if self._pipe is not None:
                self._pipe.close()
            if exc_type is None:
                if not self.frames_written:
                    raise VideoError(f"{self.path}: no frame to write")
                atomic_write(self.path, self._add_audio, suffix=".mp4")
        finally:
            os.remove(self._video_only)

    def _add_audio(self, target: str) -> None:
        """``target``: the video with ``audio_from``'s audio, copied, else as AAC, else left out (logged)."""
        if self.audio_from is not None:
            for codec in ("copy", "aac"):
                command = [_imageio_ffmpeg().get_ffmpeg_exe(), "-y", "-v", "error", "-i", self._video_only]
                command += ["-i", str(self.audio_from), "-map", "0:v", "-map", "1:a?", "-c:v", "copy"]
                command += ["-c:a", codec, "-f", "mp4", target]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode == 0:
                    self.audio_kept = True
                    return
                logger.debug("ffmpeg, audio %s: %s", codec, done.stderr.strip())
            logger.warning(
                "%s: the audio of %s could not be kept; the video is silent", self.path, self.audio_from
            )
        shutil.copyfile(self._video_only, target)
