"""Hostile and careless input to the data tools (issue 12, items 4, 6, 7, 9, 10, 11, 13, 16): each
case is refused with a message naming the file, or handled, and never writes outside its output
folder or half an output."""

import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from basicsr.data import build_dataset

from ented.cli.prepare import main
from ented.data.layouts import read_ffhq_ref_csv, read_list_file, scan_identity_folders
from ented.data.preparation import lq_name, pack_lmdb, prepare_split, prepare_test_set
from ented.image_io import MAX_IMAGE_PIXELS_ENV, read_image_file

SIZE = 32


def write_face(path, value: int = 100) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.full((SIZE, SIZE, 3), value, np.uint8)
    img[::4] = 255 - value  # some structure, so a decoding error would show
    ok, encoded = cv2.imencode(os.path.splitext(str(path))[1], img)
    with open(os.fsencode(path), "wb") as f:  # bytes: names that are not UTF-8 work too
        f.write(encoded.tobytes())


@pytest.fixture
def face_root(tmp_path):
    root = tmp_path / "faces"
    for identity in ("id0000", "id0001", "id0002"):
        for n in range(3):
            write_face(root / identity / f"{n}.png", 40 * n + 20)
    return root


def files_under(folder) -> set:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names}


# ---------------------------------------------------------------- 4: outside the output folder
def test_identity_names_cannot_lead_outside_the_output_folder(face_root, tmp_path):
    listing = tmp_path / "ids.txt"
    listing.write_text("../../escaped id0000/0.png\n../../escaped id0000/1.png\n")
    before = files_under(tmp_path.parent)
    prepare_test_set(str(face_root), str(tmp_path / "out"), identity_list=str(listing))
    new = files_under(tmp_path.parent) - before
    assert all(path.startswith(os.path.join(tmp_path.name, "out") + os.sep) for path in new)
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    assert files_under(tmp_path / "out") == {
        "test_list.txt",
        "lq/escaped/escaped_id0000_0.png",
        "lq/escaped/escaped_id0000_1.png",
    }


def test_identity_with_no_usable_name_is_refused_naming_the_line(face_root, tmp_path):
    listing = tmp_path / "ids.txt"
    listing.write_text("id0001 id0001/0.png\n../.. id0000/0.png\n../.. id0000/1.png\n")
    with pytest.raises(ValueError, match=r"'\.\./\.\.' \(from .*ids.txt:2\) gives no usable file name"):
        prepare_test_set(str(face_root), str(tmp_path / "out"), identity_list=str(listing))
    assert not (tmp_path / "out").exists()


def test_list_name_must_stay_inside_the_output_folder(face_root, tmp_path):
    with pytest.raises(ValueError, match="list_name must be a plain file name"):
        prepare_test_set(str(face_root), str(tmp_path / "out"), list_name="../evil.txt")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out").exists()


def test_lq_name_is_two_plain_components():
    assert lq_name("id0000", "id0000/3.png") == "id0000/id0000_3.png"  # unchanged for plain names
    assert lq_name("../x", "../../etc/passwd.png") == "x/x_etc_passwd.png"
    with pytest.raises(ValueError, match="no usable file name"):
        lq_name("..", "a.png")


# ---------------------------------------------------------------- 6: one scanner
def test_test_lq_written_into_the_root_never_reach_the_lmdb(face_root, tmp_path, caplog):
    prepare_test_set(str(face_root), str(face_root), images_per_identity=1)  # --out X on root X
    assert (face_root / "lq" / "id0000").is_dir()
    disk = sorted(r.gt for r in scan_identity_folders(str(face_root)))
    lmdb_path = pack_lmdb(str(face_root), str(tmp_path / "faces.lmdb"))
    keys = sorted(line.split()[0] for line in open(os.path.join(lmdb_path, "meta_info.txt")))
    assert keys == sorted(os.path.splitext(p)[0] + ".png" for p in disk) and len(keys) == 9
    assert not [k for k in keys if k.startswith("lq/")]
    assert "ignoring 3 folder(s) inside identity folders (e.g. lq/id0000)" in caplog.text
    lq_lmdb = str(tmp_path / "lq.lmdb")  # the stored lq files are packed only when asked for
    assert main(["-q", "lmdb", str(face_root), lq_lmdb, "--lq-of", str(face_root / "test_list.txt")]) == 0
    lq_keys = [line.split()[0] for line in open(os.path.join(lq_lmdb, "meta_info.txt"))]
    assert lq_keys == [f"lq/id000{i}/id000{i}_0.png" for i in range(3)]


# ---------------------------------------------------------------- 7: collisions and repeats
def test_same_name_different_extension_is_refused_naming_both(face_root, tmp_path):
    write_face(face_root / "id0001" / "1.jpg")
    with pytest.raises(ValueError, match=r"id0001/1.jpg and id0001/1.png .*lq/.../id0001_1.png"):
        prepare_test_set(str(face_root), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"faces/id0001/1.jpg and .*faces/id0001/1.png would share"):
        pack_lmdb(str(face_root), str(tmp_path / "faces.lmdb"))


def test_repeated_list_lines_are_refused_naming_both_lines(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("id0000/0.png - id0000/1.png id0000\nid0001/0.png - id0001/1.png\n")
    assert len(read_list_file(str(listing))) == 2
    listing.write_text("id0000/0.png - id0000/1.png\n# again\nid0000/0.png  -  id0000/1.png\n")
    with pytest.raises(ValueError, match=r"list.txt:3: repeats .*list.txt:1"):
        read_list_file(str(listing))
    listing.write_text("id0000 id0000/0\nid0000 id0000/0.png\n")  # same file, extension implied
    with pytest.raises(ValueError, match=r"list.txt:2: repeats .*list.txt:1"):
        read_list_file(str(listing))
    csv_path = tmp_path / "refs.csv"
    csv_path.write_text("a.png,b.png\nc.png,d.png\na.png,b.png\n")
    with pytest.raises(ValueError, match=r"refs.csv:3: repeats .*refs.csv:1"):
        read_ffhq_ref_csv(str(csv_path))


# ---------------------------------------------------------------- 9: trailing bytes are fine
@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_trailing_bytes_after_a_complete_image_are_accepted(tmp_path, extension):
    clean = tmp_path / f"clean{extension}"
    write_face(clean)
    motion = tmp_path / f"motion{extension}"
    motion.write_bytes(clean.read_bytes() + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    np.testing.assert_array_equal(read_image_file(str(motion)), read_image_file(str(clean)))
    cut = tmp_path / f"cut{extension}"
    cut.write_bytes(clean.read_bytes()[:-20])  # truly truncated: still refused, naming the file
    with pytest.raises(ValueError, match=f"{cut} is truncated"):
        read_image_file(str(cut))


# ---------------------------------------------------------------- 10: encodings
def test_byte_order_marks_are_ignored(tmp_path):
    listing = tmp_path / "ids.txt"
    listing.write_bytes("id0000 id0000/0.png\nid0000 id0000/1.png\n".encode("utf-8-sig"))
    assert {r.identity for r in read_list_file(str(listing))} == {"id0000"}
    csv_path = tmp_path / "refs.csv"
    csv_path.write_bytes("gt,ref,identity\na.png,b.png,p1\n".encode("utf-8-sig"))
    (record,) = read_ffhq_ref_csv(str(csv_path))
    assert (record.gt, record.refs, record.identity) == ("a.png", ["b.png"], "p1")


def test_list_that_is_not_utf8_names_file_and_line(tmp_path):
    listing = tmp_path / "ids.txt"
    listing.write_bytes(b"id0000 id0000/0.png\nJos\xe9 id0000/1.png\n")
    with pytest.raises(ValueError, match=r"ids.txt:2: not UTF-8 text"):
        read_list_file(str(listing))


def test_undecodable_file_name_is_refused_before_anything_is_written(face_root, tmp_path):
    name = os.fsdecode(b"id0002/caf\xe9.png")
    write_face(os.path.join(str(face_root), name))
    with pytest.raises(ValueError, match=r"image 'id0002/caf\\udce9.png' .*faces/id0002.* not valid UTF-8"):
        prepare_split(str(face_root), str(tmp_path / "meta"), num_test=1)
    assert not (tmp_path / "meta").exists()
    with pytest.raises(ValueError, match="not valid UTF-8"):
        prepare_test_set(str(face_root), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_names_a_list_cannot_hold_are_refused_before_writing(face_root, tmp_path):
    write_face(face_root / "id0001" / "a,b.png")
    with pytest.raises(ValueError, match=r"image 'id0001/a,b.png' .* cannot be written to a list"):
        prepare_test_set(str(face_root), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    os.rename(face_root / "id0001", face_root / "id 0001")
    with pytest.raises(ValueError, match=r"identity 'id 0001' .* cannot be written to a list"):
        prepare_split(str(face_root), str(tmp_path / "meta"), num_test=1)


# ---------------------------------------------------------------- 11: pixel limit
def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height whose pixel data is missing: only a header check can name its size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_oversized_image_is_refused_from_its_header(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(12000, 12000))  # 144 MP, above the default limit
    with pytest.raises(ValueError, match=f"{bomb} is 12000x12000 .*above the limit of 89478485"):
        read_image_file(str(bomb))
    small = tmp_path / "small.png"
    write_face(small)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "1000")
    with pytest.raises(ValueError, match=f"{small} is 32x32 \\(1024 pixels\\), above the limit of 1000"):
        read_image_file(str(small))
    assert read_image_file(str(small), max_pixels=1024).shape == (SIZE, SIZE, 3)


def test_pixel_limit_applies_to_datasets_and_ented_prepare(face_root, tmp_path, monkeypatch, caplog):
    assert main(["-q", "--max-pixels", "1000", "testset", str(face_root), "--out", str(tmp_path / "o")]) == 2
    assert "is 32x32 (1024 pixels), above the limit of 1000" in caplog.text
    assert not (tmp_path / "o").exists()
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "1000")
    dataset = build_dataset(
        {
            "type": "ENTEDReferenceFaceDataset",
            "name": "t",
            "dataroot_gt": str(face_root),
            "out_size": SIZE,
        }
    )
    with pytest.raises(ValueError, match="faces/id0000/0.png is 32x32"):
        dataset[0]


# ---------------------------------------------------------------- 13: arguments and output folders
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["testset", "R", "--out", "O", "--num-ref", "0"], "argument --num-ref: must be at least 1, got 0"),
        (["testset", "R", "--out", "O", "--size", "0"], "argument --size: must be at least 1, got 0"),
        (["testset", "R", "--out", "O", "--downsample-range", "0", "0"], "argument --downsample-range"),
        (["testset", "R", "--out", "O", "--blur-sigma", "3", "1"], "LOW 3 is above HIGH 1"),
        (["testset", "R", "--out", "O", "--jpeg-range", "50", "nan"], "argument --jpeg-range"),
        (["testset", "R", "--out", "O", "--blur-kernel-size", "4"], "must be an odd number"),
        (["testset", "R", "--out", "O", "--seed", "-1"], "argument --seed"),
        (["split", "R", "--out", "O", "--test-fraction", "1.5"], "argument --test-fraction"),
        (["lmdb", "R", "o.lmdb", "--map-size", "10"], "argument --map-size: must be at least 1048576"),
        (["lmdb", "R", "o.lmdb", "--compress-level", "12"], "argument --compress-level"),
        (["--max-pixels", "0", "lmdb", "R", "o.lmdb"], "argument --max-pixels"),
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]


def test_output_below_a_file_is_refused_without_traceback(face_root, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["-q", "testset", str(face_root), "--out", str(blocker / "out")]) == 2
    assert f"{blocker} is a file, not a folder" in caplog.text
    assert main(["-q", "split", str(face_root), "--out", str(blocker), "--num-test", "1"]) == 2
    assert main(["-q", "lmdb", str(face_root), str(blocker / "x.lmdb")]) == 2


def test_unwritable_output_is_refused_without_traceback(face_root, tmp_path, caplog, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: let the OS answer as it does for a user
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode: path != os.path.abspath(locked) and real_access(path, mode)
        )
    assert main(["-q", "testset", str(face_root), "--out", str(locked / "out")]) == 2
    assert "not writable" in caplog.text
    assert not (locked / "out").exists()


def test_map_size_too_small_for_the_images_is_named(face_root, tmp_path):
    for identity in ("id0000", "id0001"):
        big = np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8)
        cv2.imwrite(str(face_root / identity / "big.png"), big)
    with pytest.raises(ValueError, match=r"map size 1048576 bytes is too small for the 11 images"):
        pack_lmdb(str(face_root), str(tmp_path / "faces.lmdb"), map_size=1 << 20)
    assert not (tmp_path / "faces.lmdb").exists() and os.listdir(tmp_path) == ["faces"]


# ---------------------------------------------------------------- 16: -q is quiet
def test_quiet_lmdb_packing_prints_nothing(face_root, tmp_path, capfd):
    assert main(["-q", "lmdb", str(face_root), str(tmp_path / "faces.lmdb")]) == 0
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert len(open(tmp_path / "faces.lmdb" / "meta_info.txt").read().splitlines()) == 9


def test_ented_restore_reads_photos_under_the_same_pixel_limit(tmp_path, monkeypatch):
    from ented.image_io import ImageReadError, load_image

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(12000, 12000))
    with pytest.raises(ImageReadError, match=f"{bomb} is 12000x12000 .*above the limit"):
        load_image(bomb)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header_only(20000, 20000))  # beyond PIL's own bomb check: named, no traceback
    with pytest.raises(ImageReadError, match=str(huge)):
        load_image(huge)
    small = tmp_path / "small.png"
    write_face(small)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "1000")
    with pytest.raises(ImageReadError, match="above the limit of 1000"):
        load_image(small)
