"""Pose-varied synthetic identities: a textured 3-D head, rendered from any pose, aligned like FFHQ.

Why: a reference-based restorer must carry a person's fine detail from one photo to another
taken from a different pose. In real photos that detail lives on the face surface, so it moves and
foreshortens with the head. This renderer does the same, so copying the reference pixel by pixel
fails and only a model that finds correspondences can bring the detail back.

The model (all in *face units*: the head's half-width is 1):

- The head is an ellipsoid with semi-axes ``(1, head_height, head_depth)`` (x right, y down, z towards
  the camera when frontal), the nose a second, smaller ellipsoid in front of it.
- Everything painted on the face is a function of the surface point's frontal coordinates
  ``(x, y)`` (a planar "UV" chart of the front half): skin pattern, eyes, iris colour, brows, mouth,
  **moles** (discs) and a **scar** (a thin segment), hair above the identity's hairline. Those are
  the identity's traits; expression (eye openness, mouth open, smile), lighting (direction and
  strength), background and the hair's edge belong to the view.
- A view is a head rotation (yaw up to about +-25 degrees, pitch +-10, roll +-5) seen through an
  orthographic camera, Lambert-shaded. The five landmarks (eye centres, nose tip, mouth corners)
  are projected and the image is rendered directly into the frame that maps them onto the FFHQ
  five-point template (as real pipelines align photos), 2x supersampled.

Each rendered face comes with a **sidecar** (:meth:`PosedFace.sidecar`): pose, landmarks, the
image position, radius and visibility of every mole (the same mole index in every view of the
identity), the moles' surface coordinates, the alignment transform, and the face mask (skin
pixels of the front of the head) as a PNG in base64. :func:`project_marks` places any surface
marks into a view from its sidecar (e.g. another person's moles, to check they are not pasted).

Everything is a deterministic function of ``(seed, identity index, view index)``.
"""

import base64
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ented.face_alignment import alignment_transform, invert_affine

_TEXTURE_GRID = 48  # the skin pattern: a random field over the frontal chart [-1, 1] x [-1.4, 1.4]
_SUPERSAMPLE = 2
_FAR = 10.0  # camera distance for the orthographic rays (face units)


@dataclass(frozen=True)
class HeadIdentity:
    """One synthetic person. Colours RGB in [0, 1]; geometry in face units (head half-width 1)."""

    skin: tuple
    hair: tuple
    iris: tuple
    lips: tuple
    head_height: float  # ellipsoid semi-axis along y
    head_depth: float  # ellipsoid semi-axis along z
    eye_spacing: float  # half the distance between the eye centres
    eye_height: float  # y of the eye centres
    eye_size: float  # eye half-width
    brow_thickness: float
    brow_tilt: float
    brow_arch: float
    nose_length: float  # nose ellipsoid semi-axis along y
    nose_width: float
    nose_depth: float  # how far the nose stands out of the head
    mouth_height: float  # y of the mouth
    mouth_width: float  # mouth half-width
    hairline: float  # y of the hairline at the centre
    texture_amplitude: float
    texture: np.ndarray  # (G, G) float32, unit variance: the skin pattern
    moles: np.ndarray  # (M, 3) float: x, y on the frontal chart, radius (face units)
    scar: np.ndarray  # (2, 2) float: end points on the frontal chart


@dataclass(frozen=True)
class HeadView:
    """How one photo of an identity is taken."""

    yaw: float  # degrees, positive turns the face to the image's right
    pitch: float  # degrees, positive tilts the face down
    roll: float  # degrees
    eye_open: float  # 0.5 .. 1
    mouth_open: float  # 0 closed .. 1 wide open
    smile: float  # -0.3 .. 1: raises the mouth corners
    light: tuple  # unit vector towards the light (camera frame)
    light_strength: float  # share of the light that is directional, 0.2 .. 0.6
    background: tuple  # two RGB colours of a gradient
    background_angle: float  # radians
    hair_wave: float  # phase of the hairline's wave


def sample_colours(rng: np.random.Generator) -> tuple:
    """One person's skin, hair, iris and lip colours (RGB arrays in [0, 1]), drawn from ``rng``
    (shared by the posed and the flat synthetic faces)."""
    tone = rng.uniform(0.0, 1.0)
    skin = np.array([0.86, 0.7, 0.58]) * (1 - tone) + np.array([0.45, 0.30, 0.22]) * tone
    skin = np.clip(skin + rng.normal(0, 0.03, 3), 0.15, 1.0)
    hair = np.clip(
        rng.choice([[0.1, 0.07, 0.05], [0.35, 0.2, 0.1], [0.75, 0.6, 0.3], [0.5, 0.5, 0.5]])
        + rng.normal(0, 0.04, 3),
        0.02,
        0.95,
    )
    iris = np.clip(
        rng.choice([[0.35, 0.2, 0.1], [0.2, 0.4, 0.7], [0.25, 0.5, 0.3]]) + rng.normal(0, 0.05, 3), 0.05, 0.9
    )
    lips = np.clip(skin * np.array([0.85, 0.5, 0.5]) + rng.normal(0, 0.03, 3), 0.05, 1.0)
    return skin, hair, iris, lips


def sample_head_identity(rng: np.random.Generator) -> HeadIdentity:
    """Draws one person's traits from ``rng``."""
    skin, hair, iris, lips = sample_colours(rng)
    eye_spacing = rng.uniform(0.36, 0.44)
    eye_height = rng.uniform(-0.25, -0.15)
    mouth_height = rng.uniform(0.5, 0.6)
    return HeadIdentity(
        skin=tuple(skin),
        hair=tuple(hair),
        iris=tuple(iris),
        lips=tuple(lips),
        head_height=float(rng.uniform(1.3, 1.45)),
        head_depth=float(rng.uniform(0.9, 1.0)),
        eye_spacing=float(eye_spacing),
        eye_height=float(eye_height),
        eye_size=float(rng.uniform(0.14, 0.18)),
        brow_thickness=float(rng.uniform(0.035, 0.07)),
        brow_tilt=float(rng.uniform(-0.06, 0.06)),
        brow_arch=float(rng.uniform(0.0, 0.08)),
        nose_length=float(rng.uniform(0.22, 0.3)),
        nose_width=float(rng.uniform(0.09, 0.13)),
        nose_depth=float(rng.uniform(0.14, 0.2)),
        mouth_height=float(mouth_height),
        mouth_width=float(rng.uniform(0.22, 0.3)),
        hairline=float(rng.uniform(-0.95, -0.75)),
        texture_amplitude=float(rng.uniform(0.05, 0.1)),
        texture=rng.standard_normal((_TEXTURE_GRID, _TEXTURE_GRID)).astype(np.float32),
        moles=_sample_moles(rng, eye_spacing, eye_height, mouth_height),
        scar=_sample_scar(rng),
    )


def _sample_moles(rng, eye_spacing: float, eye_height: float, mouth_height: float) -> np.ndarray:
    """4-7 moles on the cheeks, forehead and chin, clear of the eyes, nose, mouth and of each other."""
    count = int(rng.integers(4, 8))
    keep_out = [(-eye_spacing, eye_height, 0.26), (eye_spacing, eye_height, 0.26), (0.0, 0.1, 0.2)]
    keep_out.append((0.0, mouth_height, 0.34))
    moles: list = []
    while len(moles) < count:
        x, y = rng.uniform(-0.62, 0.62), rng.uniform(-0.62, 0.85)
        radius = rng.uniform(0.055, 0.08)
        clear = all(math.hypot(x - kx, y - ky) > kr for kx, ky, kr in keep_out)
        apart = all(math.hypot(x - mx, y - my) > 0.22 for mx, my, _ in moles)
        if clear and apart:
            moles.append((x, y, radius))
    return np.array(moles, dtype=np.float64)


def _sample_scar(rng) -> np.ndarray:
    side = rng.choice([-1.0, 1.0])
    start = np.array([side * rng.uniform(0.35, 0.6), rng.uniform(0.1, 0.45)])
    angle = rng.uniform(0, np.pi)
    return np.stack([start, start + 0.22 * np.array([np.cos(angle), np.sin(angle)])])


def sample_head_view(rng: np.random.Generator, pose_scale: float = 1.0) -> HeadView:
    """Draws one photo's pose (yaw +-25, pitch +-10, roll +-5 degrees, all times ``pose_scale``),
    expression, lighting, background and hair edge."""
    azimuth, elevation = rng.uniform(-1.0, 1.0), rng.uniform(-0.6, 0.8)
    light = np.array([azimuth, -elevation, 1.0])
    return HeadView(
        yaw=float(rng.uniform(-25, 25) * pose_scale),
        pitch=float(rng.uniform(-10, 10) * pose_scale),
        roll=float(rng.uniform(-5, 5) * pose_scale),
        eye_open=float(rng.uniform(0.5, 1.0)),
        mouth_open=float(rng.uniform(0.2, 1.0) if rng.uniform() < 0.4 else 0.0),
        smile=float(rng.uniform(-0.3, 1.0)),
        light=tuple(light / np.linalg.norm(light)),
        light_strength=float(rng.uniform(0.2, 0.6)),
        background=(tuple(rng.uniform(0.15, 0.9, 3)), tuple(rng.uniform(0.15, 0.9, 3))),
        background_angle=float(rng.uniform(0, 2 * np.pi)),
        hair_wave=float(rng.uniform(0, 2 * np.pi)),
    )


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) head -> camera rotation (angles in degrees): yaw about y, then pitch about x, then roll."""
    yaw, pitch, roll = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _head_axes(identity: HeadIdentity) -> np.ndarray:
    return np.array([1.0, identity.head_height, identity.head_depth])


def _nose_centre(identity: HeadIdentity) -> np.ndarray:
    y = identity.eye_height + 0.12 + identity.nose_length
    z = identity.head_depth * math.sqrt(max(1e-6, 1 - (y / identity.head_height) ** 2))
    return np.array([0.0, y, z - 0.05])


def _nose_axes(identity: HeadIdentity) -> np.ndarray:
    return np.array([identity.nose_width, identity.nose_length, identity.nose_depth + 0.05])


def surface_depth(identity: HeadIdentity, xy: np.ndarray) -> np.ndarray:
    """z of the head's front surface at frontal-chart points ``xy`` (..., 2)."""
    x, y = xy[..., 0], xy[..., 1]
    inside = np.clip(1 - x**2 - (y / identity.head_height) ** 2, 0, None)
    return identity.head_depth * np.sqrt(inside)


def landmarks_3d(identity: HeadIdentity, view: HeadView) -> np.ndarray:
    """(5, 3) head-frame landmarks: eye centres (image left first when frontal), nose tip, mouth corners."""
    mouth_y = identity.mouth_height - 0.08 * view.smile
    chart = np.array(
        [
            [-identity.eye_spacing, identity.eye_height],
            [identity.eye_spacing, identity.eye_height],
            [0.0, 0.0],
            [-identity.mouth_width, mouth_y],
            [identity.mouth_width, mouth_y],
        ]
    )
    points = np.concatenate([chart, surface_depth(identity, chart)[:, None]], axis=1)
    centre, axes = _nose_centre(identity), _nose_axes(identity)
    points[2] = centre + np.array([0.0, 0.35 * axes[1], axes[2] * math.sqrt(1 - 0.35**2)])
    return points


def _ray_ellipsoid(origins: np.ndarray, direction: np.ndarray, centre: np.ndarray, axes: np.ndarray):
    """Nearest hit distance of parallel rays ``origins + t * direction`` with an ellipsoid (inf: miss)."""
    o = (origins - centre) / axes
    d = direction / axes
    a = float(d @ d)
    b = 2 * (o @ d)
    c = np.einsum("...i,...i->...", o, o) - 1
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.clip(disc, 0, None))) / (2 * a)
    return np.where(disc >= 0, t, np.inf)


def _soft_disc(distance: np.ndarray, radius, edge: float) -> np.ndarray:
    """1 inside ``radius``, 0 outside, a linear ramp ``edge`` wide at the border."""
    return np.clip((radius - distance) / edge + 0.5, 0.0, 1.0)


def _segment_distance(x, y, a, b) -> np.ndarray:
    ab = b - a
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / float(ab @ ab), 0, 1)
    return np.hypot(x - (a[0] + t * ab[0]), y - (a[1] + t * ab[1]))


def _blend(colour: np.ndarray, paint, alpha: np.ndarray) -> np.ndarray:
    """Paints ``paint`` (an RGB colour) over ``colour`` (H, W, 3) with opacity ``alpha`` (H, W), in place."""
    where = np.nonzero(alpha)
    a = alpha[where][:, None]
    colour[where] = colour[where] * (1 - a) + np.asarray(paint, colour.dtype) * a
    return colour


def _paint_chart(identity: HeadIdentity, view: HeadView, x, y, edge: float):
    """Colours of the frontal chart at (x, y), before shading; also the skin mask (not hair)."""
    skin = np.asarray(identity.skin)
    grid = (x + 1) / 2 * (_TEXTURE_GRID - 1), (y + 1.4) / 2.8 * (_TEXTURE_GRID - 1)
    field = cv2.remap(
        identity.texture,
        grid[0].astype(np.float32),
        grid[1].astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    colour = skin * (1 + identity.texture_amplitude * np.tanh(1.5 * field))[..., None]
    # eyes: sclera, iris, pupil under the eyelids, then the brow
    for side in (-1, 1):
        ex, ey, r = side * identity.eye_spacing, identity.eye_height, identity.eye_size
        opening = _soft_disc(np.hypot((x - ex) / r, (y - ey) / (0.5 * r * view.eye_open)), 1.0, edge / r)
        colour = _blend(colour, (0.95, 0.94, 0.92), opening)
        iris = _soft_disc(np.hypot(x - ex, y - ey), 0.45 * r, edge) * opening
        colour = _blend(colour, identity.iris, iris)
        colour = _blend(
            colour, (0.03, 0.03, 0.03), _soft_disc(np.hypot(x - ex, y - ey), 0.2 * r, edge) * opening
        )
        u = (x - ex) / (1.3 * r)
        brow_y = ey - 1.35 * r - identity.brow_arch * (1 - u**2) + side * identity.brow_tilt * u
        brow = _soft_disc(np.abs(y - brow_y), identity.brow_thickness / 2, edge) * (np.abs(u) < 1)
        colour = _blend(colour, np.asarray(identity.hair) * 0.8, brow)
    # mouth: lips, and the dark opening when the mouth is open; a smile raises the corners
    u = x / identity.mouth_width
    mouth_y = identity.mouth_height - 0.08 * view.smile * u**2
    lip_height = 0.055 + 0.08 * view.mouth_open
    lips = _soft_disc(np.hypot(u, (y - mouth_y) / lip_height), 1.0, edge / lip_height)
    colour = _blend(colour, identity.lips, lips)
    line = _soft_disc(np.hypot(u / 0.95, (y - mouth_y) / max(0.012, 0.06 * view.mouth_open)), 1.0, 1.0)
    colour = _blend(colour, (0.25, 0.05, 0.06), line * lips)
    # identity marks
    for mx, my, mr in identity.moles:
        colour = _blend(colour, skin * 0.3, 0.95 * _soft_disc(np.hypot(x - mx, y - my), mr, edge))
    scar = _soft_disc(_segment_distance(x, y, identity.scar[0], identity.scar[1]), 0.02, edge)
    colour = _blend(colour, skin * 0.55, 0.8 * scar)
    # hair above the hairline (with this view's wave) and at the sides
    hairline = identity.hairline + 0.04 * np.sin(7 * x + view.hair_wave) - 0.25 * x**2
    hair = np.clip((hairline - y) / edge + 0.5, 0, 1)
    hair = np.maximum(hair, np.clip((np.abs(x) - 0.9) / edge + 0.5, 0, 1) * (y < 0.1))
    strands = 1 + 0.12 * np.sin(60 * x + 9 * y)
    colour += (np.asarray(identity.hair) * strands[..., None] - colour) * hair[..., None]
    return colour, 1 - hair


@dataclass(frozen=True)
class PosedFace:
    """One rendered photo. ``image``: (size, size, 3) uint8 RGB; ``face_mask``: (size, size) uint8 0/255."""

    identity: HeadIdentity
    view: HeadView
    image: np.ndarray
    face_mask: np.ndarray
    landmarks: np.ndarray  # (5, 2) pixel coordinates of the projected landmarks
    to_image: np.ndarray  # (2, 3): camera-plane face units -> pixels
    marks: np.ndarray  # (M, 4): x, y, radius (pixels), visible (0/1) of each mole

    def sidecar(self) -> dict:
        """A JSON-ready description of the photo (see the module docstring)."""
        ok, png = cv2.imencode(".png", self.face_mask)
        if not ok:
            raise RuntimeError("could not encode the face mask")
        return {
            "format": "ented-posed-face/1",
            "size": int(self.image.shape[0]),
            "pose": {"yaw": self.view.yaw, "pitch": self.view.pitch, "roll": self.view.roll},
            "landmarks": self.landmarks.round(3).tolist(),
            "marks": [
                {"x": round(x, 3), "y": round(y, 3), "radius": round(r, 3), "visible": bool(v)}
                for x, y, r, v in self.marks.tolist()
            ],
            "surface_marks": self.identity.moles.round(5).tolist(),
            "head": {"height": self.identity.head_height, "depth": self.identity.head_depth},
            "to_image": self.to_image.round(6).tolist(),
            "face_mask_png": base64.b64encode(png.tobytes()).decode("ascii"),
        }


def render_posed_face(identity: HeadIdentity, view: HeadView, size: int = 128) -> PosedFace:
    """Renders ``identity`` as seen in ``view``, aligned to the FFHQ template at ``size`` px (>= 32)."""
    if size < 32:
        raise ValueError(f"synthetic faces need size >= 32, got {size}")
    rotation = rotation_matrix(view.yaw, view.pitch, view.roll)
    projected = (landmarks_3d(identity, view) @ rotation.T)[:, :2]
    to_image = alignment_transform(projected, size)
    scale = float(np.hypot(*to_image[:, 0]))  # pixels per face unit

    big = size * _SUPERSAMPLE
    coords = (np.arange(big) + 0.5) / _SUPERSAMPLE - 0.5
    px, py = np.meshgrid(coords, coords)
    to_camera = invert_affine(to_image)
    cam_x = to_camera[0, 0] * px + to_camera[0, 1] * py + to_camera[0, 2]
    cam_y = to_camera[1, 0] * px + to_camera[1, 1] * py + to_camera[1, 2]
    # orthographic rays along -z (camera frame), expressed in the head frame
    origins = np.stack([cam_x, cam_y, np.full_like(cam_x, _FAR)], axis=-1) @ rotation
    direction = np.array([0.0, 0.0, -1.0]) @ rotation
    head_centre, head_axes = np.zeros(3), _head_axes(identity)
    nose_centre, nose_axes = _nose_centre(identity), _nose_axes(identity)
    t_head = _ray_ellipsoid(origins, direction, head_centre, head_axes)
    t_nose = _ray_ellipsoid(origins, direction, nose_centre, nose_axes)
    on_nose = t_nose < t_head
    t = np.where(on_nose, t_nose, t_head)
    hit = np.isfinite(t)
    points = origins + np.where(hit, t, 0)[..., None] * direction
    centre = np.where(on_nose[..., None], nose_centre, head_centre)
    axes = np.where(on_nose[..., None], nose_axes, head_axes)
    normals = (points - centre) / axes**2
    normals = normals / np.linalg.norm(normals, axis=-1, keepdims=True).clip(1e-9)
    normals_cam = normals @ rotation.T

    edge = 1.0 / (scale * _SUPERSAMPLE)  # one supersampled pixel, in face units
    colour, skin = _paint_chart(identity, view, points[..., 0], points[..., 1], edge)
    back = points[..., 2] < 0.15 * identity.head_depth  # the back and far sides of the head: hair
    colour = np.where(back[..., None], np.asarray(identity.hair), colour)
    facing = np.clip(normals_cam @ np.asarray(view.light), 0, None)
    shade = (1 - view.light_strength) + 1.4 * view.light_strength * facing
    colour = colour * shade[..., None]

    gradient = np.cos(view.background_angle) * px + np.sin(view.background_angle) * py
    gradient = ((gradient - gradient.min()) / max(1e-9, np.ptp(gradient)))[..., None]
    background = np.asarray(view.background[0]) * (1 - gradient) + np.asarray(view.background[1]) * gradient
    image = np.where(hit[..., None], colour, background)
    image = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    face = (hit & ~back & (skin > 0.5) & (normals_cam[..., 2] > 0.2)).astype(np.float32)
    face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA) > 0.5

    marks = _project_moles(identity, rotation, to_image, points, hit, size)
    return PosedFace(
        identity=identity,
        view=view,
        image=np.clip(np.rint(image * 255), 0, 255).astype(np.uint8),
        face_mask=face.astype(np.uint8) * 255,
        landmarks=projected @ to_image[:, :2].T + to_image[:, 2],
        to_image=to_image,
        marks=marks,
    )


def _project_discs(discs, head_height: float, head_depth: float, rotation, to_image):
    """Image x, y (M, 2), radius in pixels (M,) and facing cosine (M,) of frontal-chart discs (M, 3)."""
    discs = np.asarray(discs, np.float64).reshape(-1, 3)
    xy = discs[:, :2]
    depth = head_depth * np.sqrt(np.clip(1 - xy[:, 0] ** 2 - (xy[:, 1] / head_height) ** 2, 0, None))
    surface = np.concatenate([xy, depth[:, None]], axis=1)
    image_xy = (surface @ rotation.T)[:, :2] @ to_image[:, :2].T + to_image[:, 2]
    normal = surface / np.array([1.0, head_height, head_depth]) ** 2
    cosine = (normal / np.linalg.norm(normal, axis=1, keepdims=True)) @ rotation.T[:, 2]
    radius = discs[:, 2] * float(np.hypot(*to_image[:, 0])) * np.sqrt(np.clip(cosine, 0, 1))
    return image_xy, radius, cosine


def _project_moles(identity, rotation, to_image, points, hit, size) -> np.ndarray:
    """(M, 4) image x, y, radius and visibility of the identity's moles in one view.

    A mole is visible when its surface faces the camera (cosine > 0.3) and the surface rendered at
    its image position is the mole itself (the nose does not hide it).
    """
    image_xy, radius, cosine = _project_discs(
        identity.moles, identity.head_height, identity.head_depth, rotation, to_image
    )
    visible = np.zeros(len(radius), bool)
    for i, ((ix, iy), (mx, my, mr)) in enumerate(zip(image_xy, identity.moles)):
        col, row = int(round((ix + 0.5) * _SUPERSAMPLE - 0.5)), int(round((iy + 0.5) * _SUPERSAMPLE - 0.5))
        if cosine[i] > 0.3 and 0 <= row < size * _SUPERSAMPLE and 0 <= col < size * _SUPERSAMPLE:
            p = points[row, col]
            visible[i] = bool(hit[row, col]) and math.hypot(p[0] - mx, p[1] - my) < mr
    return np.column_stack([image_xy, radius, visible.astype(np.float64)])


def project_marks(surface_marks, sidecar: dict) -> np.ndarray:
    """Where discs on the frontal chart would appear in the photo a sidecar describes.

    Args:
        surface_marks: (M, 3) x, y, radius on the frontal chart (e.g. another person's
            ``sidecar["surface_marks"]``).
        sidecar: a :meth:`PosedFace.sidecar` dict.

    Returns:
        (M, 3) image x, y and radius in pixels; marks turned away from the camera get radius 0.
    """
    rotation = rotation_matrix(**sidecar["pose"])
    to_image = np.asarray(sidecar["to_image"], np.float64)
    head = sidecar["head"]
    image_xy, radius, cosine = _project_discs(
        surface_marks, head["height"], head["depth"], rotation, to_image
    )
    return np.column_stack([image_xy, np.where(cosine > 0.3, radius, 0.0)])


def decode_face_mask(sidecar: dict) -> np.ndarray:
    """The sidecar's face mask as a (size, size) bool array."""
    data = np.frombuffer(base64.b64decode(sidecar["face_mask_png"]), np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError("the sidecar's face_mask_png is not a PNG image")
    return mask > 127
