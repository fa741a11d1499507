"""``ented-restore`` on video files: every frame restored with the same references, the audio kept.

The references are aligned once (:meth:`ented.cli.restore_batch.Runner.reference`); frames are read
``--batch-size`` at a time and their faces restored together
(:meth:`~ented.restoration.restorer.ENTEDRestorer.restore_photos_prepared`); a frame without a face
is written enlarged like the others and counted. The output is ``<output>/<name><suffix>.mp4``
(suffix ``_restored`` unless ``--suffix`` is given) at the input's frame rate, with its audio
(:mod:`ented.restoration.video`).
"""

from __future__ import annotations

import itertools
import logging

from ented.cli.restore_batch import FILE_ERRORS
from ented.restoration.video import VideoError, VideoReader, VideoWriter

logger = logging.getLogger(__name__)


def restore_videos(runner, jobs) -> None:
    """Restores the planned video jobs one by one; a video that fails is skipped and reported."""
    for job in runner.to_do(jobs):
        try:
            restore_video(runner, job)
        except (VideoError, *FILE_ERRORS) as err:
            runner.skip(job, f"{type(err).__name__}: {err}" if not isinstance(err, VideoError) else str(err))
            logger.debug("error details", exc_info=True)


def restore_video(runner, job) -> None:
    """Restores one video ``job`` (see the module docstring); notes frames without a face in the summary."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    refs = runner.references_for(job)
    if refs is None:
        return
    restorer, args = runner.restorer, runner.args
    reference_names = [str(path) for path in job.references]
    no_face = 0
    job.output.parent.mkdir(parents=True, exist_ok=True)
    with VideoReader(job.input) as video:
        if not video.fps:
            raise VideoError(f"{job.input}: the frame rate is unknown")
        audio = job.input if video.has_audio else None
        disable = args.no_progress or args.quiet
        bar = tqdm(total=video.expected_frames or None, unit="frame", desc=job.input.name, disable=disable)
        with logging_redirect_tqdm(), bar, VideoWriter(job.output, video.fps, audio) as writer:
            frames = iter(video)
            while chunk := list(itertools.islice(frames, restorer.batch_size)):
                start = writer.frames_written
                names = [f"{job.input} (frame {start + i})" for i in range(len(chunk))]
                results = restorer.restore_photos_prepared(chunk, refs, args.upscale, names, reference_names)
                runner.count_warnings([check for result in results for check in result.checks])
                for result in results:
                    no_face += not result.faces
                    writer.write(result.image)
                bar.update(len(chunk))
    total = writer.frames_written
    sound = "audio kept" if writer.audio_kept else "no audio" if audio is None else "audio lost"
    logger.info("%s: %d frames at %.3g fps, %s -> %s", job.input, total, video.fps, sound, job.output)
    if no_face:
        runner.notes.append(f"{job.input}: {no_face} of {total} frames without a face (written enlarged)")
    runner.restored.append(job)
