"""A built-in synthetic identity set, no downloads: pose-varied 3-D heads (default) or flat drawings.

``renderer="posed"`` (the default) renders each identity as a textured 3-D head from a different
pose per photo (yaw up to +-25 degrees), aligned to the FFHQ template, with a JSON sidecar per image
(its marks, face mask and pose): see :mod:`ented.data.posed_faces`. ``renderer="flat"`` is the
first, faster generator described below, kept for unit tests; its views of one identity differ by
at most a degree and under a pixel, so a restorer could copy the reference pixel by pixel.

The flat generator draws procedural faces with OpenCV.

Every identity has coarse traits (face shape, skin tone, hair, eye colour, brows, nose, mouth)
and **fine, identity-specific detail** that a degradation destroys but every image of the
identity shows: a high-frequency skin-texture pattern on the forehead and cheeks (features of
about 4 px at 64-512 px), a set of moles at fixed positions and a thin scar mark. Each image of an
identity is a *view*: a small rotation, scale and shift (mostly aligned, like FFHQ-aligned faces),
an expression (mouth open or closed, eye openness), a lighting gradient and a background colour.

So a reference-based restorer can (and must) borrow the fine detail from another image of the
same person: the low-quality input keeps the coarse traits, the reference carries the detail,
roughly aligned. Everything is a deterministic function of ``seed``, the identity index and the
view index (identity ``i`` of a set of 60 is identity ``i`` of a set of 100).

Example::

    from ented.data.synthetic_faces import write_synthetic_identity_set
    written = write_synthetic_identity_set("datasets/synthetic", num_identities=60,
                                           images_per_identity=6, size=128, seed=0)
    # datasets/synthetic/id0000/0.png ... id0059/5.png; written["id0000"] lists 6 paths
"""

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ented.atomic_io import atomic_write_text
from ented.data.posed_faces import render_posed_face, sample_colours, sample_head_identity, sample_head_view
from ented.data.sidecars import sidecar_path
from ented.image_io import write_image_atomic

logger = logging.getLogger(__name__)

_SHIFT = 4  # fixed-point bits for sub-pixel OpenCV drawing
_ONE = 1 << _SHIFT
_TEXTURE_GRID = 64  # identity texture is drawn from a 64x64 random field (canonical face coordinates)
RENDERERS = ("posed", "flat")


@dataclass(frozen=True)
class FaceIdentity:
    """The traits of one synthetic person. Colours are RGB in [0, 1]; geometry in face units.

    Face units: x and y in [-1, 1] across the face oval's half-width (x right, y down), centred
    on the face centre.
    """

    skin: tuple
    hair: tuple
    iris: tuple
    lips: tuple
    face_aspect: float  # oval half-height / half-width
    face_width: float  # oval width as a fraction of the image size
    eye_spacing: float
    eye_height: float
    eye_size: float
    brow_thickness: float
    brow_tilt: float
    nose_length: float
    mouth_width: float
    hairline: float
    texture_amplitude: float
    texture: np.ndarray  # (64, 64) float32, unit variance: the skin pattern
    moles: np.ndarray  # (M, 3): x, y in face units, radius in face units
    scar: np.ndarray  # (2, 2): end points of a thin mark in face units


@dataclass(frozen=True)
class FaceView:
    """How one image of an identity is taken."""

    angle: float  # degrees, counter-clockwise
    scale: float
    shift: tuple  # (dx, dy) as fractions of the image size
    mouth_open: float  # 0 closed .. 1 wide open
    eye_open: float  # 0.6 .. 1
    light_direction: float  # radians
    light_strength: float  # 0 .. 0.2
    background: tuple  # RGB in [0, 1]


@dataclass(frozen=True)
class SyntheticFace:
    """One generated image. ``image``: (size, size, 3) uint8 RGB; ``sidecar``: the posed
    renderer's description of the image (:meth:`ented.data.posed_faces.PosedFace.sidecar`), or None."""

    identity: str
    index: int
    image: np.ndarray
    sidecar: dict | None = None


def identity_name(index: int) -> str:
    """Folder name of identity ``index``: ``id0000``, ``id0001``, ..."""
    return f"id{index:04d}"


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draws one person's traits from ``rng``."""
    skin, hair, iris, lips = sample_colours(rng)
    num_moles = int(rng.integers(3, 7))
    moles = np.stack(
        [
            rng.uniform(-0.75, 0.75, num_moles),
            rng.uniform(-0.55, 0.75, num_moles),
            rng.uniform(0.025, 0.05, num_moles),
        ],
        axis=1,
    )
    start = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.6, 0.5)])
    direction = rng.uniform(0, np.pi)
    scar = np.stack([start, start + 0.25 * np.array([np.cos(direction), np.sin(direction)])])
    return FaceIdentity(
        skin=tuple(skin),
        hair=tuple(hair),
        iris=tuple(iris),
        lips=tuple(lips),
        face_aspect=float(rng.uniform(1.2, 1.45)),
        face_width=float(rng.uniform(0.5, 0.6)),
        eye_spacing=float(rng.uniform(0.36, 0.48)),
        eye_height=float(rng.uniform(-0.22, -0.1)),
        eye_size=float(rng.uniform(0.14, 0.2)),
        brow_thickness=float(rng.uniform(0.04, 0.08)),
        brow_tilt=float(rng.uniform(-0.08, 0.08)),
        nose_length=float(rng.uniform(0.3, 0.45)),
        mouth_width=float(rng.uniform(0.32, 0.5)),
        hairline=float(rng.uniform(-1.15, -0.85)),
        texture_amplitude=float(rng.uniform(0.2, 0.3)),
        texture=rng.standard_normal((_TEXTURE_GRID, _TEXTURE_GRID)).astype(np.float32),
        moles=moles,
        scar=scar,
    )


def sample_view(rng: np.random.Generator, pose_jitter: float = 1.0) -> FaceView:
    """Draws one image's pose, expression and lighting. ``pose_jitter`` scales the pose ranges
    (0 gives perfectly aligned views; 1: rotation up to 1 degree, scale 0.99-1.01, shift up to
    0.5% of the image, i.e. under a pixel at 128: small next to the 4 px texture features)."""
    return FaceView(
        angle=float(rng.uniform(-1, 1) * pose_jitter),
        scale=float(1 + rng.uniform(-0.01, 0.01) * pose_jitter),
        shift=(
            float(rng.uniform(-0.005, 0.005) * pose_jitter),
            float(rng.uniform(-0.005, 0.005) * pose_jitter),
        ),
        mouth_open=float(rng.uniform(0.3, 1.0) if rng.uniform() < 0.5 else 0.0),
        eye_open=float(rng.uniform(0.6, 1.0)),
        light_direction=float(rng.uniform(0, 2 * np.pi)),
        light_strength=float(rng.uniform(0, 0.2)),
        background=tuple(rng.uniform(0.2, 0.9, 3)),
    )


class _Canvas:
    """A float RGB canvas in canonical face coordinates, painted through anti-aliased masks."""

    def __init__(self, size: int, identity: FaceIdentity, background):
        self.size = size
        self.image = np.empty((size, size, 3), np.float32)
        self.image[:] = np.asarray(background, np.float32)
        self.half_width = identity.face_width * size / 2
        self.centre = np.array([size / 2, size * 0.54])

    def point(self, x: float, y: float) -> tuple:
        """Face units -> fixed-point pixel coordinates for OpenCV."""
        p = self.centre + self.half_width * np.array([x, y])
        return tuple(int(round(v * _ONE)) for v in p)

    def length(self, value: float) -> int:
        return max(1, int(round(value * self.half_width * _ONE)))

    def mask(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.uint8)

    def paint(self, mask: np.ndarray, colour, opacity: float = 1.0) -> None:
        x, y, w, h = cv2.boundingRect(mask)  # blend only where the shape is
        if w == 0 or h == 0:
            return
        alpha = (mask[y : y + h, x : x + w].astype(np.float32) * (opacity / 255.0))[..., None]
        roi = self.image[y : y + h, x : x + w]
        roi *= 1 - alpha
        roi += alpha * np.asarray(colour, np.float32)

    def ellipse(self, x, y, ax, ay, colour, angle=0.0, thickness=-1, opacity=1.0) -> np.ndarray:
        m = self.mask()
        cv2.ellipse(
            m,
            self.point(x, y),
            (self.length(ax), self.length(ay)),
            angle,
            0,
            360,
            255,
            thickness,
            cv2.LINE_AA,
            _SHIFT,
        )
        self.paint(m, colour, opacity)
        return m

    def polyline(self, points, colour, thickness: float, opacity=1.0) -> None:
        m = self.mask()
        pts = np.array([self.point(x, y) for x, y in points], np.int32)
        width = max(1, int(round(thickness * self.half_width)))
        cv2.polylines(m, [pts], False, 255, width, cv2.LINE_AA, _SHIFT)
        self.paint(m, colour, opacity)


def _skin_texture(canvas: _Canvas, identity: FaceIdentity) -> np.ndarray:
    """The identity's texture pattern in [-1, 1] over the whole canvas, features of about 4 px."""
    size = canvas.size
    face_px = 2 * canvas.half_width
    cells = int(np.clip(round(face_px / 4.0), 8, _TEXTURE_GRID))
    field = identity.texture
    if cells != _TEXTURE_GRID:
        field = cv2.resize(field, (cells, cells), interpolation=cv2.INTER_AREA)
        field = (field - field.mean()) / (field.std() + 1e-6)
    pattern = np.tanh(1.5 * field)
    # the field spans the face box [-1, 1] x [-1.2, 1.2] in face units
    x0, y0 = canvas.centre - canvas.half_width * np.array([1.0, 1.2])
    scale_x, scale_y = face_px / cells, 2.4 * canvas.half_width / cells
    to_canvas = np.array([[scale_x, 0, x0], [0, scale_y, y0]], np.float32)
    return cv2.warpAffine(
        pattern, to_canvas, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


def _texture_region(canvas: _Canvas, identity: FaceIdentity) -> np.ndarray:
    """Soft mask of the forehead band and the two cheeks, where the pattern shows."""
    m = canvas.mask()
    forehead_y = (identity.hairline * identity.face_aspect * 0.6 + identity.eye_height) / 2 - 0.1
    cv2.ellipse(
        m,
        canvas.point(0, forehead_y),
        (canvas.length(0.6), canvas.length(0.18)),
        0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
        _SHIFT,
    )
    for side in (-1, 1):
        cv2.ellipse(
            m,
            canvas.point(side * 0.52, 0.28),
            (canvas.length(0.3), canvas.length(0.32)),
            0,
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    soft = m.astype(np.float32) / 255.0
    sigma = max(0.5, 0.06 * canvas.half_width)
    if sigma < 4:
        return cv2.GaussianBlur(soft, (0, 0), sigma)
    # a wide blur of a smooth mask: blur at a quarter of the size, then upsample (4x cheaper)
    small = cv2.resize(soft, (canvas.size // 4, canvas.size // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 4)
    return cv2.resize(small, (canvas.size, canvas.size), interpolation=cv2.INTER_LINEAR)


def _draw_eye(canvas: _Canvas, identity: FaceIdentity, view: FaceView, side: int) -> None:
    x, y, r = side * identity.eye_spacing, identity.eye_height, identity.eye_size
    openness = 0.55 * view.eye_open
    canvas.ellipse(x, y, r, r * openness, (0.96, 0.95, 0.93))
    canvas.ellipse(x, y, r * 0.45, min(r * 0.45, r * openness), identity.iris)
    canvas.ellipse(x, y, r * 0.2, min(r * 0.2, r * openness), (0.03, 0.03, 0.03))
    canvas.ellipse(x, y, r, r * openness, np.array(identity.skin) * 0.45, thickness=1)
    tilt = identity.brow_tilt * side
    brow_y = y - r * 1.3
    canvas.polyline(
        [(x - side * r * 1.1, brow_y + tilt), (x, brow_y - 0.05), (x + side * r * 1.2, brow_y - tilt)],
        np.array(identity.hair) * 0.8,
        identity.brow_thickness,
    )


def _draw_mouth(canvas: _Canvas, identity: FaceIdentity, view: FaceView) -> None:
    y, w = 0.58, identity.mouth_width
    if view.mouth_open > 0:
        h = 0.04 + 0.12 * view.mouth_open
        canvas.ellipse(0, y, w * 0.9, h + 0.03, identity.lips)
        canvas.ellipse(0, y, w * 0.75, h, (0.25, 0.05, 0.06))
        canvas.ellipse(0, y - h * 0.6, w * 0.5, h * 0.3, (0.93, 0.92, 0.88))
    else:
        canvas.ellipse(0, y, w * 0.9, 0.06, identity.lips)
        canvas.polyline([(-w * 0.85, y), (0, y + 0.01), (w * 0.85, y)], np.array(identity.lips) * 0.5, 0.02)


def render_face(identity: FaceIdentity, view: FaceView, size: int = 128) -> np.ndarray:
    """Draws one image of ``identity`` as seen in ``view``.

    Args:
        identity: from :func:`sample_identity`.
        view: from :func:`sample_view`.
        size: output side in pixels (>= 32).

    Returns:
        (size, size, 3) uint8 RGB.
    """
    if size < 32:
        raise ValueError(f"synthetic faces need size >= 32, got {size}")
    canvas = _Canvas(size, identity, view.background)
    aspect = identity.face_aspect
    # hair behind the face, then neck and face oval
    canvas.ellipse(0, -0.25, 1.25, aspect * 1.0, identity.hair)
    neck_colour = np.array(identity.skin) * 0.85
    canvas.ellipse(0, aspect * 0.9, 0.45, 0.6, neck_colour)
    face_mask = canvas.ellipse(0, 0, 1.0, aspect, identity.skin).astype(np.float32) / 255.0
    # identity texture on the skin
    region = _texture_region(canvas, identity) * face_mask
    texture = _skin_texture(canvas, identity)
    canvas.image *= (1 + identity.texture_amplitude * texture * region)[..., None]
    # hair fringe above the hairline
    canvas.ellipse(0, identity.hairline * aspect * 0.6 - 0.35, 1.05, 0.45, identity.hair)
    for side in (-1, 1):
        _draw_eye(canvas, identity, view, side)
    nose_colour = np.array(identity.skin) * 0.6
    top, bottom = identity.eye_height + 0.05, identity.eye_height + 0.05 + identity.nose_length
    canvas.polyline([(0.03, top), (0.08, bottom), (0.0, bottom + 0.04)], nose_colour, 0.03)
    for side in (-1, 1):
        canvas.ellipse(side * 0.09, bottom + 0.02, 0.04, 0.025, nose_colour * 0.7)
    _draw_mouth(canvas, identity, view)
    # identity marks: moles and a thin scar
    for x, y, r in identity.moles:
        canvas.ellipse(x, y, r, r, np.array(identity.skin) * 0.35, opacity=0.9)
    canvas.polyline(identity.scar, np.array(identity.skin) * 0.55, 0.018, opacity=0.8)

    image = canvas.image
    # the view: a small similarity transform around the image centre, then the lighting gradient
    centre = (size / 2, size / 2)
    matrix = cv2.getRotationMatrix2D(centre, view.angle, view.scale)
    matrix[:, 2] += np.array(view.shift) * size
    image = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    coords = (np.arange(size, dtype=np.float32) - size / 2) / (size / 2)
    ramp = np.cos(view.light_direction) * coords[None, :] + np.sin(view.light_direction) * coords[:, None]
    image *= (1 + view.light_strength * ramp)[..., None]
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def iter_synthetic_faces(
    num_identities: int = 60,
    images_per_identity: int = 6,
    size: int = 128,
    seed: int = 0,
    pose_jitter: float = 1.0,
    renderer: str = "posed",
) -> Iterator[SyntheticFace]:
    """Yields the set image by image (identity-major order), deterministically from ``seed``.

    Args:
        num_identities: number of people.
        images_per_identity: views per person.
        size: image side in pixels.
        seed: the set's seed; identity ``i`` depends only on (seed, i), view ``n`` on (seed, i, n).
        pose_jitter: multiplies the pose ranges (posed: yaw +-25, pitch +-10, roll +-5 degrees;
            flat: see :func:`sample_view`); 0 gives frontal / perfectly aligned views.
        renderer: ``"posed"`` (3-D heads with sidecars) or ``"flat"``.
    """
    if num_identities < 1 or images_per_identity < 1:
        raise ValueError(
            f"need at least one identity and one image each, got {num_identities} x {images_per_identity}"
        )
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, got {renderer!r}")
    for i in range(num_identities):
        identity_rng = np.random.default_rng([seed, i, 0])
        identity = (
            sample_head_identity(identity_rng) if renderer == "posed" else sample_identity(identity_rng)
        )
        for n in range(images_per_identity):
            view_rng = np.random.default_rng([seed, i, 1, n])
            if renderer == "posed":
                face = render_posed_face(identity, sample_head_view(view_rng, pose_jitter), size)
                yield SyntheticFace(identity_name(i), n, face.image, face.sidecar())
            else:
                yield SyntheticFace(
                    identity_name(i), n, render_face(identity, sample_view(view_rng, pose_jitter), size)
                )


def generate_synthetic_faces(
    num_identities: int = 60,
    images_per_identity: int = 6,
    size: int = 128,
    seed: int = 0,
    pose_jitter: float = 1.0,
    renderer: str = "posed",
) -> dict:
    """The set in memory: ``{identity name: (images_per_identity, size, size, 3) uint8 RGB}``.

    Arguments as in :func:`iter_synthetic_faces`.
    """
    faces: dict = {}
    for face in iter_synthetic_faces(num_identities, images_per_identity, size, seed, pose_jitter, renderer):
        faces.setdefault(face.identity, []).append(face.image)
    return {name: np.stack(images) for name, images in faces.items()}


def write_synthetic_identity_set(
    root: str,
    num_identities: int = 60,
    images_per_identity: int = 6,
    size: int = 128,
    seed: int = 0,
    pose_jitter: float = 1.0,
    progress: bool = False,
    renderer: str = "posed",
) -> dict:
    """Writes ``root/<identity>/<n>.png`` (one folder per identity, the ``identity_folders`` layout),
    and with the posed renderer the sidecar ``root/<identity>/<n>.json`` beside each image.

    Each file is written atomically; existing files are overwritten.

    Args:
        root: output folder (created).
        num_identities, images_per_identity, size, seed, pose_jitter, renderer: as in
            :func:`iter_synthetic_faces`.
        progress: show a tqdm progress bar.

    Returns:
        ``{identity name: [absolute paths of its images, in view order]}``.
    """
    faces = iter_synthetic_faces(num_identities, images_per_identity, size, seed, pose_jitter, renderer)
    if progress:
        from tqdm import tqdm

        faces = tqdm(faces, total=num_identities * images_per_identity, unit="image", desc="synthetic faces")
    root = os.path.abspath(os.path.expanduser(root))
    written: dict = {}
    for face in faces:
        path = os.path.join(root, face.identity, f"{face.index}.png")
        write_image_atomic(path, cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR))
        if face.sidecar is not None:
            atomic_write_text(sidecar_path(path), json.dumps(face.sidecar))
        written.setdefault(face.identity, []).append(path)
    logger.info(
        "wrote %d %s synthetic identities x %d images at %d px to %s (seed %d)",
        num_identities,
        renderer,
        images_per_identity,
        size,
        root,
        seed,
    )
    return written
