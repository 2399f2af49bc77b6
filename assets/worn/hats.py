"""Hats fitted to a head: a beanie, a cap with a visor, or a brimmed hat; and the hair pressed under
them.

A hat is a crown, a shell following the head at the hair's room (`allowance`) above a rim plane
that runs across the forehead and slopes down towards the back, with the fabric's thickness, and
for a cap or a brimmed hat a brim leaving the rim (a visor at the front, or all round, drooping).
The crown is measured in the head's own frame, from a centre below the rim plane, as a radius per
direction: the head's farthest vertex near each direction, plus the allowance, smoothed.

Hair under a hat is hidden, never through it: every strand point above the rim plane in a
direction the crown covers is drawn in under the crown's inside (`press`), frame by frame, in the
head's frame the hat rides in; points in the brim's sheet are moved below it.

Rest frame: the SMPL-X one (metres, Y up, the body faces +Z, +X is the body's left).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.interpolate import RegularGridInterpolator

from assets.worn.mesh import join, tube

EL = np.radians(np.arange(-80.0, 90.01, 2.5))   # elevation grid of the crown's radius, from the centre
AZ = np.radians(np.arange(0.0, 360.0, 5.0))      # azimuth, 0 towards the face (+Z), 90 towards +X
RINGS = 14           # crown rings from the rim to the top
NEAR_DEG = 6.0       # head vertices within this angle of a direction measure the head there


@dataclass(frozen=True)
class Hat:
    vertices: np.ndarray        # (V,3) rest pose
    faces: np.ndarray           # (F,3)
    centre: np.ndarray          # (3,) the crown's radial centre, below the rim plane
    normal: np.ndarray          # (3,) the rim plane's normal (up, tilted back)
    offset: float               # rim plane: normal . p == offset
    inner: RegularGridInterpolator   # (elevation, azimuth) -> the crown's inside radius
    brim: tuple | None   # the brim's sheet: its start and end distance from the centre per azimuth, thickness, tan(droop)
    crown_faces: int     # the first faces are the crown's closed shell (outside, inside, rim band)
    record: dict


def _direction(el: np.ndarray, az: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)


def _angles(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    el = np.arcsin(np.clip(d[..., 1], -1.0, 1.0))
    az = np.arctan2(d[..., 0], d[..., 2]) % (2 * np.pi)
    return el, az


def _periodic(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A grid over AZ closed round the circle (the first column repeated at 2 pi)."""
    return np.concatenate([AZ, [2 * np.pi]]), np.concatenate([values, values[:, :1]], axis=1)


def fit(rest_vertices: np.ndarray, head: np.ndarray, eyes: np.ndarray, p: Mapping[str, Any]) -> Hat:
    """A hat for a head: `head` marks its vertices, `eyes` (2,3) the eyes' centres, `p` a clip's
    `worn.hat` record (its `kind` and sizes)."""
    hv = rest_vertices[head].astype(np.float64)
    eye_y, front_z = float(eyes[:, 1].mean()), float(hv[:, 2].max())
    tilt = np.radians(p["tilt_deg"])
    normal = np.array([0.0, np.cos(tilt), -np.sin(tilt)])      # the rim falls towards the back
    front = np.array([0.0, eye_y + p["rim_height"], front_z])
    offset = float(normal @ front)
    mid_z = 0.5 * (hv[:, 2].max() + hv[:, 2].min())
    # The centre: mid-head, a few centimetres under the rim plane there.
    centre = np.array([0.0, 0.0, mid_z])
    centre[1] = (offset - normal[2] * mid_z) / normal[1] - 0.03
    # The head's radius per direction: its farthest vertex within NEAR_DEG, of those the crown must
    # clear (above the rim plane, or just under it: not the face and ears below).
    rel = hv[hv @ normal > offset - 0.01] - centre
    dist = np.linalg.norm(rel, axis=1)
    grid = _direction(*np.meshgrid(EL, AZ, indexing="ij"))            # (E,A,3)
    cos = grid.reshape(-1, 3) @ (rel / dist[:, None]).T                # (E*A, N)
    near = cos > np.cos(np.radians(NEAR_DEG))
    radius = np.where(near, dist[None, :], 0.0).max(axis=1).reshape(len(EL), len(AZ))
    radius = np.maximum(radius, np.percentile(dist, 5))                # below the rim: nothing measured
    lift = p["crown_height"] * np.clip(np.sin(EL), 0.0, None)[:, None] ** 2   # a taller crown towards the top
    inner = gaussian_filter(radius, sigma=(1.5, 1.5), mode=("nearest", "wrap")) + p["allowance"] + lift
    az_closed, inner_closed = _periodic(inner)
    lookup = RegularGridInterpolator((EL, az_closed), inner_closed, bounds_error=False, fill_value=None)

    # Where the crown meets the rim plane, per azimuth: the lowest elevation whose crown point lies
    # above it (crown points rise with elevation on every side of a centre under the plane).
    fine = np.radians(np.arange(-80.0, 90.0, 0.25))
    e, a = np.meshgrid(fine, AZ, indexing="ij")
    pts = centre + _direction(e, a) * lookup(np.stack([e, a], -1))[..., None]
    above = pts @ normal > offset
    rim_el = fine[np.argmax(above, axis=0)]                              # (A,)
    thickness = float(p["thickness"])

    def surface(extra: float) -> np.ndarray:
        """Rings from the rim up to (near) the top, RINGS x len(AZ), and the top point."""
        s = np.linspace(0.0, 1.0, RINGS)[:, None]
        el = rim_el[None, :] + s * (np.radians(88.0) - rim_el[None, :])
        az = np.broadcast_to(AZ, el.shape)
        r = lookup(np.stack([el, az], -1)) + extra
        return centre + _direction(el, az) * r[..., None]

    def shell(rings: np.ndarray, extra: float, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        n_a = len(AZ)
        top = centre + np.array([0.0, 1.0, 0.0]) * (lookup(np.array([[np.radians(90.0), 0.0]]))[0] + extra)
        verts = np.concatenate([rings.reshape(-1, 3), top[None]])
        faces = []
        for i in range(RINGS - 1):
            for j in range(n_a):
                k = (j + 1) % n_a
                a, b, c, d = i * n_a + j, i * n_a + k, (i + 1) * n_a + k, (i + 1) * n_a + j
                faces += [[a, b, c], [a, c, d]]
        apex = len(verts) - 1
        faces += [[(RINGS - 1) * n_a + j, (RINGS - 1) * n_a + (j + 1) % n_a, apex] for j in range(n_a)]
        faces = np.asarray(faces, np.int64)
        return verts, faces[:, ::-1] if flip else faces

    inner_rings, outer_rings = surface(0.0), surface(thickness)
    parts = [shell(outer_rings, thickness, False), shell(inner_rings, 0.0, True)]
    # the rim: a band closing the two shells
    n_a = len(AZ)
    band_v = np.concatenate([inner_rings[0], outer_rings[0]])
    band_f = np.asarray([[j, (j + 1) % n_a, n_a + (j + 1) % n_a] for j in range(n_a)] +
                        [[j, n_a + (j + 1) % n_a, n_a + j] for j in range(n_a)], np.int64)
    parts.append((band_v, band_f))
    crown_faces = sum(len(f) for _, f in parts)

    brim = None
    if p["brim"] > 0:
        # Outward along the rim plane from the crown's outside, `brim` long at the front (a cap's
        # visor: only round the front) or all round (a brimmed hat), drooping by `brim_droop_deg`.
        width = p["brim"] * (np.clip(np.cos(AZ), 0.0, None) ** 1.5 if p["kind"] == "cap" else np.ones_like(AZ))
        start = outer_rings[0]
        out = start - centre
        out -= (out @ normal)[:, None] * normal
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        droop = np.radians(p["brim_droop_deg"])
        edge_dir = np.cos(droop) * out - np.sin(droop) * normal
        steps = np.linspace(0.0, 1.0, 5)[:, None, None]
        sheet = start[None] + steps * width[None, :, None] * edge_dir[None]          # (5, A, 3)
        keep = width > 1e-4
        for sign in (1.0, -1.0):
            layer = sheet + sign * 0.5 * thickness * normal
            v = layer.reshape(-1, 3)
            f = []
            for i in range(4):
                for j in range(n_a):
                    k = (j + 1) % n_a
                    if keep[j] or keep[k]:
                        a, b, c, d = i * n_a + j, i * n_a + k, (i + 1) * n_a + k, (i + 1) * n_a + j
                        f += [[a, b, c], [a, c, d]] if sign > 0 else [[a, c, b], [a, d, c]]
            parts.append((v, np.asarray(f, np.int64)))
        edge = sheet[-1][keep] if p["kind"] == "cap" else np.concatenate([sheet[-1], sheet[-1][:1]])
        parts.append(tube(edge, 0.5 * thickness, 0.5 * thickness, normal, closed=False, sides=6))
        r0 = np.linalg.norm((start - centre) - ((start - centre) @ normal)[:, None] * normal, axis=1)
        brim = (r0, r0 + width * np.cos(droop), thickness, float(np.tan(droop)))
    verts, faces = join(parts)
    record = {"kind": p["kind"], "crown_top": float(inner_rings[-1][:, 1].max() + thickness - hv[:, 1].max()),
              "rim_front_above_eyes": float(p["rim_height"])}
    return Hat(verts.astype(np.float32), faces, centre, normal, offset, lookup, brim, crown_faces, record)


def press(hat: Hat, points: np.ndarray, margin: float) -> np.ndarray:
    """Points (..., 3) in the head's rest frame with the hair under the hat hidden: above the rim
    plane, within the crown's inside less `margin`; in the brim's sheet, moved below it."""
    p = np.array(points, dtype=np.float64, copy=True)
    flat = p.reshape(-1, 3)
    rel = flat - hat.centre
    r = np.linalg.norm(rel, axis=1)
    d = rel / np.maximum(r, 1e-12)[:, None]
    el, az = _angles(d)
    inner = hat.inner(np.stack([el, az], -1))
    above = flat @ hat.normal > hat.offset
    covered = above & ((hat.centre + d * inner[:, None]) @ hat.normal > hat.offset)   # a direction the crown covers
    squeeze = covered & (r > inner - margin)
    flat[squeeze] = hat.centre + d[squeeze] * (inner[squeeze] - margin)[:, None]
    if hat.brim is not None:
        r_in, r_out, thick, tan_droop = hat.brim
        rel = flat - hat.centre
        planar = rel - (rel @ hat.normal)[:, None] * hat.normal
        ring = np.linalg.norm(planar, axis=1)
        _, a = _angles(planar / np.maximum(ring, 1e-12)[:, None])
        k = np.round(a / (AZ[1] - AZ[0])).astype(int) % len(AZ)
        # the sheet's middle lies lower the further out it reaches (its droop)
        middle = hat.offset - np.clip(ring - r_in[k], 0.0, None) * tan_droop
        height = flat @ hat.normal - middle
        inside = (ring > r_in[k] - margin) & (ring < r_out[k] + margin) & (np.abs(height) < 0.5 * thick + margin)
        flat[inside] -= (height[inside] + 0.5 * thick + margin)[:, None] * hat.normal
    return flat.reshape(p.shape)
