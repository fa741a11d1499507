"""The pose-varied synthetic identity set: 3-D heads, FFHQ alignment, sidecars that match the pixels."""

import json
import os

import cv2
import numpy as np
import pytest

from ented.data.posed_faces import decode_face_mask, project_marks
from ented.data.sidecars import sidecar_path
from ented.data.synthetic_faces import iter_synthetic_faces, write_synthetic_identity_set
from ented.face_alignment import ffhq_template

SIZE = 128


@pytest.fixture(scope="module")
def faces():
    return list(iter_synthetic_faces(num_identities=4, images_per_identity=4, size=SIZE, seed=5))


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


def disc_contrast(image: np.ndarray, x: float, y: float, radius: float) -> float:
    """Mean grey of a ring around (x, y) minus the mean inside the disc (dark marks: positive)."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    d = np.hypot(xx - x, yy - y)
    g = grey(image)
    return float(
        g[(d > 2 * radius + 1) & (d <= 3 * radius + 2)].mean() - g[d <= max(radius * 0.7, 0.75)].mean()
    )


def test_views_share_marks_on_the_surface_and_move_in_the_image(faces):
    by_identity: dict = {}
    for face in faces:
        by_identity.setdefault(face.identity, []).append(face.sidecar)
    surface = {name: np.array(s[0]["surface_marks"]) for name, s in by_identity.items()}
    for name, sidecars in by_identity.items():
        for s in sidecars[1:]:
            np.testing.assert_array_equal(np.array(s["surface_marks"]), surface[name])
        positions = np.array([[[m["x"], m["y"]] for m in s["marks"]] for s in sidecars])
        yaws = [s["pose"]["yaw"] for s in sidecars]
        far = int(np.argmax(np.abs(np.array(yaws) - yaws[0])))
        # a pose change moves the marks by pixels: the reference cannot be copied by position
        assert (
            np.abs(yaws[far] - yaws[0]) < 8
            or np.linalg.norm(positions[far] - positions[0], axis=1).mean() > 2
        )
    names = sorted(surface)
    assert all(not np.allclose(surface[a][:3], surface[b][:3]) for a in names for b in names if a < b)


def test_yaw_pitch_roll_span_the_documented_ranges():
    poses = [f.sidecar["pose"] for f in iter_synthetic_faces(10, 6, size=32, seed=0)]
    yaw = np.array([p["yaw"] for p in poses])
    assert np.abs(yaw).max() > 18 and np.abs(yaw).max() <= 25
    assert max(abs(p["pitch"]) for p in poses) <= 10 and max(abs(p["roll"]) for p in poses) <= 5


def test_landmarks_sit_on_the_ffhq_template(faces):
    for face in faces:
        error = np.linalg.norm(np.array(face.sidecar["landmarks"]) - ffhq_template(SIZE), axis=1)
        assert error.mean() < 0.06 * SIZE, (face.identity, face.index, error)


def test_sidecar_marks_match_the_pixels(faces):
    checked = 0
    for face in faces:
        mask = decode_face_mask(face.sidecar)
        assert mask.shape == (SIZE, SIZE) and 0.1 < mask.mean() < 0.6
        for mark in face.sidecar["marks"]:
            if not mark["visible"]:
                continue
            x, y, r = mark["x"], mark["y"], mark["radius"]
            assert mask[int(round(y)), int(round(x))], "a visible mark lies on the face mask"
            assert disc_contrast(face.image, x, y, r) > 15, (face.identity, face.index, mark)
            checked += 1
        # a few pixels away the contrast is gone: the sidecar says where the mark is, not near it
        on_mark, beside = [], []
        for mark in face.sidecar["marks"]:
            if mark["visible"]:
                x, y, r = mark["x"], mark["y"], mark["radius"]
                on_mark.append(disc_contrast(face.image, x, y, r))
                step = 2 * r + 3
                beside += [
                    disc_contrast(face.image, x + dx, y + dy, r)
                    for dx, dy in ((step, 0), (-step, 0), (0, step))
                ]
        assert np.mean(beside) < 0.4 * np.mean(on_mark)
    assert checked >= 3 * len(faces)


def test_project_marks_reproduces_the_sidecar(faces):
    for face in faces:
        projected = project_marks(face.sidecar["surface_marks"], face.sidecar)
        recorded = np.array([[m["x"], m["y"]] for m in face.sidecar["marks"]])
        np.testing.assert_allclose(projected[:, :2], recorded, atol=0.01)


def test_write_adds_a_sidecar_per_image(tmp_path):
    written = write_synthetic_identity_set(
        str(tmp_path), num_identities=2, images_per_identity=2, size=32, seed=1
    )
    expected = list(iter_synthetic_faces(2, 2, size=32, seed=1))
    for face, path in zip(expected, [p for name in sorted(written) for p in written[name]]):
        with open(sidecar_path(path), encoding="utf-8") as f:
            assert json.load(f) == json.loads(json.dumps(face.sidecar))
        np.testing.assert_array_equal(cv2.imread(path)[..., ::-1], face.image)
    assert sorted(os.listdir(tmp_path / "id0000")) == ["0.json", "0.png", "1.json", "1.png"]


def test_flat_renderer_writes_no_sidecar_and_bad_renderer_is_refused(tmp_path):
    write_synthetic_identity_set(str(tmp_path), 1, 1, size=32, renderer="flat")
    assert os.listdir(tmp_path / "id0000") == ["0.png"]
    with pytest.raises(ValueError, match="renderer"):
        list(iter_synthetic_faces(1, 1, size=32, renderer="3d"))
