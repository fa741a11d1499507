"""Choosing references automatically (issue 11, item 5): pose from landmarks, identity, sharpness, the rule.

Real face: the astronaut of ``skimage.data`` (public domain). Another person: a synthetic face.
Known yaw: the posed synthetic renderer.
"""

import dataclasses

import cv2
import numpy as np
import pytest
import skimage.data
from scipy.stats import spearmanr

from ented.data.example_faces import ASTRONAUT_LANDMARKS, astronaut_face
from ented.data.posed_faces import render_posed_face, sample_head_identity, sample_head_view
from ented.data.synthetic_faces import generate_synthetic_faces
from ented.dlib_identity import NoFaceError
from ented.face_alignment import align_face
from ented.image_io import save_image
from ented.restoration import results
from ented.restoration.reference_check import DLIB_THRESHOLD
from ented.restoration.reference_picker import (
    Candidate,
    estimate_pose,
    pick_references,
    pick_references_from_folder,
    pose_from_landmarks,
    sharpness,
)

SIZE = 256  # conftest's ASTRONAUT_SIZE: the size of the `astronaut` fixture


@pytest.fixture(scope="module")
def degraded(astronaut):
    small = cv2.resize(cv2.GaussianBlur(astronaut, (0, 0), 1.5), (64, 64), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def candidates(astronaut):
    eye_distance = np.linalg.norm(ASTRONAUT_LANDMARKS[1] - ASTRONAUT_LANDMARKS[0])
    shifted = align_face(skimage.data.astronaut(), ASTRONAUT_LANDMARKS + 0.05 * eye_distance, SIZE)[0]
    stranger = generate_synthetic_faces(1, 1, size=SIZE, renderer="flat")["id0000"][0]
    return [
        Candidate("sharp.png", astronaut),
        Candidate("flipped.png", np.ascontiguousarray(astronaut[:, ::-1])),
        Candidate("heavy_blur.png", cv2.GaussianBlur(astronaut, (0, 0), 4)),
        Candidate("shifted.png", shifted),
        Candidate("stranger.png", stranger),
    ]


def test_yaw_estimate_follows_the_renderers_yaw():
    rng = np.random.default_rng(0)
    identity, view = sample_head_identity(rng), sample_head_view(rng)
    yaws = np.linspace(-24, 24, 10)
    faces = [render_posed_face(identity, dataclasses.replace(view, yaw=float(yaw)), 64) for yaw in yaws]
    estimates = np.array([pose_from_landmarks(face.landmarks).yaw for face in faces])
    assert spearmanr(yaws, estimates)[0] > 0.8
    assert (np.sign(estimates) == np.sign(yaws)).all()
    assert np.abs(estimates - yaws).max() < 8  # YAW_RATIO_PER_TAN's scale, not only the order


def test_pose_is_mirrored_by_a_flip_and_blind_to_roll(astronaut, descriptor):
    # dlib's landmarks of a real face: the flipped face turns the other way, by as much
    yaw = estimate_pose(astronaut, descriptor=descriptor).yaw
    flipped = estimate_pose(np.ascontiguousarray(astronaut[:, ::-1]), descriptor=descriptor)
    assert flipped.source == "dlib68" and abs(yaw + flipped.yaw) < 2
    # five points rotated in the image: same yaw, roll follows the rotation
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    upright, turned = (
        pose_from_landmarks(ASTRONAUT_LANDMARKS),
        pose_from_landmarks(ASTRONAUT_LANDMARKS @ rotation.T),
    )
    assert turned.yaw == pytest.approx(upright.yaw) and turned.roll == pytest.approx(upright.roll + 20)


def test_sharpness_ranks_blur_and_low_resolution_below_the_crop(astronaut):
    small = cv2.resize(cv2.resize(astronaut, (48, 48), interpolation=cv2.INTER_AREA), (SIZE, SIZE))
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 4)
    assert sharpness(astronaut) > 3 * sharpness(small) and sharpness(astronaut) > 10 * sharpness(blurred)
    # measured at one scale: the same photo aligned at 512 px scores about the same
    assert sharpness(astronaut_face(512)) == pytest.approx(sharpness(astronaut), rel=0.3)


def test_picks_the_astronaut_and_excludes_the_stranger(degraded, candidates, descriptor):
    pick = pick_references(degraded, candidates, 2, face_name="lq.png", descriptor=descriptor)
    by_name = {score.name: score for score in pick.scores}
    stranger = by_name["stranger.png"]
    assert stranger.status == "excluded" and stranger.rank is None and 2 not in pick.chosen
    assert f"another person? identity {stranger.identity:.2f} < {DLIB_THRESHOLD:.2f}" in stranger.line()
    assert by_name["sharp.png"].rank < by_name["heavy_blur.png"].rank
    assert by_name["heavy_blur.png"].status == "unused"
    assert len(pick.chosen) == 2 and len(pick.references) == 2 and "heavy_blur.png" not in pick.chosen_names
    assert all(by_name[name].status == "used" for name in pick.chosen_names)
    assert not pick.notes
    report = pick.report()
    assert len(report) == len(candidates)
    for line, candidate in zip(report, candidates):
        assert line.startswith(f"{candidate.name}: identity ") and " -> " in line
    assert "sharp.png: identity" in report[0] and "-> used (rank" in "\n".join(report)


def test_more_references_asked_for_than_pass(degraded, candidates, descriptor):
    pick = pick_references(degraded, candidates, 10, face_name="lq.png", descriptor=descriptor)
    assert len(pick.chosen) == 4 and "stranger.png" not in pick.chosen_names
    assert pick.notes == ["lq.png: asked for 10 references, only 4 pass the identity check: using all 4"]
    assert pick.report()[-1] == pick.notes[0]


class CodedDescriptor:
    """Stands in for dlib: an image's descriptor is a preset vector chosen by its first pixel."""

    def __init__(self, vectors):
        self.vectors = vectors

    def descriptor(self, image, name="image"):
        return np.asarray(self.vectors[int(image[0, 0, 0])], dtype=np.float64)


def test_a_candidate_unlike_the_others_is_excluded_though_the_noisy_input_matches_it():
    # input 0; candidates 1-3 one person, 4 another: within 0.5 of the input, 0.8 of candidates 1-3
    vectors = {0: [0.0, 0.0], 1: [0.3, 0.0], 2: [0.3, 0.05], 3: [0.3, -0.05], 4: [-0.5, 0.0]}
    images = {k: np.full((32, 32, 3), k, np.uint8) for k in vectors}
    landmarks = ASTRONAUT_LANDMARKS
    candidates = [Candidate(f"ref{k}.png", images[k], landmarks) for k in (1, 2, 3, 4)]
    pick = pick_references(
        images[0], candidates, 4, face_landmarks=landmarks, descriptor=CodedDescriptor(vectors)
    )
    odd = pick.scores[3]
    assert odd.identity == pytest.approx(0.5) and odd.identity >= DLIB_THRESHOLD
    assert odd.status == "excluded" and "unlike the other references: peer identity 0.20 < 0.46" in odd.line()
    assert [s.status for s in pick.scores[:3]] == ["used"] * 3
    assert all(s.pose.source == "given" for s in pick.scores)
    # with fewer than two other passing candidates there is no majority: nobody is outvoted
    pick = pick_references(
        images[0],
        [candidates[0], candidates[3]],
        2,
        face_landmarks=landmarks,
        descriptor=CodedDescriptor(vectors),
    )
    assert [s.status for s in pick.scores] == ["used", "used"]


def test_folder_errors_name_the_files(tmp_path, astronaut, degraded, descriptor):
    with pytest.raises(ValueError, match="at least 1, got 0"):
        pick_references_from_folder(degraded, tmp_path, 0)
    with pytest.raises(ValueError, match=f"reference folder {tmp_path} holds no image file"):
        pick_references_from_folder(degraded, tmp_path, 1)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    save_image(np.full((SIZE, SIZE, 3), 128, np.uint8), tmp_path / "grey.png")
    with pytest.raises(
        ValueError,
        match="no readable image with a face: .*broken.jpg: not a readable image.*; grey.png: no face",
    ):
        pick_references_from_folder(degraded, tmp_path, 1, align=flat_means_no_face)
    save_image(astronaut, tmp_path / "her.png")
    pick = pick_references_from_folder(degraded, tmp_path, 1, descriptor=descriptor)
    assert pick.chosen_names == ["her.png"]
    lines = dict(line.split(": ", 1) for line in pick.report())
    assert sorted(lines) == ["broken.jpg", "grey.png", "her.png"]
    assert lines["grey.png"].startswith("-> excluded: grey.png: no face found")
    assert (
        lines["broken.jpg"].startswith("-> excluded: ")
        and "broken.jpg: not a readable image" in lines["broken.jpg"]
    )
    with pytest.raises(NoFaceError, match="lq.png: no face found"):
        pick_references(np.full((SIZE, SIZE, 3), 128, np.uint8), [astronaut], 1, face_name="lq.png")


def flat_means_no_face(image, name):
    """An aligner as ``ENTEDRestorer.align_reference`` behaves: the crop, or NoFaceError naming the file."""
    if image.std() < 1:
        raise results.NoFaceError(f"{name}: no face found in the reference")
    return image, None
