"""Logs: one line for many resized images, quiet ranks > 0, ented's messages in BasicSR's runs."""

import logging

import numpy as np
import pytest

from ented import runner_fixes
from ented.image_io import fit_to_size


@pytest.fixture
def basicsr_logger():
    """BasicSR's logger as a runner leaves it: its own handler, no propagation; restored afterwards."""
    logger = logging.getLogger("basicsr")
    ented_logger = logging.getLogger("ented")
    saved = (logger.handlers[:], logger.level, logger.propagate, ented_logger.handlers[:], ented_logger.level)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.handlers[:] = [handler]
    logger.propagate = False
    yield logger, records
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    ented_logger.handlers[:], ented_logger.level = saved[3], saved[4]


def test_resized_images_of_one_dataset_give_one_warning(tmp_path, caplog):
    odd = np.zeros((40, 30, 3), np.float32)
    with caplog.at_level(logging.WARNING, logger="ented.image_io"):
        for index in range(5):
            fit_to_size(odd, 32, str(tmp_path / "faces" / f"id{index:04d}" / "0.png"))
    lines = [r for r in caplog.records if "resizing to 32x32" in r.getMessage()]
    assert len(lines) == 1 and "id0000" in lines[0].getMessage()
    assert "resized too, without a line each" in lines[0].getMessage()


@pytest.mark.parametrize("rank_level, shown", [(logging.INFO, True), (logging.ERROR, False)])
def test_ented_messages_reach_basicsr_runs_except_on_quiet_ranks(basicsr_logger, rank_level, shown):
    logger, records = basicsr_logger
    logger.setLevel(rank_level)  # BasicSR: INFO on rank 0, ERROR on the other ranks
    runner_fixes.apply()  # what a user of BasicSR's runner calls
    logging.getLogger("ented.data.some_dataset").info("dataset note")
    assert [r.getMessage() for r in records] == (["dataset note"] if shown else [])


def test_entry_points_forward_once_at_basicsr_level(basicsr_logger):
    logger, records = basicsr_logger
    ented_logger = logging.getLogger("ented")
    propagate = ented_logger.propagate
    try:
        runner_fixes.apply()
        runner_fixes.log_into_basicsr_logger()
        logger.setLevel(logging.ERROR)
        logging.getLogger("ented.x").warning("rank 1 warning")
        logger.setLevel(logging.INFO)
        logging.getLogger("ented.x").info("rank 0 note")
    finally:
        ented_logger.propagate = propagate
    assert [r.getMessage() for r in records] == ["rank 0 note"]  # once, never twice
    assert sum(isinstance(h, runner_fixes.ForwardToBasicsrLogger) for h in ented_logger.handlers) == 1


def test_with_a_root_console_ented_messages_go_to_basicsrs_file_only(basicsr_logger, tmp_path):
    import io

    logger, records = basicsr_logger
    root = logging.getLogger()
    root_console, basicsr_console = io.StringIO(), io.StringIO()
    root_handler = logging.StreamHandler(root_console)
    log_file = logging.FileHandler(tmp_path / "train.log")
    logger.handlers[:] = [logging.StreamHandler(basicsr_console), log_file]
    root.addHandler(root_handler)
    try:
        runner_fixes.apply()
        logging.getLogger("ented.data.some_dataset").warning("dataset note")
    finally:
        root.removeHandler(root_handler)
        log_file.close()
    assert root_console.getvalue().count("dataset note") == 1
    assert basicsr_console.getvalue() == ""  # not a second time on the console
    assert "dataset note" in (tmp_path / "train.log").read_text()
