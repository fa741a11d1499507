"""``ented-restore`` as GFPGAN users expect it: its output folders, ``--ext auto``, ``--suffix``,
``--only-center-face``, ``--upscale`` with a Lanczos or Real-ESRGAN background, photos without a face."""

import numpy as np
import pytest
import torch
from PIL import Image
from restoration_fixtures import save, tiny_net

from ented.cli.restore import main
from ented.face_alignment import align_face, paste_faces
from ented.restoration.face_detection import FaceDetection, select_faces
from ented.restoration.pretrained import save_pretrained


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(save_pretrained(tiny_net(0), tmp_path_factory.mktemp("weights")))


@pytest.fixture(scope="module")
def rrdbnet_weights(tmp_path_factory):
    """A random Real-ESRGAN x2 RRDBNet, small (one block), saved as RealESRGAN_x2plus.pth is."""
    from basicsr.archs.rrdbnet_arch import RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(3, 3, scale=2, num_feat=8, num_block=1, num_grow_ch=4)
    path = tmp_path_factory.mktemp("realesrgan") / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    return path


def shape(path):
    return np.asarray(Image.open(path)).shape


def test_gfpgan_folders_on_the_astronaut(tmp_path, weights, capsys):
    pytest.importorskip("facenet_pytorch")
    from skimage.data import astronaut

    photo = save(astronaut(), tmp_path / "in" / "astronaut.jpg")
    save(np.full((80, 120, 3), 128, np.uint8), tmp_path / "in" / "wall.png")  # no face
    first = save(astronaut()[::2, ::2], tmp_path / "her.png")
    second = save(astronaut()[:, ::-1], tmp_path / "her_mirrored.png")
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), "-o", str(out), "-w", weights, "-r", str(first), "-r", str(second)]
    assert main(args + ["--reference-check", "off", "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert "restored 1, 1 without a face (written enlarged), skipped 0 of 2" in summary
    assert f"no face in {tmp_path / 'in' / 'wall.png'}: written enlarged, not restored" in summary

    assert sorted(p.name for p in out.iterdir()) == [
        "cmp",
        "cropped_faces",
        "restored_faces",
        "restored_imgs",
    ]
    # --ext auto (the default): each photo keeps its format; the photo without a face is written too
    assert sorted(p.name for p in (out / "restored_imgs").iterdir()) == ["astronaut.jpg", "wall.png"]
    assert shape(out / "restored_imgs" / "astronaut.jpg") == shape(photo) == (512, 512, 3)
    assert shape(out / "restored_imgs" / "wall.png") == (80, 120, 3)
    assert [p.name for p in (out / "cropped_faces").iterdir()] == ["astronaut_00.png"]
    assert [p.name for p in (out / "restored_faces").iterdir()] == ["astronaut_00.png"]
    assert shape(out / "cropped_faces" / "astronaut_00.png") == (32, 32, 3)
    # input | reference 1 | reference 2 | restored, under 14-pixel captions, 4-pixel gaps
    assert shape(out / "cmp" / "astronaut_00.png") == (14 + 32, 4 * 32 + 3 * 4, 3)

    # GFPGAN's --upscale 2, --suffix, a fixed --ext and --only-center-face
    out2 = tmp_path / "out2"
    args[args.index(str(out))] = str(out2)
    extra = [
        "--reference-check",
        "off",
        "-q",
        "--upscale",
        "2",
        "--suffix",
        "_x2",
        "--ext",
        "png",
        "--only-center-face",
    ]
    assert main(args + extra) == 0
    assert "restored 1, 1 without a face" in capsys.readouterr().out
    assert shape(out2 / "restored_imgs" / "astronaut_x2.png") == (1024, 1024, 3)
    assert shape(out2 / "restored_imgs" / "wall_x2.png") == (160, 240, 3)
    assert (out2 / "restored_faces" / "astronaut_00_x2.png").is_file()
    assert (out2 / "cropped_faces" / "astronaut_00.png").is_file() and (
        out2 / "cmp" / "astronaut_00.png"
    ).is_file()


def test_only_center_face_is_facexlibs_choice():
    from facexlib.utils.face_restoration_helper import get_center_face

    rng = np.random.default_rng(0)
    for _ in range(20):
        corners = rng.uniform(0, 300, (5, 2))
        sides = rng.uniform(10, 80, (5, 1))
        boxes = np.hstack([corners, corners + sides])
        detections = [FaceDetection(box, np.zeros((5, 2)), 0.9) for box in boxes]
        _, index = get_center_face([np.append(box, 0.9) for box in boxes], h=240, w=400)
        (chosen,) = select_faces(detections, "center", (240, 400, 3))
        assert chosen is detections[index]
    assert select_faces(detections, "largest", (240, 400, 3)) == detections[:1]
    assert select_faces(detections, "all", (240, 400, 3)) == detections
    assert select_faces([], "center", (240, 400, 3)) == []


def test_background_given_to_paste_faces_is_facexlibs_upsample_img(monkeypatch):
    from test_facexlib_parity import facexlib_helper

    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    landmarks = [np.array([[50, 40], [70, 40], [60, 52], [52, 62], [68, 62]], np.float64)]
    background = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)
    helper = facexlib_helper(monkeypatch, landmarks, 64, 2)
    helper.read_image(np.ascontiguousarray(photo[:, :, ::-1]))
    helper.get_face_landmarks_5()
    helper.align_warp_face()
    helper.get_inverse_affine()
    restored = np.ascontiguousarray(255 - helper.cropped_faces[0])
    helper.add_restored_face(restored)
    theirs = helper.paste_faces_to_input_image(upsample_img=np.ascontiguousarray(background[:, :, ::-1]))
    _, affine = align_face(photo, landmarks[0], 64)
    ours = paste_faces(photo, [restored[:, :, ::-1]], [affine], upscale=2, background=background)
    np.testing.assert_array_equal(ours, theirs[:, :, ::-1])


def test_realesrgan_background_sizes_and_tiles(rrdbnet_weights):
    from ented.restoration.background import RealESRGANUpsampler

    photo = np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    whole = RealESRGANUpsampler(rrdbnet_weights, tile=0)
    tiled = RealESRGANUpsampler(rrdbnet_weights, tile=32)
    assert whole.scale == 2
    enlarged = whole(photo, 2)
    assert enlarged.shape == (140, 180, 3) and enlarged.dtype == np.uint8
    assert np.abs(enlarged.astype(int) - tiled(photo, 2)).max() <= 2  # tiles padded by 10 px
    assert whole(photo, 3).shape == (210, 270, 3)  # brought to the asked size with Lanczos
    assert whole(photo, 1.5).shape == (105, 135, 3)


def test_realesrgan_in_the_command_line(tmp_path, weights, rrdbnet_weights, capsys):
    pytest.importorskip("facenet_pytorch")
    from skimage.data import astronaut

    save(astronaut()[96:352, 96:352], tmp_path / "face.png")
    save(np.full((40, 60, 3), 90, np.uint8), tmp_path / "wall.png")
    common = [str(tmp_path / "face.png"), str(tmp_path / "wall.png"), "-w", weights]
    common += ["--reference-check", "off", "--no-progress", "--bg-upsampler", "realesrgan", "--upscale", "2"]
    out = tmp_path / "out"
    assert main(common + ["-o", str(out), "--bg-weights", str(rrdbnet_weights), "--bg-tile", "64"]) == 0
    assert "restored 1, 1 without a face" in capsys.readouterr().out
    assert shape(out / "restored_imgs" / "face.png") == (512, 512, 3)
    assert shape(out / "restored_imgs" / "wall.png") == (80, 120, 3)

    # never random weights: missing, absent, not an RRDBNet, or more than data in a pickle
    assert main(common + ["-o", str(out)]) == 2
    assert "--bg-upsampler realesrgan needs --bg-weights" in capsys.readouterr().err
    assert main(common + ["-o", str(out), "--bg-weights", str(tmp_path / "nowhere.pth")]) == 2
    assert f"cannot load --bg-weights {tmp_path / 'nowhere.pth'}" in capsys.readouterr().err
    torch.save({"params": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    assert main(common + ["-o", str(out), "--bg-weights", str(tmp_path / "other.pth")]) == 2
    assert "not Real-ESRGAN RRDBNet weights" in capsys.readouterr().err
    torch.save({"params": {"x": Exploit()}}, tmp_path / "pickle.pth")
    assert main(common + ["-o", str(out), "--bg-weights", str(tmp_path / "pickle.pth")]) == 2
    assert "cannot load --bg-weights" in capsys.readouterr().err
    assert not Exploit.ran


class Exploit:
    ran = False

    def __reduce__(self):
        return (setattr, (Exploit, "ran", True))
