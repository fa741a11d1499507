"""The built-in synthetic identity set, the degradation and the astronaut example."""

import os

import cv2
import numpy as np
import pytest

from ented.data.degradation import FaceDegradation
from ented.data.example_faces import astronaut_face
from ented.data.synthetic_faces import generate_synthetic_faces, write_synthetic_identity_set

SIZE = 128


def high_pass(rgb: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return gray - cv2.GaussianBlur(gray, (0, 0), 2)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12))


def left_cheek(img: np.ndarray) -> np.ndarray:
    s = img.shape[0]
    return img[int(0.56 * s) : int(0.68 * s), int(0.27 * s) : int(0.38 * s)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def faces():
    return generate_synthetic_faces(
        num_identities=6, images_per_identity=4, size=SIZE, seed=3, renderer="flat"
    )


def test_same_seed_same_images_other_seed_other_images(faces):
    again = generate_synthetic_faces(
        num_identities=6, images_per_identity=4, size=SIZE, seed=3, renderer="flat"
    )
    other = generate_synthetic_faces(
        num_identities=6, images_per_identity=4, size=SIZE, seed=4, renderer="flat"
    )
    assert sorted(faces) == sorted(again) == [f"id{i:04d}" for i in range(6)]
    for name in faces:
        assert faces[name].shape == (4, SIZE, SIZE, 3) and faces[name].dtype == np.uint8
        np.testing.assert_array_equal(faces[name], again[name])
        assert np.abs(faces[name].astype(int) - other[name]).mean() > 5


def test_identity_does_not_depend_on_the_set_size(faces):
    bigger = generate_synthetic_faces(
        num_identities=8, images_per_identity=4, size=SIZE, seed=3, renderer="flat"
    )
    np.testing.assert_array_equal(bigger["id0002"], faces["id0002"])


def test_views_of_one_identity_differ(faces):
    views = faces["id0001"].astype(np.float32)
    for i in range(1, len(views)):
        assert np.abs(views[i] - views[0]).mean() > 2  # background, lighting, expression, pose


def test_fine_detail_is_shared_within_an_identity_and_differs_across(faces):
    residuals = {name: [high_pass(left_cheek(img)) for img in images] for name, images in faces.items()}
    within = [
        correlation(r[i], r[j])
        for r in residuals.values()
        for i in range(len(r))
        for j in range(i + 1, len(r))
    ]
    names = sorted(residuals)
    across = [correlation(residuals[a][0], residuals[b][0]) for a in names for b in names if a < b]
    assert np.mean(within) > 0.7, within
    assert np.mean(across) < 0.25, across
    assert np.mean(within) - np.mean(across) > 0.5


def test_degradation_destroys_the_fine_detail(faces):
    degrade = FaceDegradation(
        blur_sigma=[3, 4], downsample_range=[4, 4], noise_range=[5, 5], jpeg_range=[70, 70]
    )
    kept, other_view = [], []
    for images in faces.values():
        gt = images[0][..., ::-1].astype(np.float32) / 255
        lq, _ = degrade(gt, np.random.default_rng(0))
        lq_rgb = np.rint(lq[..., ::-1] * 255).astype(np.uint8)
        kept.append(correlation(high_pass(left_cheek(lq_rgb)), high_pass(left_cheek(images[0]))))
        other_view.append(correlation(high_pass(left_cheek(images[1])), high_pass(left_cheek(images[0]))))
    # the degraded input has lost the detail that another photo of the person still carries
    assert np.mean(kept) < 0.4, kept
    assert np.mean(other_view) > np.mean(kept) + 0.3, (other_view, kept)


def test_stronger_degradation_lowers_psnr(faces):
    gt = faces["id0000"][0][..., ::-1].astype(np.float32) / 255
    mild = FaceDegradation(
        blur_sigma=[1, 1], downsample_range=[2, 2], noise_range=[0, 0], jpeg_range=[95, 95]
    )
    strong = FaceDegradation(
        blur_sigma=[6, 6], downsample_range=[6, 6], noise_range=[15, 15], jpeg_range=[60, 60]
    )
    psnr_mild = psnr(mild(gt, np.random.default_rng(1))[0], gt)
    psnr_strong = psnr(strong(gt, np.random.default_rng(1))[0], gt)
    assert 12 < psnr_strong < psnr_mild < 45


def test_degradation_is_a_function_of_the_generator(faces):
    gt = faces["id0000"][0].astype(np.float32) / 255
    degrade = FaceDegradation()
    a, _ = degrade(gt, np.random.default_rng([7, 1]))
    b, _ = degrade(gt, np.random.default_rng([7, 1]))
    c, _ = degrade(gt, np.random.default_rng([7, 2]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == gt.shape and 0 <= a.min() and a.max() <= 1


def test_gray_and_colour_jitter_options(faces):
    gt = faces["id0000"][0][..., ::-1].astype(np.float32) / 255
    gray = FaceDegradation(gray_prob=1.0, gt_gray=True)
    lq, gray_gt = gray(gt, np.random.default_rng(0))
    assert np.array_equal(lq[..., 0], lq[..., 2]) and np.array_equal(gray_gt[..., 0], gray_gt[..., 1])
    plain = FaceDegradation()(gt, np.random.default_rng(0))[0]
    jittered = FaceDegradation(color_jitter_prob=1.0, color_jitter_shift=40)(gt, np.random.default_rng(0))[0]
    channel_shift = (jittered - plain).reshape(-1, 3).mean(0)
    assert np.abs(channel_shift).max() > 2 / 255


def test_degradation_rejects_bad_ranges():
    with pytest.raises(ValueError, match="blur_sigma"):
        FaceDegradation(blur_sigma=[5, 1])
    with pytest.raises(ValueError, match="odd"):
        FaceDegradation(blur_kernel_size=40)
    with pytest.raises(ValueError, match="kernel_list"):
        FaceDegradation(kernel_list=["plateau"], kernel_prob=[1])


def test_write_synthetic_identity_set(tmp_path):
    written = write_synthetic_identity_set(
        str(tmp_path), num_identities=3, images_per_identity=2, size=64, seed=1
    )
    assert sorted(written) == ["id0000", "id0001", "id0002"]
    expected = generate_synthetic_faces(3, 2, 64, seed=1)
    for name, paths in written.items():
        assert [os.path.basename(p) for p in paths] == ["0.png", "1.png"]
        for n, path in enumerate(paths):
            on_disk = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(on_disk, expected[name][n])
    assert not [f for f in os.listdir(tmp_path / "id0000") if f.endswith(".tmp")]


def test_too_small_size_is_refused():
    with pytest.raises(ValueError, match="size >= 32"):
        generate_synthetic_faces(1, 1, size=16)


def test_astronaut_face_is_aligned_and_detailed():
    face = astronaut_face(256)
    assert face.shape == (256, 256, 3) and face.dtype == np.uint8
    # skin in the middle, not a flat border fill
    centre = face[100:160, 100:160].astype(np.float32)
    assert centre[..., 0].mean() > centre[..., 2].mean()  # RGB: skin is redder than blue
    assert face.std() > 20
