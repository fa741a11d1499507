"""``ented-restore`` end to end through ``main([...])`` on temporary folders."""

import runpy
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from restoration_fixtures import digest, face, save, tiny_net

from ented.cli.restore import main
from ented.restoration.pretrained import save_pretrained


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(save_pretrained(tiny_net(0), tmp_path_factory.mktemp("weights")))


def test_aligned_faces_with_references_matched_by_name(tmp_path, weights, capsys, caplog):
    inputs, refs, out = tmp_path / "in", tmp_path / "refs", tmp_path / "out"
    save(face(1), inputs / "a.png")
    save(face(2)[:, :, 0], inputs / "b.png")  # grayscale
    save(np.dstack([face(3), np.full((32, 32), 200, np.uint8)]), inputs / "c.png")  # RGBA
    (inputs / "d.png").write_bytes(b"broken")
    save(face(5), inputs / "e.png")  # no reference for it
    save(face(6), inputs / "f.png")  # its reference is unreadable
    save(face(11), refs / "a.png")
    save(face(11), refs / "d.png")
    save(face(12), refs / "b" / "one.png")  # several references in a folder named after the input
    save(face(13), refs / "b" / "two.png")
    save(face(14, size=48), refs / "c.jpg")  # another size: resized with a notice
    (refs / "f.png").write_bytes(b"broken too")
    before = digest(inputs)

    args = [str(inputs), "-o", str(out), "-w", weights, "-r", str(refs), "--aligned"]
    args += ["--reference-check", "off", "--no-progress", "--batch-size", "2"]
    with caplog.at_level("INFO"):
        assert main(args) == 0
    summary = capsys.readouterr().out
    assert "restored 3, skipped 3 of 6" in summary
    assert f"skipped {inputs / 'd.png'}: not a readable image" in summary
    assert f"skipped {inputs / 'e.png'}: no reference named e.* or e/ in {refs}" in summary
    assert f"skipped {inputs / 'f.png'}: reference problem: {refs / 'f.png'}: not a readable image" in summary
    assert "resized to 32x32" in caplog.text and "c.jpg" in caplog.text

    # aligned faces: restored_faces/<name>.<ext> and cmp/<name>.png (no crops: the input is the crop)
    assert sorted(p.name for p in out.iterdir()) == ["cmp", "restored_faces"]
    assert sorted(p.name for p in (out / "restored_faces").iterdir()) == ["a.png", "b.png", "c.png"]
    for name, references in (("a.png", 1), ("b.png", 2), ("c.png", 1)):
        assert np.asarray(Image.open(out / "restored_faces" / name)).shape == (32, 32, 3)
        # input | every reference | restored under 14-pixel captions, 4-pixel gaps
        panels = 2 + references
        shape = (14 + 32, panels * 32 + (panels - 1) * 4, 3)
        assert np.asarray(Image.open(out / "cmp" / name)).shape == shape
    assert digest(inputs) == before  # inputs untouched
    assert not list(out.rglob("*.part")) and not list(out.rglob(".*"))  # no temporary files left

    # the same run, strict: anything skipped fails the run
    assert main(args + ["--strict", "-q"]) == 1
    # --skip-existing leaves finished outputs alone; the three problems remain and nothing new is done
    capsys.readouterr()
    assert main(args + ["--skip-existing"]) == 1
    assert "restored 0, skipped 3, 3 already done of 6" in capsys.readouterr().out


def test_one_reference_for_all_and_reference_free(tmp_path, weights, capsys):
    inputs = tmp_path / "in"
    for i in range(3):
        save(face(i), inputs / f"p{i}.png")
    ref = save(face(9), tmp_path / "me.png")
    assert (
        main(
            [
                str(inputs / "*.png"),
                "-o",
                str(tmp_path / "o1"),
                "-w",
                weights,
                "-r",
                str(ref),
                "--aligned",
                "--reference-check",
                "off",
                "--no-progress",
                "--ext",
                "jpg",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "o1" / "restored_faces").iterdir()) == [
        "p0.jpg",
        "p1.jpg",
        "p2.jpg",
    ]
    # no reference at all: reference-free; with the progress bar this time
    assert main([str(inputs), "-o", str(tmp_path / "o2"), "-w", weights, "--aligned"]) == 0
    captured = capsys.readouterr()
    assert "restored 3, skipped 0" in captured.out and "3/3" in captured.err


def test_nothing_restored_exits_with_1(tmp_path, weights, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(b"x")
    (tmp_path / "in" / "y.jpg").write_bytes(b"y")
    assert (
        main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-w", weights, "--aligned", "--no-progress"])
        == 1
    )
    assert "restored 0, skipped 2" in capsys.readouterr().out


def test_inputs_are_never_overwritten(tmp_path, weights, capsys):
    folder = tmp_path / "faces"
    save(face(1), folder / "restored_faces" / "a.png")  # where the output of a.png would go
    before = digest(folder)
    args = [
        str(folder / "restored_faces" / "a.png"),
        "-o",
        str(folder),
        "-w",
        weights,
        "--aligned",
        "--no-progress",
        "--reference-check",
        "off",
    ]
    assert main(args) == 2
    assert "would overwrite the input or reference" in capsys.readouterr().err
    assert digest(folder) == before
    assert main(args + ["--suffix", "_restored"]) == 0  # same folder, other names: fine
    assert digest(folder)["restored_faces/a.png"] == before["restored_faces/a.png"]
    assert (folder / "restored_faces" / "a_restored.png").is_file()
    # -o an input folder searched recursively: the earlier outputs in its GFPGAN folders are no inputs
    save(face(2), folder / "b.png")
    args[0] = str(folder)
    assert main(args + ["--suffix", "_restored", "--recursive"]) == 0
    assert "restored 1, skipped 0 of 1" in capsys.readouterr().out


def test_argument_problems_exit_with_2(tmp_path, weights, capsys):
    save(face(1), tmp_path / "a.png")
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    common = ["-w", weights, "--aligned", "--no-progress"]
    assert main([str(tmp_path / "a.png"), "-o", str(blocker / "out"), *common]) == 2
    assert f"output folder {blocker / 'out'} is not writable" in capsys.readouterr().err
    assert (
        main([str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-r", str(tmp_path / "nope.png"), *common])
        == 2
    )
    assert "reference" in (err := capsys.readouterr().err) and "nope.png: no such file" in err
    assert main([str(tmp_path / "missing*.png"), "-o", str(tmp_path / "o"), *common]) == 2
    assert "matches no image file" in capsys.readouterr().err
    assert main([str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-w", str(tmp_path / "nowhere")]) == 2
    assert "cannot set up the restorer" in (err := capsys.readouterr().err) and "nowhere" in err


def test_refusing_a_reference_of_another_person(tmp_path, weights, capsys):
    from ented.archs.arcface_arch import TINY_CONFIG, ENTEDArcFace

    torch.manual_seed(0)
    torch.save(ENTEDArcFace(**TINY_CONFIG).state_dict(), tmp_path / "arcface.pth")
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::2] = (255, 0, 255)
    save(face(1), tmp_path / "in" / "same.png")
    save(face(1), tmp_path / "refs" / "same.png")  # the very same image: similarity 1
    save(face(1), tmp_path / "in" / "other.png")
    save(stripes, tmp_path / "refs" / "other.png")
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-w", weights, "-r", str(tmp_path / "refs")]
    args += ["--aligned", "--no-progress", "--identity-weights", str(tmp_path / "arcface.pth")]
    assert main(args + ["--reference-check", "refuse", "--identity-threshold", "0.9999"]) == 0
    summary = capsys.readouterr().out
    assert "restored 1, skipped 1" in summary and "other.png: refused" in summary
    restored = tmp_path / "out" / "restored_faces"
    assert (restored / "same.png").is_file() and not (restored / "other.png").exists()
    assert main(args + ["--identity-threshold", "0.9999"]) == 0  # warn: both restored, counted
    assert "1 face(s) with a reference that may show another person" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    # what `python -m ented.cli.restore --help` runs, in this process (a new one would import torch again)
    monkeypatch.setattr(sys, "argv", ["ented-restore", "--help"])
    monkeypatch.delitem(sys.modules, "ented.cli.restore", raising=False)  # run as a fresh __main__
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("ented.cli.restore", run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "ented-restore" in out and "--reference" in out
