"""``ented-restore`` on a video: frames, frame rate, size and sound kept; frames without a face counted."""

import subprocess

import numpy as np
import pytest
from restoration_fixtures import save, tiny_net

from ented.cli.restore import main
from ented.restoration.pretrained import save_pretrained

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("facenet_pytorch")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(save_pretrained(tiny_net(0), tmp_path_factory.mktemp("weights")))


def make_video(path, frames, fps, sound: bool):
    """Writes ``frames`` as an H.264 MP4 at ``fps``, with a one-second 440 Hz AAC track if ``sound``."""
    silent = path.with_name("silent_" + path.name)
    writer = imageio_ffmpeg.write_frames(str(silent), frames[0].shape[1::-1], fps=fps, macro_block_size=2)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    if not sound:
        return silent
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-i", str(silent)]
    command += [
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        str(path),
    ]
    subprocess.run(command, check=True)
    return path


def probe(path):
    """``(frame count, fps, (width, height), has audio)`` as imageio-ffmpeg reads them."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    count = sum(1 for _ in reader)
    return count, meta["fps"], tuple(meta["size"]), bool(meta.get("audio_codec"))


def test_video_frames_fps_size_and_sound_are_kept(tmp_path, weights, capsys):
    from skimage.data import astronaut

    face = np.ascontiguousarray(astronaut()[::4, ::4])  # 128 x 128, one face
    wall = np.full_like(face, 128)  # no face
    frames = [face] * 6 + [wall] * 2
    video = make_video(tmp_path / "clip.mp4", frames, fps=12, sound=True)
    assert probe(video) == (8, 12.0, (128, 128), True)
    reference = save(astronaut()[::2, ::2], tmp_path / "her.png")
    out = tmp_path / "out"
    args = [str(video), "-o", str(out), "-w", weights, "-r", str(reference), "--reference-check", "off"]
    assert main(args + ["--no-progress", "--batch-size", "3"]) == 0
    summary = capsys.readouterr().out
    assert "restored 1, skipped 0 of 1" in summary
    assert f"{video}: 2 of 8 frames without a face (written enlarged)" in summary
    assert probe(out / "clip_restored.mp4") == (8, 12.0, (128, 128), True)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    # silent input, enlarged twice, a suffix of one's own
    silent = make_video(tmp_path / "quiet.mp4", frames[:4], fps=25, sound=False)
    assert main([str(silent), *args[1:], "-q", "--upscale", "2", "--suffix", "_x2"]) == 0
    assert probe(out / "silent_quiet_x2.mp4") == (4, 25.0, (256, 256), False)


def test_unreadable_video_is_skipped_and_aligned_refused(tmp_path, weights, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    args = [
        str(broken),
        "-o",
        str(tmp_path / "out"),
        "-w",
        weights,
        "--reference-check",
        "off",
        "--no-progress",
    ]
    assert main(args) == 1
    assert f"skipped {broken}: not a readable video" in capsys.readouterr().out
    assert main(args + ["--aligned"]) == 2
    assert "leave out --aligned" in capsys.readouterr().err
