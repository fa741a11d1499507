"""``ented-restore --reference-strength`` and ``--pick-references`` (issue 11, items 1 and 5).

Strength: a tiny random ENTED with a dense reference attention, so that every reference path is
live. Picking: the astronaut of ``skimage.data`` (public domain) as the input, her variants and a
synthetic face of the posed renderer as the candidates.
"""

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from restoration_fixtures import face, save, tiny_net

from ented.cli.restore import main
from ented.data.example_faces import astronaut_face
from ented.data.posed_faces import render_posed_face, sample_head_identity, sample_head_view
from ented.image_io import to_network
from ented.restoration.onnx_export import export_onnx
from ented.restoration.pretrained import save_pretrained
from ented.restoration.restorer import ENTEDRestorer

SIZE = 64


@pytest.fixture(scope="module")
def net():
    net = tiny_net(0, out_size=SIZE, reference_attention=(32,))
    with torch.no_grad():
        net.reference_attention["32"].to_out.weight.normal_(0, 0.1)
    return net


@pytest.fixture(scope="module")
def weights(net, tmp_path_factory):
    return str(save_pretrained(net, tmp_path_factory.mktemp("weights")))


def test_restorer_strength_0_is_no_reference_and_1_the_default(net):
    lq = to_network([face(1, SIZE), face(2, SIZE)], "cpu")
    ref = to_network([face(3, SIZE), face(4, SIZE)], "cpu")
    default = ENTEDRestorer(net, device="cpu", reference_check="off")
    none = default.forward(lq, None)
    full = default.forward(lq, ref)
    zero = ENTEDRestorer(net, device="cpu", reference_check="off", reference_strength=0.0)
    torch.testing.assert_close(zero.forward(lq, ref), none, rtol=1e-4, atol=1e-5)
    one = ENTEDRestorer(net, device="cpu", reference_check="off", reference_strength=1.0)
    assert torch.equal(one.forward(lq, ref), full)
    half = ENTEDRestorer(net, device="cpu", reference_check="off", reference_strength=0.5).forward(lq, ref)
    assert (half - full).abs().mean() > 1e-4 and (half - none).abs().mean() > 1e-4
    with pytest.raises(ValueError, match="reference_strength must be in"):
        ENTEDRestorer(net, device="cpu", reference_check="off", reference_strength=1.5)


def test_onnx_export_refuses_a_restorer_with_a_reference_strength(net, tmp_path):
    restorer = ENTEDRestorer(net, device="cpu", reference_check="off", reference_strength=0.5)
    with pytest.raises(ValueError, match="reference strength 1"):
        export_onnx(restorer, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_strength_0_is_the_no_reference_output(tmp_path, weights, capsys):
    save(face(1, SIZE), tmp_path / "in" / "a.png")
    ref = save(face(7, SIZE), tmp_path / "me.png")
    common = [str(tmp_path / "in"), "-w", weights, "--aligned", "--reference-check", "off", "--no-progress"]

    def restored(name, *extra):
        assert main([*common, "-o", str(tmp_path / name), *extra]) == 0
        return np.asarray(Image.open(tmp_path / name / "restored_faces" / "a.png")).astype(int)

    without = restored("none")
    zero = restored("zero", "-r", str(ref), "--reference-strength", "0")
    assert np.abs(zero - without).max() <= 1  # equal up to uint8 rounding of float noise
    full = restored("full", "-r", str(ref))
    assert np.array_equal(restored("one", "-r", str(ref), "--reference-strength", "1"), full)
    assert np.abs(full - without).max() > 1  # the reference matters in this network


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "much"])
def test_cli_strength_out_of_range_is_a_usage_error(tmp_path, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["x.png", "-o", str(tmp_path), "-w", "w", "--reference-strength", value])
    assert exit_info.value.code == 2
    assert "--reference-strength" in capsys.readouterr().err


def _candidates(folder):
    """Her face three ways (sharp, mirrored, blurred) and a synthetic stranger, aligned at SIZE."""
    her = astronaut_face(SIZE)
    save(her, folder / "sharp.png")
    save(np.ascontiguousarray(her[:, ::-1]), folder / "flipped.png")
    save(cv2.GaussianBlur(her, (0, 0), 1.5), folder / "blurred.png")
    rng = np.random.default_rng(0)
    save(
        render_posed_face(sample_head_identity(rng), sample_head_view(rng), SIZE).image,
        folder / "stranger.png",
    )
    return folder


def test_pick_references_for_aligned_faces(tmp_path, weights, capsys, caplog):
    small = cv2.resize(astronaut_face(4 * SIZE), (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA)
    save(cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC), tmp_path / "in" / "her.png")
    photos = _candidates(tmp_path / "photos")  # a plain folder: no file named like the input
    args = [str(tmp_path / "in"), "-w", weights, "-r", str(photos), "--aligned", "--no-progress"]
    with caplog.at_level("INFO", logger="ented"):
        assert main([*args, "-o", str(tmp_path / "two"), "--pick-references", "2"]) == 0
    summary = capsys.readouterr().out
    line = next(line for line in summary.splitlines() if "her.png: references" in line)
    assert line.count(".png,") == 1 and "stranger" not in line  # two chosen, never the stranger
    assert (
        f"{photos / 'stranger.png'}: identity" in caplog.text and "excluded: another person?" in caplog.text
    )
    cmp = np.asarray(Image.open(tmp_path / "two" / "cmp" / "her.png"))
    assert cmp.shape[1] == 4 * SIZE + 3 * 4  # input | 2 references | restored

    # asking for more than pass: all passing ones, with a note
    caplog.clear()
    assert main([*args, "-o", str(tmp_path / "all"), "--pick-references", "4"]) == 0
    summary = capsys.readouterr().out
    assert "asked for 4 references, only 3 pass the identity check: using all 3" in summary
    line = next(line for line in summary.splitlines() if "her.png: references" in line)
    assert all(name in line for name in ("sharp.png", "flipped.png", "blurred.png"))
    assert "stranger" not in line
    cmp = np.asarray(Image.open(tmp_path / "all" / "cmp" / "her.png"))
    assert cmp.shape[1] == 5 * SIZE + 4 * 4


def test_pick_references_per_face_of_a_whole_photo(tmp_path, weights, capsys):
    photo = save(skimage.data.astronaut(), tmp_path / "in" / "astronaut.png")
    photos = _candidates(tmp_path / "photos")
    args = [str(photo), "-w", weights, "-r", str(photos), "--no-progress", "--references-aligned", "yes"]
    assert main([*args, "-o", str(tmp_path / "out"), "--pick-references", "1"]) == 0
    summary = capsys.readouterr().out
    line = next(line for line in summary.splitlines() if "astronaut.png: references" in line)
    assert "stranger" not in line and line.count(".png") == 2  # the input and one reference
    assert (tmp_path / "out" / "restored_imgs" / "astronaut.png").is_file()
    cmp = np.asarray(Image.open(tmp_path / "out" / "cmp" / "astronaut_00.png"))
    assert cmp.shape[1] == 3 * SIZE + 2 * 4  # input | 1 reference | restored


def test_pick_references_needs_candidates_and_no_videos(tmp_path, weights, capsys):
    save(face(1, SIZE), tmp_path / "a.png")
    common = [str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-w", weights, "--aligned"]
    assert main([*common, "--pick-references", "2"]) == 2
    assert "give some with -r" in capsys.readouterr().err
    (tmp_path / "clip.mp4").write_bytes(b"")
    ref = save(face(2, SIZE), tmp_path / "r.png")
    args = [str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "o"), "-w", weights, "-r", str(ref)]
    assert main([*args, "--pick-references", "1"]) == 2
    assert "--pick-references is for photos and aligned faces" in capsys.readouterr().err
