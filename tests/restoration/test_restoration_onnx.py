"""ONNX export of the aligned-face network, checked against PyTorch with onnxruntime."""

import numpy as np
import pytest
from restoration_fixtures import face, tiny_net

from ented.cli.restore import main
from ented.image_io import to_network
from ented.restoration import ENTEDRestorer
from ented.restoration.pretrained import save_pretrained

pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize(
    "network",
    [{}, {"reference_attention": (32,), "reference_flow": 16, "reference_gate": True}],
    ids=["ented", "with reference flow and gate"],
)
def test_export_matches_pytorch(tmp_path, capsys, network):
    net = tiny_net(0, **network)
    weights = save_pretrained(net, tmp_path / "weights")
    # the CLI exports and checks parity on random inputs itself
    assert main(["export-onnx", str(weights), str(tmp_path / "ented.onnx")]) == 0
    assert "ented.onnx" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ented.onnx", "weights"]  # one file, no leftovers

    session = onnxruntime.InferenceSession(str(tmp_path / "ented.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["lq", "ref"]
    assert list(session.get_inputs()[0].shape) == [1, 3, 32, 32]
    lq, ref = to_network([face(1)]), to_network([face(2)])
    (onnx_out,) = session.run(None, {"lq": lq.numpy(), "ref": ref.numpy()})
    torch_out = ENTEDRestorer(net, device="cpu", reference_check="off").forward(lq, ref)
    assert np.abs(onnx_out - torch_out.numpy()).max() < 1e-4
    assert onnx_out.min() >= -1 and onnx_out.max() <= 1
