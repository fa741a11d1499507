"""``ented-restore`` against careless and hostile input (issue 12, items 5 and 15).

Each test names the item it holds the tool to; each failed on c4c43f0.
"""

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from restoration_fixtures import TINY, digest, face, save, tiny_net

from ented.cli.restore import main
from ented.restoration import pretrained as pt
from ented.restoration.pretrained import save_pretrained

ALIGNED = ["--aligned", "--no-progress", "--reference-check", "off"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_pretrained(tiny_net(0), tmp_path_factory.mktemp("weights"))


# ----------------------------------------------------------------------------- 5: references are never overwritten


def test_output_folder_that_is_a_reference_folder_is_refused(tmp_path, weights, capsys):
    save(face(1), tmp_path / "in" / "a.png")
    save(face(2), tmp_path / "in" / "b.png")
    refs = tmp_path / "refs"
    save(face(11), refs / "a.png")  # matched by name
    save(face(11), refs / "restored_faces" / "a.png")  # also matched by name: would be a's output
    save(face(12), refs / "b" / "one.png")
    before = digest(refs)
    args = [str(tmp_path / "in"), "-w", str(weights), "-r", str(refs), *ALIGNED]
    assert main([*args, "-o", str(refs)]) == 2
    err = capsys.readouterr().err
    assert f"would overwrite the input or reference {refs / 'restored_faces' / 'a.png'}" in err
    # every file in a reference folder is protected, matched or not: refs/b/one.png is b's reference,
    # and refs/b/restored_faces/a.png (nobody's reference) must survive an output folder of refs/b too
    save(face(13), refs / "b" / "restored_faces" / "a.png")
    before = digest(refs)
    assert main([*args, "-o", str(refs / "b")]) == 2
    err = capsys.readouterr().err
    assert f"would overwrite the input or reference {refs / 'b' / 'restored_faces' / 'a.png'}" in err
    assert digest(refs) == before
    # a reference where a comparison image would go is protected too (checked as it is written)
    save(face(14), tmp_path / "cmp_ref" / "cmp" / "a.png")
    kept = digest(tmp_path / "cmp_ref")
    cmp_args = [str(tmp_path / "in"), "-w", str(weights), *ALIGNED, "-o", str(tmp_path / "cmp_ref")]
    assert main([*cmp_args, "-r", str(tmp_path / "cmp_ref" / "cmp" / "a.png")]) == 0
    comparison = tmp_path / "cmp_ref" / "cmp" / "a.png"
    assert f"{comparison} would overwrite the input or reference {comparison}" in capsys.readouterr().out
    assert digest(tmp_path / "cmp_ref")["cmp/a.png"] == kept["cmp/a.png"]
    # with a suffix the outputs get names of their own; a rerun overwrites only those
    for _ in range(2):
        assert main([*args, "-o", str(refs), "--suffix", "_r"]) == 0
        assert "restored 2, skipped 0 of 2" in capsys.readouterr().out
        assert {k: v for k, v in digest(refs).items() if "_r." not in k and "cmp/" not in k} == before
    new = ["cmp/a.png", "cmp/b.png", "restored_faces/a_r.png", "restored_faces/b_r.png"]
    assert sorted(set(digest(refs)) - set(before)) == new


def test_references_are_recognised_however_they_are_named(tmp_path, weights, capsys):
    save(face(1), tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    save(face(11), out / "restored_faces" / "a.png")  # the reference lives where a's output would go
    (tmp_path / "refs_link").symlink_to(out, target_is_directory=True)  # a folder, by another name
    os.link(out / "restored_faces" / "a.png", tmp_path / "hard.png")  # a file, by a hard link
    before = digest(out)
    common = [str(tmp_path / "in"), "-o", str(out), "-w", str(weights), *ALIGNED]
    assert main([*common, "-r", str(tmp_path / "refs_link")]) == 2
    assert "would overwrite the input or reference" in capsys.readouterr().err
    assert main([*common, "-r", str(tmp_path / "hard.png")]) == 2
    assert f"would overwrite the input or reference {tmp_path / 'hard.png'}" in capsys.readouterr().err
    assert main([*common, "-r", str(tmp_path / "in" / ".." / "out" / "restored_faces" / "a.png")]) == 2
    assert digest(out) == before


# ----------------------------------------------------------------------------- 15a: tiny photos


def test_photo_smaller_than_the_detector_minimum_has_no_face(tmp_path, weights, capsys, mtcnn):
    for shape in ((12, 12, 3), (19, 300, 3), (300, 1, 3)):
        assert mtcnn.detect(np.full(shape, 128, np.uint8)) == []
    save(face(1, size=16), tmp_path / "in" / "small.png")
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-w", str(weights), "--no-progress"]
    assert main(args) == 0  # written all the same, as GFPGAN does, and listed
    summary = capsys.readouterr().out
    assert "restored 0, 1 without a face (written enlarged), skipped 0 of 1" in summary
    assert f"no face in {tmp_path / 'in' / 'small.png'}: written enlarged, not restored" in summary
    assert (tmp_path / "out" / "restored_imgs" / "small.png").is_file()


# ----------------------------------------------------------------------------- 15b: -o is the input folder


def test_rerun_into_the_input_folder_with_a_suffix(tmp_path, weights, capsys):
    folder = tmp_path / "faces"
    save(face(1), folder / "a.png")
    save(face(2), folder / "b.jpg")
    args = [str(folder), "-o", str(folder), "-w", str(weights), "--suffix", "_r", "--recursive"]
    args += ALIGNED
    assert main(args) == 0
    assert "restored 2, skipped 0 of 2" in capsys.readouterr().out
    outputs = ["a.png", "b.jpg", "cmp/a.png", "cmp/b.png", "restored_faces/a_r.png", "restored_faces/b_r.jpg"]
    assert sorted(digest(folder)) == outputs
    first = digest(folder)

    assert main(args + ["--skip-existing"]) == 0  # its own outputs are not inputs
    assert "restored 0, skipped 0, 2 already done of 2" in capsys.readouterr().out
    assert digest(folder) == first

    (folder / "restored_faces" / "a_r.png").unlink()
    assert main(args + ["--skip-existing"]) == 0
    assert "restored 1, skipped 0, 1 already done of 2" in capsys.readouterr().out
    assert main(args) == 0  # a plain rerun overwrites its own outputs, never the inputs
    assert "restored 2, skipped 0 of 2" in capsys.readouterr().out
    assert sorted(digest(folder)) == outputs
    assert digest(folder)["a.png"] == first["a.png"] and digest(folder)["b.jpg"] == first["b.jpg"]


# ----------------------------------------------------------------------------- 15c: hostile weights


def copy_weights(weights, folder):
    shutil.copytree(weights, folder)
    return folder


def test_tampered_safetensors_header_is_named(tmp_path, weights, capsys):
    folder = copy_weights(weights, tmp_path / "w")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[8:18] = b"x" * 10  # the start of the JSON header
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        pt.load_network(folder)
    save(face(1), tmp_path / "a.png")
    assert main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-w", str(folder), *ALIGNED]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'model.safetensors'} is not a readable safetensors file" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "a.png").exists()


def test_unknown_config_key_is_named_with_the_closest_known_one(tmp_path, weights, capsys):
    folder = copy_weights(weights, tmp_path / "w")
    config = json.loads((folder / "config.json").read_text())
    config["widht"] = config.pop("width")
    (folder / "config.json").write_text(json.dumps(config))
    save(face(1), tmp_path / "a.png")
    assert main([str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-w", str(folder), *ALIGNED]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'config.json'} (ENTED): unknown key 'widht' (did you mean 'width'?)" in err
    # the same through a BasicSR option file, for `convert`
    torch_file = tmp_path / "net_g_1.pth"
    import torch

    torch.save({"params": tiny_net(0).state_dict()}, torch_file)
    option = tmp_path / "train.yml"
    option.write_text(yaml.safe_dump({"network_g": {"type": "ENTED", **TINY, "out_sise": 32}}))
    assert main(["convert", str(torch_file), str(tmp_path / "conv"), "--config", str(option)]) == 2
    err = capsys.readouterr().err
    assert f"{option} (network_g) (ENTED): unknown key 'out_sise' (did you mean 'out_size'?)" in err
    assert not (tmp_path / "conv").exists()


# ----------------------------------------------------------------------------- 15d: identity weights


def test_missing_identity_weights_stop_the_run_once(tmp_path, weights, capsys):
    for name in ("a", "b"):
        save(face(1), tmp_path / "in" / f"{name}.png")
    save(face(2), tmp_path / "ref.png")
    missing = tmp_path / "arcface.pth"
    args = [
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "-w",
        str(weights),
        "-r",
        str(tmp_path / "ref.png"),
    ]
    args += ["--aligned", "--no-progress", "--identity-weights", str(missing)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.count(str(missing)) >= 1 and len(captured.err.strip().splitlines()) == 1
    assert "cannot load --identity-weights" in captured.err
    assert "restored" not in captured.out and not list((tmp_path / "out").glob("*.png"))


# ----------------------------------------------------------------------------- 15e: arguments checked up front


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--upscale", "0", "must be at least 1"),
        ("--upscale", "nan", "expected a finite number"),
        ("--upscale", "inf", "expected a finite number"),
        ("--upscale", "two", "expected a number"),
        ("--ext", "xyz", "unknown image format 'xyz'"),
        ("--batch-size", "0", "must be at least 1"),
        ("--identity-threshold", "1.5", "in [-1, 1]"),
    ],
)
def test_bad_values_exit_2_with_one_line_before_any_work(tmp_path, weights, capsys, option, value, message):
    save(face(1), tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "in"), "-o", str(out), "-w", str(weights), *ALIGNED, option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"ented-restore: error: argument {option}") and message in err
    assert not out.exists()


def test_good_extensions_are_normalised(tmp_path, weights, capsys):
    save(face(1), tmp_path / "in" / "a.png")
    args = [str(tmp_path / "in"), "-w", str(weights), *ALIGNED]
    assert main([*args, "-o", str(tmp_path / "o1"), "--ext", ".JPG"]) == 0
    assert main([*args, "-o", str(tmp_path / "o2"), "--ext", "same", "--upscale", "2"]) == 0
    assert [p.name for p in (tmp_path / "o1" / "restored_faces").iterdir()] == ["a.jpg"]
    assert [p.name for p in (tmp_path / "o2" / "restored_faces").iterdir()] == ["a.png"]
    assert Image.open(tmp_path / "o1" / "restored_faces" / "a.jpg").format == "JPEG"


def test_library_refuses_a_nan_upscale_before_any_work():
    from ented.restoration import ENTEDRestorer

    restorer = ENTEDRestorer(tiny_net(0), device="cpu", reference_check="off")
    for upscale in (float("nan"), float("inf"), 0.5):
        with pytest.raises(ValueError, match="upscale must be a finite number >= 1"):
            restorer.restore_photo(face(1), upscale=upscale)
