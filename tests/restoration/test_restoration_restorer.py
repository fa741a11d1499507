"""ENTEDRestorer.restore on aligned faces and whole photos."""

import numpy as np
import pytest
import torch
from PIL import Image
from restoration_fixtures import face, forward, tiny_net

from ented.face_alignment import ffhq_template, transform_points
from ented.image_io import from_network
from ented.restoration import ENTEDRestorer, NoFaceError
from ented.restoration.face_detection import FaceDetection, FaceDetector


@pytest.fixture(scope="module")
def restorer():
    return ENTEDRestorer(tiny_net(0), device="cpu", batch_size=3, reference_check="off")


def expected(net, lq, ref):
    return from_network(forward(net, lq, ref))[0]


def test_one_face_equals_the_network(restorer):
    lq, ref = face(1), face(2)
    assert np.array_equal(restorer.restore(lq, ref), expected(restorer.net, lq, ref))
    # reference-free: the network's self reference
    assert np.array_equal(restorer.restore(lq), expected(restorer.net, lq, None))


def test_batch_equals_one_by_one(restorer):
    faces = [face(i) for i in range(5)]  # batch_size 3: two batches
    refs = [face(10 + i) for i in range(5)]
    batched = restorer.restore(faces, refs)
    singles = [restorer.restore(lq, ref) for lq, ref in zip(faces, refs)]
    assert len(batched) == 5
    for a, b in zip(batched, singles):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # batched BLAS may round differently
    shared = restorer.restore(faces, refs[0])  # one reference for every face
    assert all(
        np.abs(a.astype(int) - restorer.restore(f, refs[0]).astype(int)).max() <= 1
        for a, f in zip(shared, faces)
    )


def test_several_references_per_face(restorer):
    lq, r1, r2 = face(1), face(2), face(3)
    two = restorer.restore(lq, [r1, r2])
    assert two.shape == (32, 32, 3)
    assert not np.array_equal(two, restorer.restore(lq, r1))
    to_tensor = lambda im: torch.from_numpy(im).permute(2, 0, 1).float() / 127.5 - 1  # noqa: E731
    with torch.no_grad():
        direct = restorer.net(to_tensor(lq)[None], torch.stack([to_tensor(r1), to_tensor(r2)])[None])
    assert np.array_equal(two, from_network(direct)[0])
    # mixed counts in one call are grouped by count and match one-by-one
    mixed = restorer.restore([lq, face(4), face(5)], [[r1, r2], r1, None])
    assert np.array_equal(mixed[0], two)
    assert np.abs(mixed[1].astype(int) - restorer.restore(face(4), r1).astype(int)).max() <= 1
    assert np.abs(mixed[2].astype(int) - restorer.restore(face(5)).astype(int)).max() <= 1


def test_output_kind_follows_the_input(restorer, tmp_path):
    lq, ref = face(1), face(2)
    reference = restorer.restore(lq, ref)
    pil = restorer.restore(Image.fromarray(lq), Image.fromarray(ref))
    assert isinstance(pil, Image.Image) and np.array_equal(np.asarray(pil), reference)
    tensor = restorer.restore(torch.from_numpy(lq).permute(2, 0, 1).float() / 255, ref)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    assert np.array_equal((tensor * 255).round().byte().permute(1, 2, 0).numpy(), reference)
    batch = restorer.restore(np.stack([lq, lq]), np.stack([ref, ref]))
    assert batch.shape == (2, 32, 32, 3)
    tensors = restorer.restore(torch.rand(2, 3, 32, 32), torch.rand(2, 2, 3, 32, 32))
    assert tensors.shape == (2, 3, 32, 32)
    Image.fromarray(lq).save(tmp_path / "lq.png")
    assert np.array_equal(restorer.restore(str(tmp_path / "lq.png"), ref), reference)
    with pytest.raises(ValueError, match="3 images but 2 reference entries"):
        restorer.restore([lq, lq, lq], [ref, ref])


def test_sizes_grayscale_and_rgba(restorer, caplog):
    lq, ref = face(1), face(2)
    restorer.resized.clear()
    with caplog.at_level("DEBUG", logger="ented.restoration.restorer"):
        out = restorer.restore(lq, face(2, size=48))
    assert out.shape == (32, 32, 3)
    assert "reference 0: reference is 48x48; resized to 32x32" in caplog.text
    assert restorer.resized == ["reference 0"]  # listed for one summary line, not a line per file
    assert restorer.restore(face(1, size=64), ref).shape == (32, 32, 3)
    gray = restorer.restore(lq[:, :, 0], ref)
    rgba = restorer.restore(np.dstack([lq, np.full((32, 32), 255, np.uint8)]), ref)
    assert gray.shape == rgba.shape == (32, 32, 3)
    assert np.array_equal(rgba, restorer.restore(lq, ref))  # opaque alpha changes nothing
    with pytest.raises(ValueError, match="not square"):
        restorer.restore(np.zeros((32, 40, 3), np.uint8), ref)


def test_reduced_precision_runs(restorer):
    bf16 = ENTEDRestorer(restorer.net, device="cpu", precision="bf16", reference_check="off")
    out = bf16.restore(face(1), face(2))
    assert out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - restorer.restore(face(1), face(2)).astype(int)).mean() < 20
    with pytest.raises(ValueError, match="precision"):
        ENTEDRestorer(restorer.net, device="cpu", precision="fp8")


class FixedDetector(FaceDetector):
    """Reports faces at given landmarks: tests the photo path independently of any detector."""

    name = "fixed"

    def __init__(self, landmarks):
        self.landmarks = landmarks

    def _detect(self, image):
        return [
            FaceDetection(box=np.r_[lm.min(0), lm.max(0)], landmarks=lm, score=1.0) for lm in self.landmarks
        ]


def test_whole_photo_restores_and_pastes_only_the_faces(restorer):
    photo = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    big = transform_points(ffhq_template(512), np.array([[0.1, 0, 10], [0, 0.1, 10]]))  # 51 px face
    small = transform_points(ffhq_template(512), np.array([[0.06, 0, 100], [0, 0.06, 60]]))
    restorer_photo = ENTEDRestorer(
        restorer.net, device="cpu", reference_check="off", detector=FixedDetector([small, big])
    )
    # (this detector "finds" its faces in any image, so say that the reference is aligned)
    result = restorer_photo.restore_photo(photo, face(2), references_aligned=True)
    assert result.image.shape == photo.shape
    assert len(result.faces) == 2 and result.faces[0].detection.area > result.faces[1].detection.area
    changed = np.any(result.image != photo, axis=2)
    assert changed[10:61, 10:61].mean() > 0.5 and changed[60:90, 100:130].mean() > 0.3
    assert not changed[100:, :90].any()  # far from both faces
    # the restored crop is what restore() gives for the aligned crop
    assert np.array_equal(result.faces[0].restored, restorer.restore(result.faces[0].crop, face(2)))

    largest = ENTEDRestorer(
        restorer.net,
        device="cpu",
        reference_check="off",
        detector=FixedDetector([small, big]),
        face_selection="largest",
    ).restore_photo(photo, face(2), references_aligned=True)
    assert len(largest.faces) == 1
    upscaled = restorer_photo.restore_photo(photo, face(2), references_aligned=True, upscale=2)
    assert upscaled.image.shape == (240, 320, 3)
    # restore(aligned=False) gives the photo back in the input's kind
    restored = restorer_photo.restore(Image.fromarray(photo), face(2), aligned=False, references_aligned=True)
    assert isinstance(restored, Image.Image)

    empty = ENTEDRestorer(restorer.net, device="cpu", reference_check="off", detector=FixedDetector([]))
    with pytest.raises(NoFaceError, match="photo.png: no face found"):
        empty.restore_photo(photo, face(2), name="photo.png")


def test_whole_photo_with_mtcnn_on_the_astronaut(restorer, mtcnn):
    from skimage.data import astronaut

    photo = astronaut()
    net_restorer = ENTEDRestorer(restorer.net, device="cpu", reference_check="off", detector=mtcnn)
    # the reference is a photo too: it gets detected and aligned (a 32x32 crop of her face)
    result = net_restorer.restore_photo(photo, photo[::2, ::2].copy())
    assert len(result.faces) == 1 and result.references[0].shape == (32, 32, 3)
    changed = np.any(result.image != photo, axis=2)
    rows, cols = np.nonzero(changed)
    # her face is at x 181..268, y 62..172; the FFHQ crop adds hair and chin around it
    assert (
        0 < rows.min() < 62 and 172 < rows.max() < 260 and 120 < cols.min() < 181 and 268 < cols.max() < 330
    )
    assert changed[100:150, 200:250].all()
    with pytest.raises(NoFaceError, match="no face found in the reference"):
        net_restorer.align_reference(np.full((60, 80, 3), 90, np.uint8), aligned=None, name="wall")
    # a square image without a face is taken as an aligned reference (logged)
    assert net_restorer.align_reference(np.full((64, 64, 3), 90, np.uint8)).shape == (32, 32, 3)


@pytest.mark.parametrize("logit", [-3.0, 3.0])
def test_a_reference_the_gate_sets_aside_is_named_and_not_read(logit, caplog):
    net = tiny_net(0, reference_attention=(16,), reference_gate=True)
    with torch.no_grad():
        net.reference_gate.head[-1].weight.zero_()
        net.reference_gate.head[-1].bias.fill_(logit)
    restorer = ENTEDRestorer(net, device="cpu", reference_check="off")
    lq, ref = face(1), face(2)
    result = restorer.restore_aligned([lq], [[ref]], face_names=["input.png"], reference_names=[["her.png"]])
    warned = [r.getMessage() for r in caplog.records if "reference gate" in r.getMessage()]
    if logit < 0:
        assert warned == [
            "input.png: the network's reference gate judges her.png to show another person (p = 0.05); "
            "the face is restored without it"
        ]
        assert np.array_equal(result.faces[0], expected(net, lq, None))
    else:
        assert not warned
        assert not np.array_equal(result.faces[0], expected(net, lq, None))
