"""Export of the aligned-face network to ONNX, checked against PyTorch with onnxruntime.

The graph has a fixed size: inputs ``lq`` and ``ref``, both ``(batch, 3, S, S)`` float32 RGB in
``[-1, 1]`` (one reference per face), and output ``restored`` ``(batch, 3, S, S)`` clamped to
``[-1, 1]``. Detection, alignment and paste-back stay outside the graph.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ented.atomic_io import atomic_path

logger = logging.getLogger(__name__)

INPUT_NAMES = ("lq", "ref")
OUTPUT_NAME = "restored"


class AlignedFaceGraph(nn.Module):
    """What is exported: ``net(lq, ref)`` clamped to ``[-1, 1]``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, lq: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.net(lq, ref).clamp(-1.0, 1.0)


def export_onnx(
    model,
    path: str | os.PathLike,
    batch_size: int = 1,
    opset: int = 17,
    check: bool = True,
    atol: float = 1e-3,
    dynamo: bool | None = None,
) -> Path:
    """Exports ENTED for aligned faces to an ONNX file.

    Args:
        model: An ENTED network or an ``ENTEDRestorer``.
        path: The ``.onnx`` file to write (written to a temporary name, then moved into place).
        batch_size: The fixed batch size of the graph.
        opset: ONNX opset version.
        check: Run the graph with onnxruntime on random inputs and compare with PyTorch (skipped with
            a log line when onnxruntime is not installed).
        atol: Largest allowed absolute difference in the check.
        dynamo: True: torch's ``torch.export``-based exporter (needs ``onnxscript``); False: the older
            TorchScript exporter. None (default): the first when ``onnxscript`` is installed.

    Returns:
        The path written.

    Raises:
        ValueError: ``model`` is a restorer with ``reference_strength`` other than 1 (the graph has no
            such input).
        RuntimeError: The ONNX output differs from PyTorch's by more than ``atol``.
    """
    strength = getattr(model, "reference_strength", 1.0)
    if strength != 1.0:
        raise ValueError(
            f"the ONNX graph runs the network at reference strength 1; this restorer uses {strength}: "
            "export the network (restorer.net) or a restorer with reference_strength=1"
        )
    net = getattr(model, "net", model)
    size = int(getattr(net, "out_size", None) or net.config["out_size"])
    graph = AlignedFaceGraph(copy.deepcopy(net).float().cpu()).eval()
    generator = torch.Generator().manual_seed(0)
    lq = torch.rand(batch_size, 3, size, size, generator=generator) * 2 - 1
    ref = torch.rand(batch_size, 3, size, size, generator=generator) * 2 - 1
    if dynamo is None:
        dynamo = importlib.util.find_spec("onnxscript") is not None
    path = Path(path)
    with atomic_path(path, suffix=".onnx") as tmp:
        with torch.no_grad(), warnings.catch_warnings(), _quiet_exporter():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            options = {"external_data": False, "verbose": False} if dynamo else {"do_constant_folding": True}
            torch.onnx.export(
                graph,
                (lq, ref),
                tmp,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=dynamo,
                **options,
            )
        if check:
            with torch.no_grad():
                expected = graph(lq, ref).numpy()
            difference = onnx_max_difference(tmp, lq.numpy(), ref.numpy(), expected)
            if difference is not None and difference > atol:
                raise RuntimeError(
                    f"ONNX export of {type(net).__name__} differs from PyTorch by {difference:.3g} (> {atol})"
                )
    logger.info("wrote %s (inputs lq, ref: (%d, 3, %d, %d))", path, batch_size, size, size)
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """Keeps the exporter's progress prints and INFO logs off the console (they go to our debug log)."""
    noisy = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [log.level for log in noisy]
    for log in noisy:
        log.setLevel(logging.ERROR)
    stream = io.StringIO()
    try:
        with contextlib.redirect_stdout(stream):
            yield
    finally:
        for log, level in zip(noisy, levels):
            log.setLevel(level)
        if stream.getvalue():
            logger.debug("exporter output:\n%s", stream.getvalue())


def run_onnx(path: str | os.PathLike, lq: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Runs an exported graph with onnxruntime on the CPU; inputs and output as in the module docstring."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {"lq": lq.astype(np.float32), "ref": ref.astype(np.float32)})[0]


def onnx_max_difference(
    path: str | os.PathLike, lq: np.ndarray, ref: np.ndarray, expected: np.ndarray
) -> float | None:
    """Largest absolute difference between onnxruntime's output and ``expected``; None without onnxruntime."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        logger.info("onnxruntime is not installed: the exported graph was not checked")
        return None
    difference = float(np.abs(run_onnx(path, lq, ref) - expected).max())
    logger.info("ONNX vs PyTorch: max abs difference %.3g", difference)
    return difference
