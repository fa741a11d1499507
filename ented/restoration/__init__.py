"""Restoring photos with ENTED: a restorer object, weights I/O, face alignment and ONNX export.

Nothing here registers anything in BasicSR. Typical use::

    from ented.restoration import ENTEDRestorer

    restorer = ENTEDRestorer.from_pretrained("path/or/owner-repo")
    restored = restorer.restore("face.png", "reference.png")

The command line is ``ented-restore`` (:mod:`ented.cli.restore`). See docs/restoring.md.
"""

from ented.face_alignment import align_face, ffhq_template, paste_faces
from ented.image_io import ImageReadError, load_image, save_image
from ented.restoration.face_detection import FaceDetection, FaceDetector, build_detector
from ented.restoration.onnx_export import export_onnx
from ented.restoration.pretrained import (
    CheckpointMismatchError,
    convert_basicsr_checkpoint,
    from_pretrained,
    load_basicsr_checkpoint,
    load_network,
    push_to_hub,
    save_pretrained,
)
from ented.restoration.reference_check import (
    IdentityCheck,
    ReferenceChecker,
    ReferenceMismatchError,
)
from ented.restoration.restorer import ENTEDRestorer
from ented.restoration.results import AlignedResult, NoFaceError, PhotoResult, RestoredFace

__all__ = [
    "AlignedResult",
    "CheckpointMismatchError",
    "ENTEDRestorer",
    "FaceDetection",
    "FaceDetector",
    "IdentityCheck",
    "ImageReadError",
    "NoFaceError",
    "PhotoResult",
    "ReferenceChecker",
    "ReferenceMismatchError",
    "RestoredFace",
    "align_face",
    "build_detector",
    "convert_basicsr_checkpoint",
    "export_onnx",
    "ffhq_template",
    "from_pretrained",
    "load_basicsr_checkpoint",
    "load_image",
    "load_network",
    "paste_faces",
    "push_to_hub",
    "save_image",
    "save_pretrained",
]
