"""SMPL-X pose sequences: a small procedural library and AMASS import.

A motion is a dict of float32 arrays over T frames, full axis-angle (no hand PCA):
  global_orient (T,3), body_pose (T,63) = joints 1..21, jaw_pose / leye_pose / reye_pose (T,3),
  left_hand_pose / right_hand_pose (T,45) = 15 finger joints each, transl (T,3).
SMPL-X frame: metres, Y up, the body faces +Z, x points to the body's left; the rest pose is a
T-pose with the arms along +-x. Every SMPL-X joint frame is world-aligned at rest, so a local
rotation about x/y/z reads as a rotation about the world axes of the rest pose.

Hand poses are absolute finger rotations (the `flat_hand_mean=True` convention of the smplx
package): build the body model with flat_hand_mean=True or the mean hand is added on top.

Procedural motions are pure functions of (n_frames, fps, params); params are plain numbers
(angles in degrees, frequencies in Hz, distances in metres) so a clip spec stays JSON-able.
Params are drawn by `sample_params` from ranges in conf/motion/procedural.yaml; this module
knows only their names (`PARAMS`).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from scipy.spatial.transform import Rotation

from core import ranges, seeds
from core.noise import smooth_noise

# --- structural facts: the SMPL-X kinematic tree -------------------------------------------

# body_pose covers joints 1..21 of SMPL-X, in this order.
BODY_JOINTS = (
    "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
# Each hand pose covers 15 finger joints in this order (MANO order).
FINGERS = ("index", "middle", "pinky", "ring", "thumb")

MOTION_KEYS = {
    "global_orient": 3, "body_pose": 63, "jaw_pose": 3, "leye_pose": 3, "reye_pose": 3,
    "left_hand_pose": 45, "right_hand_pose": 45, "transl": 3,
}

# AMASS .npz layouts, told apart by the frame-rate key and the width of `poses`.
_AMASS_LAYOUTS = {
    # SMPL+H: root 3, body 63, left hand 45, right hand 45.
    "mocap_framerate": (156, {"global_orient": (0, 3), "body_pose": (3, 66),
                              "left_hand_pose": (66, 111), "right_hand_pose": (111, 156)}),
    # SMPL-X stage-ii: root 3, body 63, jaw 3, left eye 3, right eye 3, hands 45 + 45.
    "mocap_frame_rate": (165, {"global_orient": (0, 3), "body_pose": (3, 66),
                               "jaw_pose": (66, 69), "leye_pose": (69, 72), "reye_pose": (72, 75),
                               "left_hand_pose": (75, 120), "right_hand_pose": (120, 165)}),
}

# AMASS worlds are Z-up, SMPL-X is Y-up: a -90 degree turn about x maps +z to +y (and +y to -z).
_ZUP_TO_YUP = Rotation.from_rotvec([-np.pi / 2, 0.0, 0.0])

_X, _Y, _Z = np.eye(3)
_MIRROR = np.array([1.0, -1.0, -1.0])  # an axis-angle under the x -> -x reflection (left <-> right)


# --- parameters: names here, ranges in conf/motion/procedural.yaml --------------------------------

# Shared by every motion: the relaxed standing pose, breathing and secondary head motion (which
# keeps the hair moving even when the main motion is slow), and the seed of the smooth noise.
HOLD_PARAMS = ("arm", "hold_down", "hold_forward", "hold_in", "hold_elbow", "hold_twist", "hold_wrist", "grip")
COMMON_PARAMS = ("arm_down", "collar_down", "arm_forward", "elbow_bend", "finger_curl", "breath_freq",
                 "breath_amp", "secondary_amp", "secondary_freq", "seed")
PARAMS = {name: COMMON_PARAMS + own for name, own in {
    "idle_sway": ("sway_freq", "sway_amp", "sway_roll", "head_amp", "phase"),
    "walk_in_place": ("step_freq", "hip_flex", "knee_flex", "arm_swing", "torso_twist", "bob", "phase"),
    "head_turn": ("turn_freq", "turn_amp", "neck_share", "tilt", "phase"),
    "wave": ("arm", "raise", "arm_forward_raised", "wave_freq", "wave_amp", "wrist_amp", "phase"),
    "nod": ("nod_freq", "nod_amp", "neck_share", "phase"),
    "shrug": ("shrug_freq", "shrug_amp", "elbow_amp", "head_tilt", "phase"),
    "lean": ("lean_freq", "lean_amp", "side_freq", "side_amp", "phase"),
    "look_around": ("look_freq", "yaw_amp", "pitch_amp", "neck_share", "look_seed"),
    "turn_around": ("turn_deg", "start", "duration", "head_lead", "step_freq", "step_flex"),
    "talk": ("gesture_freq", "gesture_amp", "elbow_flex", "gesture_forward", "head_amp", "gesture_seed", "phase"),
    "dance_sway": ("beat_hz", "sway_amp", "roll", "knee_bend", "arm_amp", "head_bob", "phase"),
    "walk_across": ("speed", "step_freq", "knee_flex", "arm_swing", "torso_twist", "bob", "view_deg", "phase"),
    # holding something (assets.held): the holding arm's pose, its grip, and what the rest does
    "phone_call": HOLD_PARAMS + ("nod_amp", "nod_freq", "lean", "sway_amp", "sway_freq", "phase"),
    "drink": HOLD_PARAMS + ("sip_freq", "sip_elbow", "sip_tilt", "head_back", "phase"),
    "read": HOLD_PARAMS + ("look_down", "page_amp", "page_freq", "phase"),
}.items()}
_INT_PARAMS = ("seed", "arm", "look_seed", "gesture_seed")
HOLDING = ("phone_call", "drink", "read")   # motions for a held thing, drawn with it (not by `weights`)


def motion_ranges(name: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """The ranges of motion `name` from the config's `ranges:` table: `common` overlaid by the
    motion's own entries; every parameter the motion takes must be given, and no other."""
    if name not in PARAMS:
        raise ValueError(f"unknown procedural motion {name!r}; known: {sorted(PARAMS)}")
    own = table.get(name)
    if not isinstance(own, Mapping):
        raise ValueError(f"motion.ranges.{name} must be a mapping of parameter ranges, got {own!r}")
    per = {**(table.get("common") or {}), **own}
    missing, unknown = sorted(set(PARAMS[name]) - set(per)), sorted(set(per) - set(PARAMS[name]))
    if missing or unknown:
        raise ValueError(f"motion.ranges.{name} (with common): missing {missing}, unknown {unknown}")
    return per


def sample_params(name: str, rng: np.random.Generator | int, table: Mapping[str, Any]) -> dict:
    """Draw the params of procedural motion `name` from the `ranges:` table of the motion config.
    Keys are drawn in sorted order so adding a param does not reshuffle the others."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    per = motion_ranges(name, table)
    return {k: ranges.draw(per[k], rng, f"motion.ranges.{name}.{k}") for k in sorted(per)}


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A clip's motion from the `motion:` config: an AMASS file for `amass.fraction` of the clips
    when `amass.dir` is set, else a procedural motion drawn by `weights`, with its params."""
    rng = np.random.default_rng(seed)
    amass = cfg["amass"]
    if amass["dir"] and rng.uniform() < amass["fraction"]:
        files = sorted(Path(amass["dir"]).expanduser().rglob("*.npz"))
        if not files:
            raise ValueError(f"motion.amass.dir {amass['dir']} holds no .npz files")
        path = files[rng.integers(len(files))]
        return {"kind": "amass", "path": str(path),
                "start_frame": int(rng.integers(0, amass["max_start_frame"] + 1))}
    name = ranges.weighted(cfg["weights"], rng, "motion.weights", sorted(PROCEDURAL), "motions")
    return {"kind": "procedural", "name": name,
            "params": sample_params(name, seeds.rng(seed, name), cfg["ranges"])}


# --- building blocks ---------------------------------------------------------------------------

def _rot(axis: np.ndarray, deg: np.ndarray | float, n: int) -> Rotation:
    """Rotations about a fixed axis by per-frame angles in degrees."""
    ang = np.broadcast_to(np.radians(np.asarray(deg, dtype=np.float64)), (n,))
    return Rotation.from_rotvec(ang[:, None] * axis[None, :])


class _Pose:
    """Per-joint rotation tracks, composed in the parent frame; assembled into a motion dict."""

    def __init__(self, n: int):
        self.n = n
        self.rot = {j: Rotation.identity(n) for j in ("global_orient",) + BODY_JOINTS}
        self.left_hand = np.zeros((n, 45))
        self.right_hand = np.zeros((n, 45))
        self.transl = np.zeros((n, 3))

    def apply(self, joint: str, r: Rotation) -> None:
        """Apply `r` after what the joint already does (i.e. in the parent's frame)."""
        self.rot[joint] = r * self.rot[joint]

    def apply_sym(self, side: str, joint: str, r: Rotation) -> None:
        """Apply a rotation given for the left side; mirrored when side is 'right'."""
        if side == "right":
            r = Rotation.from_rotvec(r.as_rotvec() * _MIRROR)
        self.apply(f"{side}_{joint}", r)

    def motion(self) -> dict[str, np.ndarray]:
        body = np.concatenate([self.rot[j].as_rotvec() for j in BODY_JOINTS], axis=1)
        zeros3 = np.zeros((self.n, 3), np.float32)
        return {
            "global_orient": self.rot["global_orient"].as_rotvec().astype(np.float32),
            "body_pose": body.astype(np.float32),
            "jaw_pose": zeros3.copy(), "leye_pose": zeros3.copy(), "reye_pose": zeros3.copy(),
            "left_hand_pose": self.left_hand.astype(np.float32),
            "right_hand_pose": self.right_hand.astype(np.float32),
            "transl": self.transl.astype(np.float32),
        }


def _curl(pose: "_Pose", side: str, degrees: float, per_finger: tuple, per_joint: tuple) -> None:
    """One hand's fingers curled towards the palm: each joint by `degrees` times its finger's and
    its joint's factor (FINGERS order; the thumb about its own axis); the right hand mirrored."""
    curl = np.zeros((15, 3))
    for i, finger in enumerate(FINGERS):
        axis = _Z if finger != "thumb" else _Y
        for k, joint in enumerate(per_joint):
            curl[3 * i + k] = -np.radians(degrees * per_finger[i] * joint) * axis
    if side == "right":
        curl = curl * _MIRROR
    setattr(pose, f"{side}_hand", np.broadcast_to(curl.reshape(45), (pose.n, 45)).copy())


def _relaxed_base(pose: _Pose, t: np.ndarray, p: Mapping[str, float],
                  skip_arm: str | None = None) -> None:
    """Arms down at the sides, fingers slightly curled, breathing, secondary head motion."""
    n = pose.n
    for side in ("left", "right"):
        # Left-side axes: the left arm lies along +x, so -z lowers it, -y brings the forearm
        # forward (+z), and -z curls the fingers towards the palm (-y). Mirrored for the right.
        if side != skip_arm:
            pose.apply_sym(side, "collar", _rot(_Z, -p["collar_down"], n))
            pose.apply_sym(side, "shoulder", _rot(_Z, -p["arm_down"], n))
            pose.apply_sym(side, "shoulder", _rot(_X, -p["arm_forward"], n))
            pose.apply_sym(side, "elbow", _rot(_Y, -p["elbow_bend"], n))
        # outer fingers curl more, the thumb barely; the middle joint most
        _curl(pose, side, p["finger_curl"], (1.0, 1.0, 1.25, 1.15, 0.4), (0.7, 1.0, 0.8))

    breath = p["breath_amp"] * np.sin(2 * np.pi * p["breath_freq"] * t)
    pose.apply("spine2", _rot(_X, -0.4 * breath, n))   # chest rises: slight extension
    pose.apply("spine3", _rot(_X, -0.6 * breath, n))
    for side in ("left", "right"):
        if side != skip_arm:
            pose.apply_sym(side, "collar", _rot(_Z, 0.3 * breath, n))

    noise = smooth_noise(t, p["secondary_freq"], int(p["seed"]), 0, dims=9)
    amp = p["secondary_amp"]
    pose.apply("spine3", Rotation.from_rotvec(np.radians(0.3 * amp * noise[:, 0:3])))
    pose.apply("neck", Rotation.from_rotvec(np.radians(0.5 * amp * noise[:, 3:6])))
    pose.apply("head", Rotation.from_rotvec(np.radians(amp * noise[:, 6:9])))


def _begin(name: str, n_frames: int, fps: float, params: Mapping[str, Any]) -> tuple[np.ndarray, dict, "_Pose"]:
    """Frame times, checked params and a pose already in the relaxed base every motion starts from."""
    t = _times(n_frames, fps)
    p = _checked(name, params)
    pose = _Pose(len(t))
    _relaxed_base(pose, t, p)
    return t, p, pose


def _neck_and_head(pose: "_Pose", axis: np.ndarray, angle: np.ndarray, share: float) -> None:
    """One rotation split between neck (`share`) and head, as people turn and nod."""
    pose.apply("neck", _rot(axis, share * angle, len(angle)))
    pose.apply("head", _rot(axis, (1 - share) * angle, len(angle)))


def _shift_weight(pose: "_Pose", shift: np.ndarray, roll: np.ndarray) -> None:
    """The pelvis shifted sideways by `shift` (m) and rolled by `roll` (deg); the legs lean against
    both so the feet stay roughly planted (0.9 m: a typical hip-to-ankle length)."""
    n = len(shift)
    pose.transl[:, 0] = shift
    pose.apply("global_orient", _rot(_Z, roll, n))
    lean = np.degrees(np.arctan2(shift, 0.9))
    for side in ("left_hip", "right_hip"):
        pose.apply(side, _rot(_Z, -roll - lean, n))


def _lifts(phase: np.ndarray) -> dict[str, np.ndarray]:
    """How far each foot is lifted over a gait cycle given as sin(phase): left on the positive half,
    right on the negative; a power > 1 keeps the lift C1-smooth where the foot touches down."""
    return {"left": np.clip(phase, 0, None) ** 1.5, "right": np.clip(-phase, 0, None) ** 1.5}


def _times(n_frames: int, fps: float) -> np.ndarray:
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return np.arange(int(n_frames)) / float(fps)


# --- the procedural library ----------------------------------------------------------------------

def idle_sway(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Standing, shifting weight from foot to foot, breathing, small head motion."""
    t, p, pose = _begin("idle_sway", n_frames, fps, params)
    n = len(t)
    w = 2 * np.pi * p["sway_freq"] * t + p["phase"]
    shift = p["sway_amp"] * np.sin(w)
    roll = p["sway_roll"] * np.sin(w)
    _shift_weight(pose, shift, roll)
    pose.apply("spine1", _rot(_Z, -0.5 * roll, n))    # upper body stays about upright
    pose.apply("spine2", _rot(_Z, -0.3 * roll, n))
    head = smooth_noise(t, p["sway_freq"] * 2.0, int(p["seed"]), 1, dims=2)
    pose.apply("head", _rot(_Y, p["head_amp"] * head[:, 0], n))
    pose.apply("head", _rot(_X, 0.5 * p["head_amp"] * head[:, 1], n))
    return pose.motion()


def walk_in_place(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Marching on the spot: alternating hip/knee flexion, counter arm swing, vertical bob."""
    t, p, pose = _begin("walk_in_place", n_frames, fps, params)
    n = len(t)
    w = 2 * np.pi * p["step_freq"] * t + p["phase"]
    s = np.sin(w)
    lift = _lifts(s)
    for side in ("left", "right"):
        # Hip flexion brings the thigh forward (-x rotation), knee flexion the shin back (+x).
        pose.apply(f"{side}_hip", _rot(_X, -p["hip_flex"] * lift[side], n))
        pose.apply(f"{side}_knee", _rot(_X, p["knee_flex"] * lift[side], n))
        pose.apply(f"{side}_ankle", _rot(_X, 0.25 * p["hip_flex"] * lift[side], n))
    # The arm opposite the lifted leg swings forward (-x rotation of a hanging arm).
    for side, sign in (("left", -1.0), ("right", 1.0)):
        pose.apply(f"{side}_shoulder", _rot(_X, sign * p["arm_swing"] * s, n))
        pose.apply(f"{side}_elbow", _rot(_Y, (1 if side == "right" else -1)
                                          * 0.3 * p["arm_swing"] * np.clip(sign * s, 0, None), n))
    pose.apply("spine2", _rot(_Y, p["torso_twist"] * s, n))
    pose.apply("global_orient", _rot(_Y, -0.5 * p["torso_twist"] * s, n))
    pose.apply("global_orient", _rot(_Z, 0.5 * p["torso_twist"] * s, n))
    # The pelvis rises a little at each step (twice per cycle).
    pose.transl[:, 1] = p["bob"] * 0.5 * (1 - np.cos(2 * w))
    return pose.motion()


def head_turn(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Looking left and right: yaw shared between neck and head, with a little roll."""
    t, p, pose = _begin("head_turn", n_frames, fps, params)
    n = len(t)
    yaw = p["turn_amp"] * np.sin(2 * np.pi * p["turn_freq"] * t + p["phase"])
    _neck_and_head(pose, _Y, yaw, p["neck_share"])
    pose.apply("head", _rot(_Z, -p["tilt"] * yaw / max(p["turn_amp"], 1e-6), n))
    pose.apply("spine3", _rot(_Y, 0.1 * yaw, n))
    return pose.motion()


def wave(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """One arm raised, forearm up, waving at the elbow and wrist; the other arm relaxed."""
    t, p, pose, side, n = _one_arm("wave", n_frames, fps, params)
    w = 2 * np.pi * p["wave_freq"] * t + p["phase"]
    # Left-side axes: +z raises the arm above horizontal, -y brings it forward; at the elbow
    # -x turns the palm to face forward and +z stands the forearm up; the sweep is about z.
    pose.apply_sym(side, "shoulder", _rot(_Z, p["raise"], n))
    pose.apply_sym(side, "shoulder", _rot(_Y, -p["arm_forward_raised"], n))
    pose.apply_sym(side, "elbow", _rot(_X, -90.0, n))
    pose.apply_sym(side, "elbow", _rot(_Z, 90.0 - p["raise"] + p["wave_amp"] * np.sin(w), n))
    pose.apply_sym(side, "wrist", _rot(_Z, p["wrist_amp"] * np.sin(w - 0.8), n))
    # Leaning the head a little towards the waving side adds motion for the hair.
    pose.apply("head", _rot(_Z, (-3.0 if side == "left" else 3.0) * np.ones(n), n))
    return pose.motion()


def nod(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Nodding: head and neck pitch (+x looks down)."""
    t, p, pose = _begin("nod", n_frames, fps, params)
    pitch = p["nod_amp"] * np.sin(2 * np.pi * p["nod_freq"] * t + p["phase"])
    _neck_and_head(pose, _X, pitch, p["neck_share"])
    return pose.motion()


def shrug(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Shrugging now and then: shoulders up (the collars and a little of the upper arms), forearms
    turning out, the head tilting."""
    t, p, pose = _begin("shrug", n_frames, fps, params)
    n = len(t)
    up = np.clip(np.sin(2 * np.pi * p["shrug_freq"] * t + p["phase"]), 0, None) ** 2   # rests between shrugs
    for side in ("left", "right"):
        pose.apply_sym(side, "collar", _rot(_Z, p["shrug_amp"] * up, n))
        pose.apply_sym(side, "shoulder", _rot(_Z, 0.3 * p["shrug_amp"] * up, n))
        pose.apply_sym(side, "elbow", _rot(_Y, -p["elbow_amp"] * up, n))
    pose.apply("head", _rot(_Z, p["head_tilt"] * up, n))
    return pose.motion()


def lean(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Leaning slowly forward and back and to the sides, spread over the spine (+x bends forward)."""
    t, p, pose = _begin("lean", n_frames, fps, params)
    n = len(t)
    pitch = p["lean_amp"] * np.sin(2 * np.pi * p["lean_freq"] * t + p["phase"])
    roll = p["side_amp"] * np.sin(2 * np.pi * p["side_freq"] * t + 1.7 * p["phase"])
    for joint, share in (("spine1", 0.3), ("spine2", 0.4), ("spine3", 0.3)):
        pose.apply(joint, _rot(_X, share * pitch, n))
        pose.apply(joint, _rot(_Z, share * roll, n))
    pose.apply("head", _rot(_X, -0.5 * pitch, n))       # the gaze stays level
    return pose.motion()


def look_around(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Looking about the room: slow, wandering yaw and pitch of head and neck."""
    t, p, pose = _begin("look_around", n_frames, fps, params)
    gaze = smooth_noise(t, p["look_freq"], int(p["look_seed"]), 2, dims=2)
    _neck_and_head(pose, _Y, p["yaw_amp"] * gaze[:, 0], p["neck_share"])
    _neck_and_head(pose, _X, p["pitch_amp"] * gaze[:, 1], p["neck_share"])
    pose.apply("spine3", _rot(_Y, 0.15 * p["yaw_amp"] * gaze[:, 0], len(t)))
    return pose.motion()


def turn_around(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Turning on the spot by `turn_deg` (its sign: the direction) over part of the clip, the head
    leading the body, small steps while turning."""
    t, p, pose = _begin("turn_around", n_frames, fps, params)
    n = len(t)
    span = max(t[-1], 1e-6)
    u = np.clip((t / span - p["start"]) / p["duration"], 0.0, 1.0)
    ease = u * u * (3 - 2 * u)
    speed = 6 * u * (1 - u)                              # d ease / du: the turn's pace, 0 at both ends
    yaw = p["turn_deg"] * ease
    pose.apply("global_orient", _rot(_Y, yaw, n))
    _neck_and_head(pose, _Y, p["head_lead"] * np.sign(p["turn_deg"]) * speed / 1.5, 0.4)
    w = 2 * np.pi * p["step_freq"] * t
    lift = _lifts(np.sin(w))
    for side in ("left", "right"):
        step = p["step_flex"] * lift[side] * speed / 1.5
        pose.apply(f"{side}_hip", _rot(_X, -step, n))
        pose.apply(f"{side}_knee", _rot(_X, 1.6 * step, n))
    return pose.motion()


def talk(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Talking with the hands: forearms raised in front, gesturing in the rhythm of speech, small
    nods and head turns."""
    t, p, pose = _begin("talk", n_frames, fps, params)
    n = len(t)
    g = smooth_noise(t, p["gesture_freq"], int(p["gesture_seed"]), 3, dims=6)
    for k, side in enumerate(("left", "right")):
        pose.apply_sym(side, "shoulder", _rot(_X, -p["gesture_forward"] - 0.5 * p["gesture_amp"] * g[:, k], n))
        pose.apply_sym(side, "elbow", _rot(_Y, -p["elbow_flex"] - p["gesture_amp"] * g[:, 2 + k], n))
        pose.apply_sym(side, "wrist", _rot(_Z, p["gesture_amp"] * g[:, 4 + k], n))
    pose.apply("head", _rot(_X, p["head_amp"] * np.sin(2 * np.pi * 2.1 * p["gesture_freq"] * t + p["phase"]), n))
    pose.apply("head", _rot(_Y, 1.5 * p["head_amp"] * g[:, 0], n))
    return pose.motion()


def dance_sway(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Swaying to a beat: hips side to side, knees dipping twice a bar, arms and head with it."""
    t, p, pose = _begin("dance_sway", n_frames, fps, params)
    n = len(t)
    w = 2 * np.pi * p["beat_hz"] * t + p["phase"]
    _shift_weight(pose, p["sway_amp"] * np.sin(w), p["roll"] * np.sin(w))
    dip = p["knee_bend"] * 0.5 * (1 - np.cos(2 * w))
    for side in ("left", "right"):
        pose.apply(f"{side}_hip", _rot(_X, -0.5 * dip, n))
        pose.apply(f"{side}_knee", _rot(_X, dip, n))
        pose.apply_sym(side, "shoulder", _rot(_Z, p["arm_amp"] * np.sin(w + (0.0 if side == "left" else np.pi)), n))
    pose.transl[:, 1] = -0.004 * dip
    pose.apply("spine2", _rot(_Z, -0.6 * p["roll"] * np.sin(w), n))
    pose.apply("head", _rot(_X, p["head_bob"] * np.sin(2 * w), n))
    return pose.motion()


LEG_M = 0.9   # hip to ankle of an adult: turns a stride into a hip angle


def walk_across(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Walking forward (+z) at `speed`, passing the rest position mid-clip, with a gait whose
    stride matches the speed (feet barely slide): thighs swing forward and back, the swinging
    leg's knee bends, arms counter-swing. `view_deg` is where the camera stands relative to the
    walker's facing (render.scene adds it to the camera's azimuth): about 90 sees the walk cross
    the frame, less sees it come diagonally closer."""
    t, p, pose = _begin("walk_across", n_frames, fps, params)
    n = len(t)
    w = 2 * np.pi * p["step_freq"] * t + p["phase"]
    s = np.sin(w)
    # A rounded triangle wave: the foot on the ground slides back at a near-constant pace, as the
    # body moves on at a constant speed (a sine would slide it).
    tri = np.arcsin(0.97 * s) / np.arcsin(0.97)
    # One gait cycle covers two steps: speed / step_freq metres; a thigh swings +-amp about vertical.
    step = p["speed"] / p["step_freq"] / 2
    amp = np.degrees(np.arcsin(min(0.45, step / (2 * LEG_M))))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        swing = sign * tri                                      # +1: this thigh at its most forward
        pose.apply(f"{side}_hip", _rot(_X, -amp * swing, n))
        # The knee bends while the leg swings through (thigh passing forward), straight on the ground.
        through = np.clip(sign * np.cos(w), 0, None) ** 1.5
        pose.apply(f"{side}_knee", _rot(_X, p["knee_flex"] * through, n))
        pose.apply(f"{side}_ankle", _rot(_X, -0.3 * amp * swing, n))
        pose.apply(f"{side}_shoulder", _rot(_X, sign * p["arm_swing"] * s, n))
    pose.apply("spine2", _rot(_Y, p["torso_twist"] * s, n))
    pose.apply("global_orient", _rot(_Y, -0.5 * p["torso_twist"] * s, n))
    pose.transl[:, 2] = p["speed"] * (t - 0.5 * t[-1])
    # The pelvis is lowest as the legs pass each other apart (twice per cycle) and rises between.
    pose.transl[:, 1] = p["bob"] * 0.5 * (1 + np.cos(2 * w))
    return pose.motion()


def _one_arm(name: str, n_frames: int, fps: float, params: Mapping[str, Any]):
    """Frame times, checked params and the relaxed base but for one arm (`arm`: 0 left, 1 right),
    which the motion poses itself; with that side and the frame count."""
    t = _times(n_frames, fps)
    p = _checked(name, params)
    if p["arm"] not in (0, 1):
        raise ValueError(f"{name} param 'arm' must be 0 (left) or 1 (right), got {p['arm']!r}")
    side = ("left", "right")[int(p["arm"])]
    pose = _Pose(len(t))
    _relaxed_base(pose, t, p, skip_arm=side)
    return t, p, pose, side, len(t)


def _holding(name: str, n_frames: int, fps: float, params: Mapping[str, Any]):
    """The relaxed base with one arm (`arm`: 0 left, 1 right) holding: the upper arm lowered by
    `hold_down` from the T-pose, raised forward by `hold_forward` and swung in across the body by
    `hold_in`, the elbow folded by
    `hold_elbow`, the forearm turned by `hold_twist` (positive: the palm towards the body's middle)
    and the wrist bent by `hold_wrist`; its fingers curled by `grip` round what they hold.
    Returns the times, params, pose, the holding side and the frame count."""
    t, p, pose, side, n = _one_arm(name, n_frames, fps, params)
    pose.apply_sym(side, "collar", _rot(_Z, -p["collar_down"], n))
    pose.apply_sym(side, "shoulder", _rot(_Z, -p["hold_down"], n))
    pose.apply_sym(side, "shoulder", _rot(_X, -p["hold_forward"], n))
    pose.apply_sym(side, "shoulder", _rot(_Y, -p["hold_in"], n))
    pose.apply_sym(side, "elbow", _rot(_X, -p["hold_twist"], n))
    pose.apply_sym(side, "elbow", _rot(_Y, -p["hold_elbow"], n))
    pose.apply_sym(side, "wrist", _rot(_Y, -p["hold_wrist"], n))
    _curl(pose, side, p["grip"], (1.0, 1.0, 1.0, 1.0, 0.5), (1.0, 1.0, 1.0))
    return t, p, pose, side, n


def phone_call(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """On the phone: the holding hand at the ear, the head leaning into it, nodding as one listens,
    the weight shifting from foot to foot."""
    t, p, pose, side, n = _holding("phone_call", n_frames, fps, params)
    w = 2 * np.pi * p["sway_freq"] * t + p["phase"]
    _shift_weight(pose, p["sway_amp"] * np.sin(w), 2.0 * np.sin(w))
    pose.apply("head", _rot(_Z, (1.0 if side == "left" else -1.0) * p["lean"] * np.ones(n), n))
    pose.apply("head", _rot(_X, p["nod_amp"] * np.sin(2 * np.pi * p["nod_freq"] * t + p["phase"]), n))
    return pose.motion()


def drink(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Drinking: the cup held before the chest, raised to the mouth and tipped (`sip_elbow` more
    fold, `sip_tilt` at the wrist) once every 1 / `sip_freq` seconds, the head going back with it."""
    t, p, pose, side, n = _holding("drink", n_frames, fps, params)
    sip = 0.5 * (1 - np.cos(2 * np.pi * p["sip_freq"] * t + p["phase"])) ** 2   # lingers low, rises smoothly
    pose.apply_sym(side, "elbow", _rot(_Y, -p["sip_elbow"] * sip, n))
    pose.apply_sym(side, "wrist", _rot(_Y, -p["sip_tilt"] * sip, n))
    pose.apply("head", _rot(_X, -p["head_back"] * sip, n))
    return pose.motion()


def read(n_frames: int, fps: float, params: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Reading: a book or tablet held flat before the chest on the palm, the head bowed over it,
    the arm shifting a little as pages turn."""
    t, p, pose, side, n = _holding("read", n_frames, fps, params)
    pose.apply("neck", _rot(_X, 0.4 * p["look_down"] * np.ones(n), n))
    pose.apply("head", _rot(_X, 0.6 * p["look_down"] * np.ones(n), n))
    page = p["page_amp"] * np.sin(2 * np.pi * p["page_freq"] * t + p["phase"])
    pose.apply_sym(side, "shoulder", _rot(_Y, -page, n))
    return pose.motion()


def view_deg(motion: Mapping[str, Any]) -> float:
    """The camera's azimuth offset a motion asks for (walk_across's side view), 0 for the others."""
    return float(motion.get("params", {}).get("view_deg", 0.0)) if motion.get("kind") == "procedural" else 0.0


PROCEDURAL: dict[str, Callable[[int, float, Mapping[str, float]], dict[str, np.ndarray]]] = {
    "idle_sway": idle_sway,
    "walk_in_place": walk_in_place,
    "head_turn": head_turn,
    "wave": wave,
    "nod": nod,
    "shrug": shrug,
    "lean": lean,
    "look_around": look_around,
    "turn_around": turn_around,
    "talk": talk,
    "dance_sway": dance_sway,
    "walk_across": walk_across,
    "phone_call": phone_call,
    "drink": drink,
    "read": read,
}


def _checked(name: str, params: Mapping[str, Any]) -> dict[str, float]:
    """The params of motion `name`, with missing or unknown keys reported in one sentence."""
    expected = set(PARAMS[name])
    given = set(params)
    missing, unknown = sorted(expected - given), sorted(given - expected)
    if missing or unknown:
        raise ValueError(f"params of motion {name!r}: missing {missing}, unknown {unknown}")
    out = {}
    for k in expected:
        v = params[k]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v):
            raise ValueError(f"param {name}.{k} must be a finite number, got {v!r}")
        out[k] = int(v) if k in _INT_PARAMS else float(v)
    return out


# --- AMASS ------------------------------------------------------------------------------------

def _slerp_resample(rotvecs: np.ndarray, src_fps: float, t: np.ndarray) -> np.ndarray:
    """Slerp every joint track (T, J, 3) at times t (seconds); returns (len(t), J, 3)."""
    T, J, _ = rotvecs.shape
    pos = t * src_fps
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, T - 1)
    i1 = np.minimum(i0 + 1, T - 1)
    a = np.clip(pos - i0, 0.0, 1.0)[:, None]
    r0 = Rotation.from_rotvec(rotvecs[i0].reshape(-1, 3))
    r1 = Rotation.from_rotvec(rotvecs[i1].reshape(-1, 3))
    # Slerp between neighbouring frames, all joints at once: r0 * exp(a * log(r0^-1 r1)).
    # Same result as scipy's Slerp per joint, without a Python loop over 55 joints.
    delta = (r0.inv() * r1).as_rotvec().reshape(len(t), J, 3)
    out = r0 * Rotation.from_rotvec((a[:, :, None] * delta).reshape(-1, 3))
    return out.as_rotvec().reshape(len(t), J, 3)


def load_amass(path: str | Path, fps: float, n_frames: int, start_frame: int = 0
               ) -> dict[str, np.ndarray]:
    """Read an AMASS .npz (SMPL+H or SMPL-X stage-ii), resample to `fps`, take `n_frames` from
    `start_frame` (counted at the target fps), and convert to the Y-up SMPL-X frame.

    Betas are not returned: nothing derived from the licensed data is stored by the project.
    Translation is re-centred so the pelvis path is horizontally centred on the origin over the
    clip; its height stays as recorded (ground near y = 0 in AMASS, unlike the procedural
    motions, whose transl is ~0): frame the camera from the posed joints, not from transl.
    """
    path = Path(path)
    t = _times(n_frames, fps)
    if int(start_frame) != start_frame or start_frame < 0:
        raise ValueError(f"start_frame must be a non-negative integer, got {start_frame!r}")
    if not path.is_file():
        raise FileNotFoundError(f"AMASS motion file {path} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"AMASS motion file {path} holds a single array, not an .npz archive")
        with z:
            keys = set(z.files)
            rates = [k for k in _AMASS_LAYOUTS if k in keys]
            if not rates or "poses" not in keys or "trans" not in keys:
                raise ValueError(
                    f"AMASS motion file {path} has an unknown layout: expected 'poses', 'trans' "
                    f"and 'mocap_framerate' (SMPL+H) or 'mocap_frame_rate' (SMPL-X); "
                    f"found {sorted(keys)}")
            poses = np.asarray(z["poses"], dtype=np.float64)
            trans = np.asarray(z["trans"], dtype=np.float64)
            # Both rate keys in one file: the width of `poses` decides.
            rate_key = next((k for k in rates if poses.ndim == 2
                             and poses.shape[1] == _AMASS_LAYOUTS[k][0]), rates[0])
            src_fps = float(np.asarray(z[rate_key]).reshape(-1)[0])
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, IndexError) as e:
        raise ValueError(f"AMASS motion file {path} cannot be read as .npz ({e})") from e
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"AMASS motion file {path} cannot be read as .npz ({e})") from e

    width, layout = _AMASS_LAYOUTS[rate_key]
    if poses.ndim != 2 or poses.shape[1] != width:
        raise ValueError(f"AMASS motion file {path}: '{rate_key}' implies poses of shape "
                         f"(T, {width}), found {poses.shape}")
    if trans.shape != (poses.shape[0], 3):
        raise ValueError(f"AMASS motion file {path}: trans has shape {trans.shape}, "
                         f"expected ({poses.shape[0]}, 3)")
    if not np.isfinite(src_fps) or src_fps <= 0:
        raise ValueError(f"AMASS motion file {path}: frame rate {src_fps!r} is not positive")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all()):
        raise ValueError(f"AMASS motion file {path} contains non-finite poses or translations")

    T_src = poses.shape[0]
    available = int(np.floor((T_src - 1) / src_fps * fps + 1e-6)) + 1 if T_src > 0 else 0
    if start_frame + n_frames > available:
        raise ValueError(
            f"AMASS motion file {path} is too short: {T_src} frames at {src_fps:g} fps give "
            f"{available} frames at {fps:g} fps, but frames "
            f"{start_frame}..{start_frame + n_frames - 1} were asked for")
    t = t + start_frame / float(fps)

    rot = _slerp_resample(poses.reshape(T_src, -1, 3), src_fps, t)   # (n, J, 3)
    flat = rot.reshape(len(t), -1)
    pos = t * src_fps
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, T_src - 1)
    i1 = np.minimum(i0 + 1, T_src - 1)
    a = (pos - i0)[:, None]
    transl = (1 - a) * trans[i0] + a * trans[i1]

    out = {k: np.zeros((len(t), d), np.float32) for k, d in MOTION_KEYS.items()}
    for key, (lo, hi) in layout.items():
        out[key] = flat[:, lo:hi].astype(np.float32)
    # Z-up -> Y-up: the root orientation and the translation turn with the world. (SMPL rotates
    # about the pelvis joint, whose rest offset depends on betas; the constant error this leaves
    # in transl is absorbed by the re-centring below.)
    out["global_orient"] = (_ZUP_TO_YUP * Rotation.from_rotvec(out["global_orient"])).as_rotvec() \
        .astype(np.float32)
    transl = _ZUP_TO_YUP.apply(transl)
    transl[:, [0, 2]] -= transl[:, [0, 2]].mean(axis=0)
    out["transl"] = transl.astype(np.float32)
    return out


# --- dispatch ---------------------------------------------------------------------------------

def motion_frames(spec: Mapping[str, Any], n_frames: int, fps: float) -> dict[str, np.ndarray]:
    """The motion a JSON-able spec describes:
    {"kind": "procedural", "name": ..., "params": {...}} or
    {"kind": "amass", "path": ..., "start_frame": int}."""
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if kind == "procedural":
        name = spec.get("name")
        if name not in PROCEDURAL:
            raise ValueError(f"motion spec names unknown procedural motion {name!r}; "
                             f"known: {sorted(PROCEDURAL)}")
        return PROCEDURAL[name](n_frames, fps, spec.get("params", {}))
    if kind == "amass":
        if "path" not in spec:
            raise ValueError("AMASS motion spec has no 'path'")
        return load_amass(spec["path"], fps, n_frames, int(spec.get("start_frame", 0)))
    raise ValueError(f"motion spec kind {kind!r} is not 'procedural' or 'amass'")
