"""The reference identity check with an ArcFace encoder: similarity ordering, threshold logic,
warnings and refusals, and how the backend is chosen.

No ArcFace weights ship offline, so the tests pass an explicit tiny encoder with random weights.
They are built so that they still mean something: a face compared with itself must score 1 and
higher than with a very different image, and the threshold is placed between the two. The dlib
backend, the default, is tested with real faces in tests/metrics/test_dlib_identity.py.
"""

import numpy as np
import pytest
import torch
from restoration_fixtures import face, tiny_net

from ented.archs.arcface_arch import TINY_CONFIG, ENTEDArcFace
from ented.identity import IdentityEncoder
from ented.image_io import to_network
from ented.restoration import ENTEDRestorer, ReferenceChecker, ReferenceMismatchError
from ented.restoration.reference_check import ARCFACE_THRESHOLD, DLIB_THRESHOLD, IdentityCheck


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return IdentityEncoder(ENTEDArcFace(**TINY_CONFIG))


def stripes(size=32):
    image = np.zeros((size, size, 3), np.uint8)
    image[:, ::2] = (255, 0, 255)
    return image


def test_same_face_scores_higher_than_a_different_image(encoder):
    checker = ReferenceChecker(encoder=encoder, on_mismatch="warn")
    lq = to_network([face(1)])
    refs = to_network([face(1), stripes()])[None]  # (1, 2, 3, H, W): itself, then stripes
    same, different = checker.similarities(lq, refs)[0].tolist()
    assert same == pytest.approx(1.0, abs=1e-5)
    assert different < same - 1e-4


def test_threshold_logic_and_messages(encoder, caplog):
    lq = to_network([face(1), face(1)])
    refs = to_network([face(1), stripes()])[:, None]  # face 0 gets itself, face 1 gets stripes
    probe = ReferenceChecker(encoder=encoder, on_mismatch="off")
    assert probe.check(lq, refs) == []  # off computes nothing
    sims = ReferenceChecker(encoder=encoder).similarities(lq, refs)[:, 0]
    threshold = float(sims.mean())  # between "same" (1.0) and "different"

    checker = ReferenceChecker(encoder=encoder, threshold=threshold)
    with caplog.at_level("WARNING"):
        checks = checker.check(lq, refs, ["a.png", "b.png"], [["a_ref.png"], ["stripes.png"]])
    assert [c.same_person for c in checks] == [True, False]
    assert checks[1].mismatched == [0]
    assert "b.png: reference may show a different person: stripes.png" in caplog.text
    assert "a.png" not in caplog.text
    assert "ArcFace cosine" in caplog.text  # the message names the backend

    refusing = ReferenceChecker(encoder=encoder, threshold=threshold, on_mismatch="refuse")
    caplog.clear()
    with caplog.at_level("WARNING"):  # marks the refused face; never raises in the middle of a batch
        checks = refusing.check(lq, refs, ["a.png", "b.png"], [["a_ref.png"], ["stripes.png"]])
    assert [c.refused for c in checks] == [False, True]
    assert "refused: b.png: reference may show a different person: stripes.png" in caplog.text
    assert "ArcFace cosine" in str(ReferenceMismatchError([checks[1]]))


def test_identity_check_object():
    check = IdentityCheck([0.9, 0.1], threshold=0.3, backend="arcface", face="f", references=["r1", "r2"])
    assert not check.same_person and check.mismatched == [1]
    assert "r2 (0.100)" in check.message() and "r1" not in check.message()
    with pytest.raises(ValueError, match="on_mismatch"):
        ReferenceChecker(on_mismatch="explode")
    with pytest.raises(ValueError, match="threshold"):
        ReferenceChecker(threshold=2.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        ReferenceChecker(backend="facenet")


def test_restorer_runs_the_check_before_restoring(encoder, caplog):
    checker = ReferenceChecker(encoder=encoder, threshold=0.999, on_mismatch="warn")
    restorer = ENTEDRestorer(tiny_net(0), device="cpu", reference_check=checker)
    with caplog.at_level("WARNING"):
        result = restorer.restore_aligned([face(1), face(1)], [[face(1)], [stripes()]], ["same", "other"])
    assert [c.same_person for c in result.checks] == [True, False]
    assert len(result.faces) == 2 and "other: reference may show a different person" in caplog.text

    checker.on_mismatch = "refuse"  # the refused face is left out, the rest of the batch restored
    result = restorer.restore_aligned([face(1), face(1)], [[face(1)], [stripes()]], ["same", "other"])
    assert result.faces[0].shape == (32, 32, 3) and result.faces[1] is None
    assert [check.face for check in result.refused] == ["other"]
    with pytest.raises(ReferenceMismatchError, match="face 1"):  # restore() gives back images: it raises
        restorer.restore([face(1), face(1)], [face(1), stripes()])


def test_backend_choice_never_falls_back_to_random_weights(encoder):
    default = ReferenceChecker()  # no ArcFace weights: dlib, never a random ArcFace
    assert default.enabled and default.backend == "dlib" and default.threshold == DLIB_THRESHOLD
    with pytest.raises(AttributeError, match="no ArcFace encoder"):
        default.encoder  # noqa: B018
    given = ReferenceChecker(encoder=encoder)
    assert given.backend == "arcface" and given.threshold == ARCFACE_THRESHOLD
    weights = ReferenceChecker(identity_weights="arcface.pth")  # loaded at first use
    assert weights.backend == "arcface"
    with pytest.raises(ValueError, match="arcface identity backend needs ArcFace weights"):
        ReferenceChecker(backend="arcface")
    with pytest.raises(ValueError, match="pick one"):
        ReferenceChecker(identity_weights="arcface.pth", backend="dlib")


def test_restorer_and_cli_pass_the_backend_on(encoder):
    from ented.cli.restore import build_restore_parser

    restorer = ENTEDRestorer(tiny_net(0), device="cpu", identity_threshold=0.5)
    assert restorer.checker.backend == "dlib" and restorer.checker.threshold == 0.5
    with pytest.raises(ValueError, match="needs ArcFace weights"):
        ENTEDRestorer(tiny_net(0), device="cpu", identity_backend="arcface")
    args = build_restore_parser().parse_args(
        ["in.png", "-o", "out", "-w", "w", "--identity-backend", "arcface"]
    )
    assert args.identity_backend == "arcface"
