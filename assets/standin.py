"""A stand-in body model in the SMPL-X npz file format, built procedurally and deterministically.

The licensed SMPL-X files cannot be shipped or downloaded, so the project builds its own model
with the same 10,475 vertices and the same 55-joint skeleton, and loads it through the very same
`smplx.create(folder, model_type='smplx', gender='neutral')` path as the real one.

Geometry: generalized cylinders (rings of super-elliptic cross-sections along spline axes through
the joints) for the torso, neck, limbs, palms, fingers and feet, overlapping at the joints so that
bending leaves no holes, and a star-shaped head (a triangulated sphere mapped to a cranium, face,
jaw, nose, brows, eye sockets and ears) with two eyeballs. Not one watertight surface.

Frame (as the real model): metres, Y up, the body faces +Z, x points to the body's left; T-pose
rest with the palms down; betas 0 gives ~1.70 m, soles at y ~ -1.17, pelvis at y ~ -0.24,
head top at y ~ +0.53.

Shape space: each beta is a named anthropometric knob (height, girth, shoulder width, ...) and
its shape direction is the derivative of this builder with respect to that knob, scaled so one
unit is about one standard deviation of adult variation. Joints are ring centroids (J_regressor
rows average one ring of vertices), so the skeleton follows the shape.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import nnls
from scipy.spatial import ConvexHull

# Bump when the builder's output changes: the cache folder is keyed on it.
STANDIN_VERSION = 1

N_VERTICES = 10475
NUM_JOINTS = 55
# smplx reads columns [0, 300) of shapedirs as shape space and [300, 400) as expression space
# only when there are at least 400 columns; with fewer it caps num_betas at 10 and takes
# expressions from columns 10..19. The stand-in therefore uses the 400-column layout.
SHAPE_SLOTS = 300
EXPRESSION_SLOTS = 100
MAX_BETAS = 20

# --- structural facts: the SMPL-X kinematic tree ----------------------------------------------

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "jaw", "left_eye_smplhf", "right_eye_smplhf",
    "left_index1", "left_index2", "left_index3", "left_middle1", "left_middle2", "left_middle3",
    "left_pinky1", "left_pinky2", "left_pinky3", "left_ring1", "left_ring2", "left_ring3",
    "left_thumb1", "left_thumb2", "left_thumb3",
    "right_index1", "right_index2", "right_index3", "right_middle1", "right_middle2",
    "right_middle3", "right_pinky1", "right_pinky2", "right_pinky3", "right_ring1",
    "right_ring2", "right_ring3", "right_thumb1", "right_thumb2", "right_thumb3",
)
PARENTS = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)
J = {name: i for i, name in enumerate(JOINT_NAMES)}

# What each beta means (one unit ~ one standard deviation).
BETA_NAMES = (
    "height", "weight", "shoulder_width", "hip_width", "head_size", "arm_length", "leg_length",
    "belly", "chest", "neck_length", "torso_length", "arm_girth", "leg_girth", "hand_size",
    "foot_size", "waist", "buttocks", "face_length", "neck_girth", "shoulder_drop",
)

# Vertex indices that smplx hard-codes (vertex_ids['smplx']) for its extra output joints; the
# stand-in puts the matching surface points there so smplx's joints 55..75 mean the same thing.
SMPLX_VERTEX_IDS = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6,
    "rthumb": 8079, "rindex": 7669, "rmiddle": 7794, "rring": 7905, "rpinky": 8022,
    "lthumb": 5361, "lindex": 4933, "lmiddle": 5058, "lring": 5169, "lpinky": 5286,
    "LBigToe": 5770, "LSmallToe": 5780, "LHeel": 8846, "RBigToe": 8463, "RSmallToe": 8474,
    "RHeel": 8635,
}

FILE_NAME = "SMPLX_NEUTRAL.npz"
_FINGERS = ("index", "middle", "pinky", "ring")


def _smooth(x):
    """Smoothstep of x clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


# --- the rest skeleton and the named key points the surfaces hang on ----------------------------

def _base_points() -> dict[str, np.ndarray]:
    """Key points of the neutral body (left side and midline; the right side mirrors)."""
    p = {
        "pelvis": (0.0, -0.24, 0.0), "spine1": (0.0, -0.13, -0.012), "spine2": (0.0, -0.01, -0.006),
        "spine3": (0.0, 0.06, -0.008), "neck": (0.0, 0.26, -0.028), "head": (0.0, 0.36, -0.01),
        "jaw": (0.0, 0.373, 0.018), "left_eye": (0.032, 0.425, 0.0555),
        "head_center": (0.0, 0.425, -0.008),
        "torso_bottom": (0.0, -0.40, 0.004),
        "neck_start": (0.0, 0.19, -0.034), "neck_end": (0.0, 0.405, -0.004),
        "left_hip": (0.082, -0.33, -0.006), "left_knee": (0.094, -0.72, 0.004),
        "left_ankle": (0.10, -1.10, -0.036), "left_leg_start": (0.072, -0.245, -0.004),
        "left_leg_end": (0.10, -1.125, -0.036),
        "left_heel": (0.10, -1.128, -0.072), "left_foot_mid": (0.10, -1.118, -0.022),
        "left_foot": (0.112, -1.147, 0.086), "left_toe": (0.118, -1.153, 0.158),
        "left_collar": (0.075, 0.215, -0.02), "left_shoulder": (0.18, 0.205, -0.025),
        "left_elbow": (0.44, 0.20, -0.034), "left_wrist": (0.685, 0.198, -0.026),
        "left_arm_end": (0.697, 0.198, -0.026),
        "left_palm_start": (0.672, 0.198, -0.026), "left_knuckles": (0.772, 0.196, -0.022),
        "left_palm_end": (0.784, 0.196, -0.022),
    }
    p = {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}
    # Fingers: MCP positions, direction and phalanx lengths (proximal, middle, distal).
    fingers = {
        "index": ((0.772, 0.197, 0.006), (1.0, -0.02, 0.07), (0.040, 0.024, 0.022)),
        "middle": ((0.778, 0.197, -0.014), (1.0, -0.02, 0.0), (0.045, 0.028, 0.024)),
        "ring": ((0.772, 0.197, -0.033), (1.0, -0.02, -0.05), (0.042, 0.026, 0.023)),
        "pinky": ((0.762, 0.196, -0.050), (1.0, -0.02, -0.11), (0.032, 0.020, 0.020)),
    }
    for name, (mcp, d, lens) in fingers.items():
        d = _unit(np.asarray(d, dtype=np.float64))
        q = np.asarray(mcp, dtype=np.float64)
        p[f"left_{name}_base"] = q - 0.014 * d
        p[f"left_{name}1"] = q
        p[f"left_{name}2"] = q + lens[0] * d
        p[f"left_{name}3"] = q + (lens[0] + lens[1]) * d
        p[f"left_{name}_end"] = q + (lens[0] + lens[1] + lens[2] - 0.0075) * d
    # The thumb leaves the palm forwards (+z) and outwards, a little below the palm plane.
    t1 = np.array([0.708, 0.187, 0.010])
    d1 = _unit(np.array([0.75, -0.22, 0.62]))
    d2 = _unit(np.array([0.90, -0.15, 0.40]))
    p["left_thumb_base"] = t1 - 0.012 * d1
    p["left_thumb1"] = t1
    p["left_thumb2"] = t1 + 0.040 * d1
    p["left_thumb3"] = p["left_thumb2"] + 0.030 * d2
    p["left_thumb_end"] = p["left_thumb3"] + (0.026 - 0.0085) * d2
    return p


def _mirror_name(name: str) -> str:
    return "right" + name[4:] if name.startswith("left") else name


# --- tubes -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tube:
    """A generalized cylinder along a spline through named key points (left side or midline).

    radii columns: +e1, -e1, +e2, -e2 where e1 is `ref` made perpendicular to the axis and
    e2 = axis x e1. Profiles are given at positions u along the keys (key k at u = k)."""
    name: str
    keys: tuple[str, ...]
    seg_rings: tuple[int, ...]
    n_around: int
    ref: tuple[float, float, float]
    profile: tuple[tuple[float, ...], ...]       # (u, r+e1, r-e1, r+e2, r-e2, exponent)
    chain: tuple[tuple[str, float], ...]         # (joint, blend half-width in m) per key
    cap_start: int = 0                          # rounded cap rings (-1: flat pole, 0: open)
    cap_end: int = 0
    cap_len: tuple[float, float] = (1.0, 1.0)    # cap lengths as fractions of the end radius
    joint_rings: tuple[tuple[str, int], ...] = ()    # joint -> key index whose ring regresses it
    scale_group: str = ""


def _tubes() -> tuple[_Tube, ...]:
    """The tube parts. Left-side parts are mirrored to the right later."""
    torso = _Tube(
        "torso", ("torso_bottom", "pelvis", "spine1", "spine2", "spine3", "neck"),
        (5, 5, 6, 4, 15), 48, (0.0, 0.0, 1.0),
        (
            (0.00, 0.045, 0.060, 0.075, 0.075, 2.2),
            (0.45, 0.080, 0.112, 0.168, 0.168, 2.4),
            (1.00, 0.092, 0.110, 0.168, 0.168, 2.4),
            (1.50, 0.098, 0.094, 0.158, 0.158, 2.4),
            (2.00, 0.100, 0.084, 0.148, 0.148, 2.4),
            (2.50, 0.097, 0.081, 0.138, 0.138, 2.4),
            (3.00, 0.098, 0.084, 0.143, 0.143, 2.4),
            (3.50, 0.106, 0.091, 0.153, 0.153, 2.5),
            (4.00, 0.113, 0.097, 0.158, 0.158, 2.6),
            (4.25, 0.113, 0.101, 0.160, 0.160, 2.6),
            (4.50, 0.101, 0.100, 0.162, 0.162, 2.5),
            (4.70, 0.085, 0.091, 0.160, 0.160, 2.4),
            (4.85, 0.068, 0.078, 0.145, 0.145, 2.3),
            (5.00, 0.052, 0.064, 0.108, 0.108, 2.2),
        ),
        (("pelvis", 0.0), ("pelvis", 0.035), ("spine1", 0.04), ("spine2", 0.035),
         ("spine3", 0.045), ("neck", 0.02)),
        cap_start=3, cap_end=2, cap_len=(0.45, 0.6),
        joint_rings=(("pelvis", 1), ("spine1", 2), ("spine2", 3), ("spine3", 4)),
        scale_group="torso",
    )
    neck = _Tube(
        "neck", ("neck_start", "neck", "head", "neck_end"), (3, 6, 4), 28, (0.0, 0.0, 1.0),
        (
            (0.0, 0.062, 0.070, 0.076, 0.076, 2.0),
            (1.0, 0.057, 0.062, 0.064, 0.064, 2.0),
            (2.0, 0.053, 0.056, 0.058, 0.058, 2.0),
            (3.0, 0.045, 0.050, 0.052, 0.052, 2.0),
        ),
        (("spine3", 0.0), ("neck", 0.03), ("head", 0.025), ("head", 0.0)),
        cap_start=-1, cap_end=-1,
        joint_rings=(("neck", 1), ("head", 2)),
        scale_group="neck",
    )
    arm = _Tube(
        "left_arm", ("left_collar", "left_shoulder", "left_elbow", "left_wrist", "left_arm_end"),
        (3, 13, 12, 1), 24, (0.0, 1.0, 0.0),
        (   # +e1 up, -e1 down, +e2 front, -e2 back
            (0.00, 0.040, 0.050, 0.050, 0.050, 2.0),
            (0.60, 0.042, 0.056, 0.056, 0.056, 2.0),
            (1.00, 0.047, 0.050, 0.054, 0.054, 2.0),
            (1.25, 0.048, 0.045, 0.049, 0.049, 2.0),
            (1.60, 0.043, 0.042, 0.043, 0.043, 2.0),
            (1.90, 0.038, 0.036, 0.036, 0.037, 2.0),
            (2.00, 0.037, 0.035, 0.034, 0.036, 2.0),
            (2.25, 0.040, 0.038, 0.038, 0.039, 2.1),
            (2.60, 0.032, 0.030, 0.034, 0.033, 2.2),
            (3.00, 0.021, 0.020, 0.029, 0.028, 2.4),
            (4.00, 0.019, 0.018, 0.027, 0.026, 2.4),
        ),
        (("left_collar", 0.03), ("left_shoulder", 0.055), ("left_elbow", 0.035),
         ("left_wrist", 0.012), ("left_wrist", 0.0)),
        cap_start=-1, cap_end=2,
        joint_rings=(("left_collar", 0), ("left_shoulder", 1), ("left_elbow", 2),
                     ("left_wrist", 3)),
        scale_group="arm",
    )
    palm = _Tube(
        "left_palm", ("left_palm_start", "left_wrist", "left_knuckles", "left_palm_end"),
        (1, 8, 1), 16, (0.0, 1.0, 0.0),
        (   # +e1 back of the hand, -e1 palm, +e2 thumb side (front), -e2 little-finger side
            (0.0, 0.017, 0.017, 0.025, 0.025, 2.4),
            (1.0, 0.017, 0.016, 0.028, 0.028, 2.5),
            (1.5, 0.016, 0.016, 0.036, 0.036, 2.8),
            (2.0, 0.0125, 0.012, 0.039, 0.038, 3.0),
            (3.0, 0.0105, 0.010, 0.035, 0.034, 2.8),
        ),
        (("left_elbow", 0.0), ("left_wrist", 0.012), ("left_wrist", 0.0), ("left_wrist", 0.0)),
        cap_start=-1, cap_end=2, cap_len=(1.0, 0.5),
        scale_group="hand",
    )
    fingers = []
    for name in _FINGERS:
        r0 = 0.0082 if name == "pinky" else 0.0095
        fingers.append(_Tube(
            f"left_{name}",
            (f"left_{name}_base", f"left_{name}1", f"left_{name}2", f"left_{name}3",
             f"left_{name}_end"),
            (1, 5, 3, 3), 8, (0.0, 1.0, 0.0),
            (
                (0.0, r0 * 1.05, r0 * 1.05, r0 * 1.1, r0 * 1.1, 2.2),
                (1.0, r0, r0, r0 * 1.02, r0 * 1.02, 2.2),
                (2.0, r0 * 0.90, r0 * 0.88, r0 * 0.92, r0 * 0.92, 2.2),
                (3.0, r0 * 0.80, r0 * 0.78, r0 * 0.82, r0 * 0.82, 2.2),
                (4.0, r0 * 0.72, r0 * 0.68, r0 * 0.76, r0 * 0.76, 2.2),
            ),
            (("left_wrist", 0.0), (f"left_{name}1", 0.006), (f"left_{name}2", 0.005),
             (f"left_{name}3", 0.004), (f"left_{name}3", 0.0)),
            cap_start=-1, cap_end=2,
            joint_rings=((f"left_{name}1", 1), (f"left_{name}2", 2), (f"left_{name}3", 3)),
            scale_group="hand",
        ))
    thumb = _Tube(
        "left_thumb", ("left_thumb_base", "left_thumb1", "left_thumb2", "left_thumb3",
                       "left_thumb_end"),
        (1, 5, 4, 3), 8, (0.0, 1.0, 0.0),
        (
            (0.0, 0.015, 0.015, 0.016, 0.016, 2.2),
            (1.0, 0.015, 0.014, 0.016, 0.016, 2.2),
            (2.0, 0.0110, 0.0105, 0.0120, 0.0120, 2.2),
            (3.0, 0.0092, 0.0090, 0.0100, 0.0100, 2.2),
            (4.0, 0.0082, 0.0078, 0.0090, 0.0090, 2.2),
        ),
        (("left_wrist", 0.0), ("left_thumb1", 0.008), ("left_thumb2", 0.007),
         ("left_thumb3", 0.005), ("left_thumb3", 0.0)),
        cap_start=-1, cap_end=2,
        joint_rings=(("left_thumb1", 1), ("left_thumb2", 2), ("left_thumb3", 3)),
        scale_group="hand",
    )
    leg = _Tube(
        "left_leg", ("left_leg_start", "left_hip", "left_knee", "left_ankle", "left_leg_end"),
        (3, 15, 14, 1), 22, (0.0, 0.0, 1.0),
        (   # +e1 front, -e1 back, +e2 medial (-x), -e2 lateral (+x)
            (0.00, 0.066, 0.070, 0.062, 0.066, 2.0),
            (1.00, 0.085, 0.094, 0.076, 0.086, 2.0),
            (1.25, 0.082, 0.088, 0.074, 0.084, 2.0),
            (1.60, 0.072, 0.074, 0.064, 0.070, 2.0),
            (1.90, 0.058, 0.058, 0.052, 0.055, 2.0),
            (2.00, 0.053, 0.049, 0.047, 0.048, 2.0),
            (2.20, 0.048, 0.057, 0.047, 0.050, 2.0),
            (2.40, 0.045, 0.058, 0.045, 0.047, 2.0),
            (2.70, 0.037, 0.045, 0.036, 0.038, 2.0),
            (3.00, 0.032, 0.034, 0.033, 0.034, 2.0),
            (4.00, 0.030, 0.031, 0.031, 0.032, 2.0),
        ),
        (("pelvis", 0.0), ("left_hip", 0.05), ("left_knee", 0.045), ("left_ankle", 0.03),
         ("left_ankle", 0.0)),
        cap_start=-1, cap_end=2,
        joint_rings=(("left_hip", 1), ("left_knee", 2), ("left_ankle", 3)),
        scale_group="leg",
    )
    foot = _Tube(
        "left_foot", ("left_heel", "left_foot_mid", "left_foot", "left_toe"),
        (3, 6, 4), 16, (0.0, 1.0, 0.0),
        (   # +e1 up, -e1 sole, +e2 medial (-x), -e2 lateral (+x)
            (0.0, 0.034, 0.038, 0.030, 0.030, 2.4),
            (1.0, 0.048, 0.046, 0.036, 0.037, 2.6),
            (1.5, 0.036, 0.032, 0.042, 0.041, 2.8),
            (2.0, 0.022, 0.022, 0.047, 0.044, 3.0),
            (3.0, 0.015, 0.014, 0.040, 0.035, 2.8),
        ),
        (("left_ankle", 0.0), ("left_ankle", 0.0), ("left_foot", 0.012), ("left_foot", 0.0)),
        cap_start=2, cap_end=2,
        joint_rings=(("left_foot", 2),),
        scale_group="foot",
    )
    return (torso, neck, arm, palm, *fingers, thumb, leg, foot)


def _spline_basis(knots: np.ndarray, u: np.ndarray, nu: int = 0) -> np.ndarray:
    """Matrix M (len(u), len(knots)) with M @ values = cubic spline through (knots, values)."""
    if len(knots) < 3:
        # Too few knots for a cubic: piecewise linear.
        eye = np.eye(len(knots))
        if nu == 0:
            return np.stack([np.interp(u, knots, e) for e in eye], axis=1)
        return np.stack([np.gradient(np.interp(u, knots, e), u) for e in eye], axis=1)
    cs = CubicSpline(knots, np.eye(len(knots)), bc_type="natural")
    return cs(u, nu)


class _TubeLayout:
    """Topology-fixed facts of one tube: ring positions, spline bases, faces, ring vertex ids."""

    def __init__(self, t: _Tube):
        self.t = t
        u = np.concatenate([k + np.arange(n) / n for k, n in enumerate(t.seg_rings)]
                           + [[float(len(t.seg_rings))]])
        self.u = u
        keys_u = np.arange(len(t.keys), dtype=np.float64)
        self.center_basis = _spline_basis(keys_u, u)
        self.tangent_basis = _spline_basis(keys_u, u, 1)
        prof = np.asarray(t.profile, dtype=np.float64)
        self.profile_u = prof[:, 0]
        self.profile_vals = prof[:, 1:]
        self.radius_basis = _spline_basis(self.profile_u, u)
        self.n_main = len(u)
        self.n_cs = max(t.cap_start, 0)
        self.n_ce = max(t.cap_end, 0)
        self.pole_s = t.cap_start != 0
        self.pole_e = t.cap_end != 0
        n = t.n_around
        self.n_rings = self.n_cs + self.n_main + self.n_ce
        self.n_verts = self.n_rings * n + int(self.pole_s) + int(self.pole_e)
        # Faces: quads between consecutive rings, fans to the poles.
        first = int(self.pole_s)
        r = np.arange(self.n_rings - 1)[:, None]
        k = np.arange(n)[None, :]
        a = first + r * n + k
        b = first + r * n + (k + 1) % n
        c = b + n
        d = a + n
        quads = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                                np.stack([a, c, d], -1).reshape(-1, 3)])
        faces = [quads]
        kk = np.arange(n)
        if self.pole_s:
            faces.append(np.stack([np.zeros(n, int), first + (kk + 1) % n, first + kk], -1))
        if self.pole_e:
            last = first + (self.n_rings - 1) * n
            pe = self.n_verts - 1
            faces.append(np.stack([np.full(n, pe), last + kk, last + (kk + 1) % n], -1))
        self.faces = np.concatenate(faces).astype(np.int64)
        # Vertex ids of the main ring sitting on key k.
        self.key_ring = {}
        for kidx in range(len(t.keys)):
            ring = self.n_cs + int(np.argmin(np.abs(u - kidx)))
            self.key_ring[kidx] = first + ring * n + np.arange(n)
        # Per-vertex ring position (main-ring index space, caps beyond the ends) for skinning.
        ring_u = np.concatenate([np.full(self.n_cs, u[0]), u, np.full(self.n_ce, u[-1])])
        vu = np.repeat(ring_u, n)
        if self.pole_s:
            vu = np.concatenate([[u[0]], vu])
        if self.pole_e:
            vu = np.concatenate([vu, [u[-1]]])
        self.vertex_u = vu
        # Cap ring fractional positions (0 at the end ring, 1 at the pole).
        self.cap_frac_s = np.arange(self.n_cs, 0, -1) / (self.n_cs + 1)
        self.cap_frac_e = np.arange(1, self.n_ce + 1) / (self.n_ce + 1)

    def vertices(self, keys: np.ndarray, profile_vals: np.ndarray) -> np.ndarray:
        """Vertices (n_verts, 3) for key points (K,3) and profile values (P,5)."""
        t = self.t
        n = t.n_around
        centers = self.center_basis @ keys
        tang = _unit(self.tangent_basis @ keys)
        vals = self.radius_basis @ profile_vals
        radii = np.maximum(vals[:, :4], 1e-4)
        expo = vals[:, 4]
        ref = np.asarray(t.ref, dtype=np.float64)
        e1 = _unit(ref - (tang @ ref)[:, None] * tang)
        e2 = np.cross(tang, e1)
        th = 2.0 * np.pi * np.arange(n) / n
        cs, sn = np.cos(th), np.sin(th)

        def ring(cen, e1_, e2_, rad, ex):
            pw = 2.0 / ex[:, None]
            gc = np.sign(cs) * np.abs(cs) ** pw
            gs = np.sign(sn) * np.abs(sn) ** pw
            r1 = np.where(cs >= 0, rad[:, :1], rad[:, 1:2])
            r2 = np.where(sn >= 0, rad[:, 2:3], rad[:, 3:4])
            return (cen[:, None] + (r1 * gc)[..., None] * e1_[:, None]
                    + (r2 * gs)[..., None] * e2_[:, None])

        main = ring(centers, e1, e2, radii, expo)
        parts = []
        mean_r_s = radii[0].mean() * t.cap_len[0]
        mean_r_e = radii[-1].mean() * t.cap_len[1]
        if self.n_cs:
            phi = self.cap_frac_s * np.pi / 2
            cen = centers[0] - tang[0] * (mean_r_s * np.sin(phi))[:, None]
            rad = radii[0][None] * np.cos(phi)[:, None]
            parts.append(ring(cen, np.repeat(e1[:1], len(phi), 0), np.repeat(e2[:1], len(phi), 0),
                              rad, np.full(len(phi), expo[0])))
        parts.append(main)
        if self.n_ce:
            phi = self.cap_frac_e * np.pi / 2
            cen = centers[-1] + tang[-1] * (mean_r_e * np.sin(phi))[:, None]
            rad = radii[-1][None] * np.cos(phi)[:, None]
            parts.append(ring(cen, np.repeat(e1[-1:], len(phi), 0),
                              np.repeat(e2[-1:], len(phi), 0), rad, np.full(len(phi), expo[-1])))
        v = np.concatenate(parts).reshape(-1, 3)
        out = [v]
        if self.pole_s:
            ps = centers[0] - tang[0] * (mean_r_s if self.n_cs else 0.0)
            out.insert(0, ps[None])
        if self.pole_e:
            pe = centers[-1] + tang[-1] * (mean_r_e if self.n_ce else 0.0)
            out.append(pe[None])
        return np.concatenate(out)

    def arc_length(self, keys: np.ndarray) -> np.ndarray:
        """Arc length along the axis at each main ring."""
        c = self.center_basis @ keys
        return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])


# --- the head ----------------------------------------------------------------------------------

def _fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly uniform unit vectors; poles along +-y."""
    i = np.arange(n) + 0.5
    y = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - y * y)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    return np.stack([r * np.sin(phi), y, r * np.cos(phi)], axis=1)


def _sphere_faces(d: np.ndarray) -> np.ndarray:
    """Outward-facing triangles of a unit-sphere point set (its convex hull)."""
    f = ConvexHull(d).simplices.astype(np.int64)
    a, b, c = d[f[:, 0]], d[f[:, 1]], d[f[:, 2]]
    flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
    f[flip] = f[flip][:, ::-1]
    # Canonical order (smallest index first, winding kept; rows sorted) so the file does not
    # depend on the order in which qhull lists its facets.
    shift = np.argmin(f, axis=1)
    f = np.take_along_axis(f, (shift[:, None] + np.arange(3)[None, :]) % 3, axis=1)
    return f[np.lexsort((f[:, 2], f[:, 1], f[:, 0]))]


# Head parts in the head-centre frame (metres; eyes at y = 0, +z forward): centre, semi-axes,
# tilt about x (degrees, positive turns the lower end forward), group ("skull" scales with head
# size only, "face" also with face length / jaw width, "ear" mirrored to both sides).
_HEAD_PARTS = (
    ("skull", (0.0, 0.010, -0.012), (0.0745, 0.096, 0.098), 0.0),
    ("skull", (0.028, 0.035, -0.022), (0.048, 0.068, 0.080), 0.0),        # parietal fullness
    ("skull", (-0.028, 0.035, -0.022), (0.048, 0.068, 0.080), 0.0),
    ("face", (0.0, -0.047, 0.014), (0.060, 0.080, 0.075), 0.0),
    ("face", (0.034, -0.050, 0.045), (0.030, 0.030, 0.025), 0.0),          # cheeks
    ("face", (-0.034, -0.050, 0.045), (0.030, 0.030, 0.025), 0.0),
    ("face", (0.0, -0.068, -0.010), (0.060, 0.038, 0.050), 0.0),           # jaw angles
    ("face", (0.040, -0.022, 0.038), (0.024, 0.017, 0.032), 0.0),          # cheekbones
    ("face", (-0.040, -0.022, 0.038), (0.024, 0.017, 0.032), 0.0),
    ("face", (0.0, 0.017, 0.060), (0.056, 0.018, 0.024), 0.0),             # brow ridge
    ("face", (0.032, 0.0045, 0.066), (0.016, 0.008, 0.010), 0.0),          # upper eyelids
    ("face", (-0.032, 0.0045, 0.066), (0.016, 0.008, 0.010), 0.0),
    ("face", (0.032, -0.008, 0.064), (0.015, 0.005, 0.009), 0.0),          # lower eyelids
    ("face", (-0.032, -0.008, 0.064), (0.015, 0.005, 0.009), 0.0),
    ("face", (0.0, -0.027, 0.087), (0.009, 0.030, 0.016), 25.0),           # nose ridge
    ("face", (0.0, -0.050, 0.102), (0.011, 0.010, 0.012), 0.0),            # nose tip
    ("face", (0.010, -0.054, 0.093), (0.008, 0.007, 0.010), 0.0),          # nostril wings
    ("face", (-0.010, -0.054, 0.093), (0.008, 0.007, 0.010), 0.0),
    ("face", (0.0, -0.079, 0.077), (0.024, 0.009, 0.013), 0.0),            # upper lip
    ("face", (0.0, -0.093, 0.073), (0.021, 0.008, 0.012), 0.0),            # lower lip
    ("face", (0.0, -0.111, 0.062), (0.027, 0.019, 0.019), 0.0),            # chin
    ("ear", (0.070, -0.004, -0.014), (0.013, 0.030, 0.019), -12.0),
    ("ear", (-0.070, -0.004, -0.014), (0.013, 0.030, 0.019), -12.0),
)
_HEAD_BLEND = 0.0035     # soft-union length scale (m)
_HEAD_SMOOTH = 2         # radius smoothing passes over the head mesh


def _head_dirs(n: int) -> np.ndarray:
    """n unit vectors, nearly uniform but about twice as dense on the face (+z) as behind."""
    d = _fibonacci_sphere(n)
    th = np.arccos(np.clip(d[:, 2], -1.0, 1.0))
    th2 = th - 0.33 * np.sin(th)
    axis = _unit(d[:, :2] + 1e-12)
    return np.column_stack([np.sin(th2)[:, None] * axis, np.cos(th2)])


def _head_smoother(faces: np.ndarray, n: int):
    """Row-normalised vertex adjacency of the head mesh (sparse), for smoothing the radius."""
    from scipy.sparse import coo_matrix
    i = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]] * 2)
    j = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0],
                        faces[:, 2], faces[:, 0], faces[:, 1]])
    A = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    A.data[:] = 1.0
    deg = np.asarray(A.sum(axis=1)).ravel()
    return (A.multiply(1.0 / deg[:, None])).tocsr()


def _head_surface(d: np.ndarray, center: np.ndarray, knobs: dict[str, float],
                  smoother=None) -> np.ndarray:
    """Map unit directions from the head centre to the head surface (world frame): the soft
    union of the parts' ellipsoids as seen along each ray, then shallow eye sockets."""
    rs = []
    for group, c, A, tilt in _HEAD_PARTS:
        c = np.array(c, dtype=np.float64)
        A = np.array(A, dtype=np.float64)
        if group == "face":
            c[1] = c[1] * knobs["face_length"] if c[1] < 0 else c[1]
            A[0] *= knobs["jaw_width"] if c[1] < -0.06 else 1.0
        t = np.radians(tilt)
        R = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])
        q0 = (R.T @ -c) / A
        q1 = (d @ R) / A
        a = np.einsum("ij,ij->i", q1, q1)
        bq = q1 @ q0
        disc = bq * bq - a * (q0 @ q0 - 1.0)
        rs.append(np.where(disc > 0, (-bq + np.sqrt(np.maximum(disc, 0.0))) / a, 0.0))
    rs = np.maximum(np.stack(rs), 0.0)
    m = rs.max(axis=0)
    r = m + _HEAD_BLEND * np.log(np.exp((rs - m) / _HEAD_BLEND).sum(axis=0))
    if smoother is not None:
        for _ in range(_HEAD_SMOOTH):
            r = 0.5 * r + 0.5 * (smoother @ r)
    p = d * r[:, None]
    facing = _smooth((d[:, 2] - 0.45) / 0.3)
    sock = sum(np.exp(-((p[:, 0] - sx * 0.032) / 0.014) ** 2 - ((p[:, 1] + 0.0005) / 0.0075) ** 2)
               for sx in (-1.0, 1.0))
    p = p - d * (0.005 * facing * sock)[:, None]
    return center[None] + knobs["head_scale"] * p


# --- shape knobs -------------------------------------------------------------------------------

def _design(beta: np.ndarray) -> tuple[dict, dict, dict]:
    """Key points, per-tube profile values and head knobs for a knob vector (std units)."""
    b = np.zeros(MAX_BETAS)
    b[:len(beta)] = beta
    (_height, weight, shoulder_w, hip_w, head_size, arm_len, leg_len, belly, chest, neck_len,
     torso_len, arm_girth, leg_girth, hand_size, foot_size, waist, butt, face_len, neck_girth,
     shoulder_drop) = b
    pts = _base_points()
    left_names = [k for k in pts if k.startswith("left")]

    def move(names, fn):
        for k in names:
            pts[k] = fn(pts[k])

    hand_names = [k for k in left_names if any(s in k for s in
                  ("palm", "knuckles", "index", "middle", "ring", "pinky", "thumb"))]
    foot_names = ["left_heel", "left_foot_mid", "left_foot", "left_toe"]
    head_names = ["head", "jaw", "left_eye", "head_center", "neck_end"]
    arm_names = ["left_shoulder", "left_elbow", "left_wrist", "left_arm_end"] + hand_names
    # Hand and foot size: scale about the wrist / ankle.
    wr = pts["left_wrist"].copy()
    move(hand_names, lambda q: wr + (q - wr) * (1 + 0.055 * hand_size))
    an = pts["left_ankle"].copy()
    move(foot_names, lambda q: an + (q - an) * (1 + 0.055 * foot_size))
    # Arm length: the elbow and wrist slide out along the arm, the hand follows the wrist.
    sh = pts["left_shoulder"].copy()
    el0, wr0 = pts["left_elbow"].copy(), pts["left_wrist"].copy()
    a = 0.045 * arm_len
    pts["left_elbow"] = sh + (el0 - sh) * (1 + a)
    shift = sh + (wr0 - sh) * (1 + a) - wr0
    move([k for k in arm_names if k not in ("left_shoulder", "left_elbow")], lambda q: q + shift)
    # Leg length: knee and ankle slide down from the hip, the foot follows the ankle.
    hp = pts["left_hip"].copy()
    kn0, an0 = pts["left_knee"].copy(), pts["left_ankle"].copy()
    a = 0.045 * leg_len
    pts["left_knee"] = hp + (kn0 - hp) * (1 + a)
    shift = hp + (an0 - hp) * (1 + a) - an0
    move(["left_ankle", "left_leg_end"] + foot_names, lambda q: q + shift)
    # Hip width: the legs move apart.
    dx = np.array([0.008 * hip_w + 0.003 * weight, 0.0, 0.0])
    move(["left_hip", "left_knee", "left_ankle", "left_leg_start", "left_leg_end"] + foot_names,
         lambda q: q + dx)
    # Shoulder width and drop: the arm chain moves out / down.
    dsh = np.array([0.016 * shoulder_w + 0.004 * weight, -0.012 * shoulder_drop, 0.0])
    move(arm_names, lambda q: q + dsh)
    move(["left_collar"], lambda q: q + 0.3 * dsh)
    # Head size: scale the head about the head joint; neck length lifts it.
    hd = pts["head"].copy()
    move(["jaw", "left_eye", "head_center"], lambda q: hd + (q - hd) * (1 + 0.035 * head_size))
    dn = np.array([0.0, 0.013 * neck_len, 0.0])
    move(head_names, lambda q: q + dn)
    # Torso length: stretch everything above the pelvis, the spine proportionally.
    yp = pts["pelvis"][1]
    yn = pts["neck"][1]
    a = 0.035 * torso_len
    for k in list(pts):
        y = pts[k][1]
        if y > yp and not k.startswith(("left_leg_start",)):
            dy = (min(y, yn) - yp) * a
            pts[k] = pts[k] + np.array([0.0, dy, 0.0])
    # Mirror the left side.
    for k in [k for k in pts if k.startswith("left")]:
        pts[_mirror_name(k)] = pts[k] * np.array([-1.0, 1.0, 1.0])

    # Profiles.
    profiles = {}
    girth = {
        "torso": 1 + 0.085 * weight, "neck": 1 + 0.05 * weight + 0.07 * neck_girth,
        "arm": 1 + 0.07 * weight + 0.08 * arm_girth, "leg": 1 + 0.07 * weight + 0.08 * leg_girth,
        "hand": (1 + 0.055 * hand_size) * (1 + 0.02 * weight), "foot": 1 + 0.055 * foot_size,
    }
    for t in _tubes():
        v = np.asarray(t.profile, dtype=np.float64)[:, 1:].copy()
        u = np.asarray(t.profile, dtype=np.float64)[:, 0]
        v[:, :4] *= girth[t.scale_group]
        if t.name == "torso":
            bump = lambda c, w: np.exp(-((u - c) / w) ** 2)
            v[:, 0] += 0.016 * belly * bump(2.1, 0.5) + 0.006 * weight * bump(2.2, 0.6)
            v[:, 0] += 0.010 * chest * bump(4.1, 0.35)
            v[:, 2:4] += 0.006 * chest * bump(4.2, 0.4)[:, None]
            v[:, 2:4] += 0.012 * waist * bump(2.6, 0.45)[:, None]
            v[:, 1] += 0.014 * butt * bump(0.6, 0.35)
            v[:, 2:4] += (0.013 * hip_w * bump(0.7, 0.5))[:, None]
            v[:, 2:4] += (0.014 * shoulder_w * bump(4.6, 0.25))[:, None]
        profiles[t.name] = v
    head = {
        "head_scale": 1 + 0.035 * head_size,
        "face_length": 1 + 0.06 * face_len,
        "jaw_width": 1 + 0.04 * weight - 0.03 * face_len,
    }
    return pts, profiles, head


# --- assembly ----------------------------------------------------------------------------------

_EYE_RINGS = 7
_EYE_AROUND = 12
_EYE_RADIUS = 0.0125


@functools.lru_cache(maxsize=1)
def _layout():
    """Everything topology-fixed: part order, vertex ranges, faces, head directions."""
    tubes = _tubes()
    left = [t for t in tubes if t.name.startswith("left")]
    mid = [t for t in tubes if not t.name.startswith("left")]
    layouts = {t.name: _TubeLayout(t) for t in tubes}
    eye = _TubeLayout(_Tube("eye", ("a", "b"), (_EYE_RINGS - 1,), _EYE_AROUND, (0.0, 1.0, 0.0),
                            ((0.0, 1, 1, 1, 1, 2), (1.0, 1, 1, 1, 1, 2)), (("x", 0.0), ("x", 0.0)),
                            cap_start=-1, cap_end=-1))
    n_tube = (sum(layouts[t.name].n_verts for t in mid)
              + 2 * sum(layouts[t.name].n_verts for t in left))
    n_eye = 2 * eye.n_verts
    n_head = N_VERTICES - n_tube - n_eye
    dirs = _head_dirs(n_head)
    head_faces = _sphere_faces(dirs)
    # Order: torso, neck, head, eyes L/R, then each left part followed by its mirror.
    order = [("torso", "C"), ("neck", "C"), ("head", "C"), ("eye", "L"), ("eye", "R")]
    for t in left:
        order += [(t.name, "L"), (t.name, "R")]
    offsets, faces, start = {}, [], 0
    for name, side in order:
        if name == "head":
            nv, f = n_head, head_faces
        elif name == "eye":
            nv, f = eye.n_verts, eye.faces
        else:
            nv, f = layouts[name].n_verts, layouts[name].faces
        if side == "R":
            f = f[:, ::-1]      # mirroring flips the winding
        offsets[(name, side)] = (start, start + nv)
        faces.append(f + start)
        start += nv
    assert start == N_VERTICES, start
    return {"tubes": tubes, "layouts": layouts, "eye": eye, "dirs": dirs, "order": order,
            "offsets": offsets, "faces": np.concatenate(faces), "n_head": n_head,
            "smoother": _head_smoother(head_faces, n_head)}


def _geometry(beta: np.ndarray) -> np.ndarray:
    """Vertices (V,3) in build order for knob vector beta (std units)."""
    L = _layout()
    pts, profiles, head = _design(beta)
    out = np.zeros((N_VERTICES, 3))
    for (name, side), (a, b) in L["offsets"].items():
        if name == "head":
            out[a:b] = _head_surface(L["dirs"], pts["head_center"], head, L["smoother"])
        elif name == "eye":
            c = pts["left_eye"]
            r = _EYE_RADIUS * head["head_scale"]
            # A UV sphere along z (back pole first), its middle ring on the equator.
            phi = np.arange(1, _EYE_RINGS + 1) / (_EYE_RINGS + 1) * np.pi
            th = 2.0 * np.pi * np.arange(_EYE_AROUND) / _EYE_AROUND
            sp, cp = np.sin(phi)[:, None], np.cos(phi)[:, None]
            ring = np.stack(np.broadcast_arrays(sp * np.cos(th), sp * np.sin(th), -cp), -1)
            v = np.concatenate([[[0.0, 0.0, -1.0]], ring.reshape(-1, 3), [[0.0, 0.0, 1.0]]])
            out[a:b] = (c + r * v) * (np.array([-1.0, 1.0, 1.0]) if side == "R" else 1.0)
        else:
            lay = L["layouts"][name]
            keys = np.stack([pts[k] for k in lay.t.keys])
            v = lay.vertices(keys, profiles[name])
            if side == "R":
                v = v * np.array([-1.0, 1.0, 1.0])
            out[a:b] = v
    # Height: a uniform scale about the origin (as SMPL's first beta roughly does).
    return out * (1.0 + 0.041 * (beta[0] if len(beta) else 0.0))


# --- skinning, regressor, scalp, landmarks -------------------------------------------------------

def _chain_weights(s: np.ndarray, key_s: np.ndarray, chain, side: str) -> np.ndarray:
    """Blend weights along a tube: owner k holds the axis from key k to key k+1, with smooth
    ramps of the given half-width centred on each key."""
    W = np.zeros((len(s), NUM_JOINTS))
    steps = [np.ones_like(s)]
    for k in range(1, len(chain)):
        h = chain[k][1]
        if h <= 0:
            steps.append((s >= key_s[k]).astype(np.float64))
        else:
            steps.append(_smooth((s - key_s[k] + h) / (2 * h)))
    steps.append(np.zeros_like(s))
    for k, (joint, _) in enumerate(chain):
        name = _mirror_name(joint) if side == "R" else joint
        W[:, J[name]] += np.clip(steps[k] - steps[k + 1], 0.0, None)
    return W / W.sum(axis=1, keepdims=True)


def _head_local(d: np.ndarray):
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    return dx, dy, dz, np.arctan2(dx, dz)


def _standin_scalp(d: np.ndarray) -> np.ndarray:
    """Hair-bearing directions of the head: above a hairline that runs high over the forehead,
    above the ears on the sides and down to the nape at the back; ears excluded."""
    dx, dy, dz, az = _head_local(d)
    a = np.abs(az)
    line = np.interp(a, [0.0, 0.6, 1.1, 1.45, 1.75, 2.2, 2.7, np.pi],
                     [0.50, 0.44, 0.32, 0.36, 0.30, -0.05, -0.32, -0.40])
    ear = (np.abs(dx) > 0.8) & (np.abs(dy) < 0.35) & (dz < 0.25) & (dz > -0.45)
    return (dy > line) & ~ear


def _head_weights(d: np.ndarray, v: np.ndarray, center: np.ndarray) -> np.ndarray:
    W = np.zeros((len(d), NUM_JOINTS))
    y = v[:, 1] - center[1]
    dz = d[:, 2]
    w_jaw = _smooth((-0.080 - y) / 0.018) * _smooth((dz + 0.15) / 0.5)
    w_neck = _smooth((-0.062 - y) / 0.03) * (1.0 - _smooth((dz + 0.1) / 0.4))
    w_neck = np.minimum(w_neck, 1.0 - w_jaw)
    scalp = _standin_scalp(d)
    w_jaw[scalp] = 0.0
    w_neck[scalp] = 0.0
    W[:, J["jaw"]] = w_jaw
    W[:, J["neck"]] = w_neck
    W[:, J["head"]] = 1.0 - w_jaw - w_neck
    return W


def _convex_fit(cand: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one with cand.T @ w ~= target (target inside the hull;
    the joint is then defined as cand.T @ w, within a millimetre of the target)."""
    lam, spread = 10.0, 3e-3     # sum-to-one weight; a small ridge spreads w over more vertices
    A = np.vstack([cand.T, lam * np.ones(len(cand)), spread * np.eye(len(cand))])
    b = np.concatenate([target, [lam], np.zeros(len(cand))])
    w, _ = nnls(A, b)
    return w / w.sum()


def _landmark_targets() -> np.ndarray:
    """51 face points (x, y relative to the head centre) in the iBUG order without the contour:
    brows (subject's right then left), nose bridge, nose base, eyes, outer and inner lips."""
    pts = []
    for sgn in (-1.0, 1.0):
        xs = np.linspace(0.055, 0.014, 5) if sgn < 0 else np.linspace(0.014, 0.055, 5)
        for x in xs:
            pts.append((sgn * x, 0.020 + 0.006 * np.exp(-((x - 0.033) / 0.02) ** 2)))
    for y in (0.006, -0.012, -0.030, -0.046):
        pts.append((0.0, y))
    for x, y in ((-0.014, -0.055), (-0.007, -0.058), (0.0, -0.060), (0.007, -0.058),
                 (0.014, -0.055)):
        pts.append((x, y))
    # Eyes: each from its leftmost point in the image (-x side) over the top and back below.
    for c in (-0.032, 0.032):
        for x, y in ((-0.013, 0.0), (-0.005, 0.005), (0.005, 0.005), (0.013, 0.0),
                     (0.005, -0.004), (-0.005, -0.004)):
            pts.append((c + x, y))
    my = -0.085
    for ang in np.linspace(np.pi, 0.0, 7):          # outer upper lip, right corner to left corner
        pts.append((0.026 * np.cos(ang), my + 0.008 * np.sin(ang) + 0.002))
    for ang in np.linspace(-np.pi / 6, -5 * np.pi / 6, 5):   # outer lower lip, left to right
        pts.append((0.026 * np.cos(ang), my + 0.011 * np.sin(ang)))
    for x in (-0.018, -0.007, 0.0, 0.007, 0.018):           # inner upper lip
        pts.append((x, my + 0.001))
    for x in (0.007, 0.0, -0.007):                          # inner lower lip
        pts.append((x, my - 0.002))
    out = np.asarray(pts, dtype=np.float64)
    assert out.shape == (51, 2), out.shape
    return out


def _hand_components() -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal 45x45 hand bases (rows are components) whose first rows mean something:
    curl of the four fingers, then spreading them; the rest completes the basis."""
    curl = np.zeros((15, 3))
    curl[:12, 2] = -1.0                 # left fingers point +x, palm down: flexion is about -z
    spread = np.zeros((15, 3))
    for i, a in enumerate((1.0, 0.0, -1.5, -0.8)):   # index, middle, pinky, ring (MANO order)
        spread[3 * i, 1] = a
    basis = []
    for c in [curl.ravel(), spread.ravel(), *np.eye(45)]:     # Gram-Schmidt, in this order
        for b in basis:
            c = c - (c @ b) * b
        if np.linalg.norm(c) > 0.1:
            basis.append(c / np.linalg.norm(c))
    left = np.stack(basis[:45])
    # A reflection x -> -x maps an axis-angle (ax, ay, az) to (ax, -ay, -az).
    right = (left.reshape(45, 15, 3) * np.array([1.0, -1.0, -1.0])).reshape(45, 45)
    return left, right


def _permutation(marks: dict[str, int]) -> np.ndarray:
    """order[new] = old: moves each named vertex to the index smplx expects it at."""
    order = np.arange(N_VERTICES)
    where = np.arange(N_VERTICES)           # where[old] = new
    for name, old in marks.items():
        dst = SMPLX_VERTEX_IDS[name]
        src = where[old]
        other = order[dst]
        order[dst], order[src] = old, other
        where[old], where[other] = dst, src
    return order


def build_standin(n_betas: int = 20) -> dict[str, np.ndarray]:
    """The stand-in model's arrays, keyed as in an SMPL-X npz (plus scalp_mask, standin_version,
    description, beta_names). Deterministic: the same call gives byte-identical arrays."""
    if not 1 <= int(n_betas) <= MAX_BETAS:
        raise ValueError(f"n_betas must be between 1 and {MAX_BETAS}, got {n_betas}")
    n_betas = int(n_betas)
    L = _layout()
    v0 = _geometry(np.zeros(MAX_BETAS))
    pts, _, _ = _design(np.zeros(MAX_BETAS))
    V = N_VERTICES
    W = np.zeros((V, NUM_JOINTS))
    JR = np.zeros((NUM_JOINTS, V))
    head_a, head_b = L["offsets"][("head", "C")]
    dirs = L["dirs"]
    marks = {}
    for (name, side), (a, b) in L["offsets"].items():
        if name == "head":
            W[a:b] = _head_weights(dirs, v0[a:b], pts["head_center"])
            continue
        if name == "eye":
            jn = "left_eye_smplhf" if side == "L" else "right_eye_smplhf"
            W[a:b, J[jn]] = 1.0
            ring = a + 1 + (_EYE_RINGS // 2) * _EYE_AROUND + np.arange(_EYE_AROUND)
            JR[J[jn], ring] = 1.0 / _EYE_AROUND
            marks["leye" if side == "L" else "reye"] = b - 1     # front pole
            continue
        lay = L["layouts"][name]
        t = lay.t
        keys = np.stack([pts[k] for k in t.keys])
        if side == "R":
            keys = keys * np.array([-1.0, 1.0, 1.0])
        arc = lay.arc_length(keys)
        s = np.interp(lay.vertex_u, lay.u, arc)
        # Cap vertices continue past the ends along the axis.
        W[a:b] = _chain_weights(s, np.interp(np.arange(len(t.keys)), lay.u, arc), t.chain, side)
        for joint, kidx in t.joint_rings:
            jn = _mirror_name(joint) if side == "R" else joint
            ids = a + lay.key_ring[kidx]
            JR[J[jn], ids] = 1.0 / len(ids)
        if t.cap_end and name.startswith("left_") and name.split("_")[1] in _FINGERS + ("thumb",):
            marks[("l" if side == "L" else "r") + name.split("_")[1]] = b - 1
        if name == "left_foot":
            fv = v0[a:b]
            sgn = 1.0 if side == "L" else -1.0
            med = -sgn * fv[:, 0]
            low = fv[:, 1] < fv[:, 1].min() + 0.02
            tag = "L" if side == "L" else "R"
            marks[f"{tag}BigToe"] = a + int(np.argmax(fv[:, 2] + 0.5 * med - 5.0 * ~low))
            marks[f"{tag}SmallToe"] = a + int(np.argmax(fv[:, 2] - 0.9 * med - 5.0 * ~low))
            marks[f"{tag}Heel"] = a + int(np.argmin(fv[:, 2] + 5.0 * ~low))
    # Torso: the upper sides follow the collars, the hip/buttock sides follow the thighs.
    ta, tb = L["offsets"][("torso", "C")]
    tv = v0[ta:tb]
    extra = np.zeros((tb - ta, NUM_JOINTS))
    ax = np.abs(tv[:, 0])
    left = tv[:, 0] > 0
    w_col = (0.75 * _smooth((ax - 0.09) / 0.07)
             * _smooth((tv[:, 1] - pts["spine3"][1] - 0.05) / 0.09))
    w_hip = (0.65 * _smooth((pts["left_hip"][1] + 0.07 - tv[:, 1]) / 0.12)
             * _smooth((ax - 0.01) / 0.07))
    extra[:, J["left_collar"]] = np.where(left, w_col, 0.0)
    extra[:, J["right_collar"]] = np.where(left, 0.0, w_col)
    extra[:, J["left_hip"]] = np.where(left, w_hip, 0.0)
    extra[:, J["right_hip"]] = np.where(left, 0.0, w_hip)
    W[ta:tb] = W[ta:tb] * (1.0 - extra.sum(axis=1, keepdims=True)) + extra
    # Jaw joint: a convex combination of lower-face vertices around it.
    hv = v0[head_a:head_b]
    near = np.argsort(np.linalg.norm(hv - pts["jaw"], axis=1))[:60]
    JR[J["jaw"], head_a + near] = _convex_fit(hv[near], pts["jaw"])
    # Landmark-type vertices on the head.
    loc = hv - pts["head_center"]
    marks["nose"] = head_a + int(np.argmax(loc[:, 2] - 5.0 * np.abs(loc[:, 0])))
    for tag, sgn in (("lear", 1.0), ("rear", -1.0)):
        marks[tag] = head_a + int(np.argmax(sgn * loc[:, 0] - 2.0 * np.abs(loc[:, 1] + 0.005)))
    scalp = np.zeros(V, dtype=bool)
    scalp[head_a:head_b] = _standin_scalp(dirs)
    # Facial landmarks: faces of the head under 2D targets on the face front.
    faces = L["faces"]
    targets = _landmark_targets()
    front = np.flatnonzero(dirs[:, 2] > 0.3)
    head_faces = np.flatnonzero((faces >= head_a).all(1) & (faces < head_b).all(1))
    lmk_idx, lmk_bary = [], []
    for tx, ty in targets:
        k = front[np.argmin((loc[front, 0] - tx) ** 2 + (loc[front, 1] - ty) ** 2)]
        cand = head_faces[(faces[head_faces] == head_a + k).any(1)]
        best = None
        for fi in cand:
            tri = loc[faces[fi] - head_a][:, :2]
            T = np.column_stack([tri[0] - tri[2], tri[1] - tri[2]])
            if abs(np.linalg.det(T)) < 1e-14:
                continue
            l12 = np.linalg.solve(T, np.array([tx, ty]) - tri[2])
            bary = np.array([l12[0], l12[1], 1.0 - l12.sum()])
            score = -np.clip(bary, None, 0).sum()
            if best is None or score < best[0]:
                best = (score, fi, bary)
        _, fi, bary = best
        bary = np.clip(bary, 0.0, None)
        lmk_idx.append(fi)
        lmk_bary.append(bary / bary.sum())
    # Shape directions: central differences of the builder, one knob at a time.
    shapedirs = np.zeros((V, 3, SHAPE_SLOTS + EXPRESSION_SLOTS))
    for i in range(n_betas):
        e = np.zeros(MAX_BETAS)
        e[i] = 1.0
        shapedirs[:, :, i] = 0.5 * (_geometry(e) - _geometry(-e))
    # Reorder so smplx's hard-coded vertex ids land on the matching points.
    order = _permutation(marks)
    where = np.empty_like(order)
    where[order] = np.arange(V)
    hl, hr = _hand_components()
    kintree = np.stack([np.array(PARENTS, dtype=np.int64), np.arange(NUM_JOINTS, dtype=np.int64)])
    kintree[0, 0] = 2 ** 32 - 1
    lmk_idx = np.asarray(lmk_idx, dtype=np.int64)
    return {
        "v_template": v0[order].astype(np.float32),
        "f": where[faces].astype(np.int32),
        "shapedirs": shapedirs[order].astype(np.float32),
        "posedirs": np.zeros((V, 3, 486), dtype=np.float32),
        "J_regressor": JR[:, order].astype(np.float32),
        "weights": W[order].astype(np.float32),
        "kintree_table": kintree,
        "hands_componentsl": hl.astype(np.float32),
        "hands_componentsr": hr.astype(np.float32),
        "hands_meanl": np.zeros(45, dtype=np.float32),
        "hands_meanr": np.zeros(45, dtype=np.float32),
        "lmk_faces_idx": lmk_idx,
        "lmk_bary_coords": np.asarray(lmk_bary, dtype=np.float32),
        "scalp_mask": scalp[order],
        "standin_version": np.array(STANDIN_VERSION, dtype=np.int64),
        "beta_names": np.array(BETA_NAMES[:n_betas]),
        "description": np.array(
            "gvm-synth procedural stand-in for SMPL-X (not the licensed model): 10475 vertices on "
            f"the SMPL-X 55-joint skeleton, T-pose, Y up, facing +Z; {n_betas} named shape "
            "directions in the first shapedirs columns (see beta_names), zero pose correctives."),
    }


# --- the on-disk cache ---------------------------------------------------------------------------

def _save_npz(fh, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed without the wall-clock timestamps it stores, so that the same arrays
    give the same bytes (and the same sha256 in a clip spec) on every machine."""
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(value), allow_pickle=False)


def write_standin(folder: str | os.PathLike, n_betas: int = 20) -> Path:
    """Write <folder>/smplx/SMPLX_NEUTRAL.npz unless it exists; return the npz path.

    The file appears atomically (temporary file in the same folder, then os.replace), so a
    concurrent reader never sees a partial file and concurrent writers are harmless."""
    out = Path(folder) / "smplx" / FILE_NAME
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = build_standin(n_betas)
    fd, tmp = tempfile.mkstemp(prefix=".SMPLX_NEUTRAL.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            _save_npz(fh, arrays)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


@functools.lru_cache(maxsize=1)
def _builder_digest() -> str:
    """Short hash of this file: any change to the builder gets a fresh cache folder, even if
    STANDIN_VERSION was not bumped."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]


def ensure_standin(cache_dir: str | os.PathLike) -> Path:
    """The stand-in's model folder under cache_dir, built once per builder version; pass it to
    `smplx.create(folder, model_type='smplx', gender='neutral')`."""
    folder = Path(cache_dir) / f"smplx_standin_v{STANDIN_VERSION}-{_builder_digest()}"
    write_standin(folder)
    return folder
