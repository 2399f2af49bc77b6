"""The stage's geometry: the renderer's world frame and where things stand and look.

Body models work in the SMPL-X frame (Y up, facing +Z); the renderer's world is Z up (Blender's).
Scene objects are handed to the renderer in world coordinates (`to_world`), and the camera and
lights are placed here, in numpy, relative to the posed body: the stage's front is the body's
facing turned by the motion's view angle, and everything that aims (camera, lamps) aims with
`look_at`, so that this maths is tested without Blender.
"""
from __future__ import annotations

import math

import numpy as np

# SMPL-X (x, y, z) with Y up -> world (x, -z, y) with Z up; the body then faces -Y.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
UP = np.array([0.0, 0.0, 1.0])
HEAD, NECK, SPINE3, L_SHOULDER, R_SHOULDER, EYES = 15, 12, 9, 16, 17, [23, 24]   # SMPL-X joint indices


def to_world(points: np.ndarray) -> np.ndarray:
    return points @ Y_UP_TO_Z_UP.T


def from_world(points: np.ndarray) -> np.ndarray:
    return points @ Y_UP_TO_Z_UP


def rigid_to_world(m: np.ndarray) -> np.ndarray:
    """A (..., 4, 4) rigid transform of SMPL-X points, expressed on world points."""
    c = np.eye(4)
    c[:3, :3] = Y_UP_TO_Z_UP
    return c @ m @ c.T


def facing(joints: np.ndarray) -> np.ndarray:
    """Unit horizontal direction the body faces over the clip (world frame), from the shoulder line."""
    left = (joints[:, L_SHOULDER] - joints[:, R_SHOULDER]).mean(0)
    f = np.cross(left, UP)
    f[2] = 0.0
    return f / max(np.linalg.norm(f), 1e-9)


def direction(front: np.ndarray, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """The unit vector `azimuth_deg` round from `front` (towards the body's left) and `elevation_deg` up."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    side = np.cross(UP, front)
    horizontal = math.cos(az) * front + math.sin(az) * side
    return math.cos(el) * horizontal + np.array([0.0, 0.0, math.sin(el)])


def front(joints: np.ndarray, view_deg: float) -> np.ndarray:
    """The stage's front, which camera and lights are placed about: the body's facing turned by the
    motion's `view_deg` (a walk is seen, and lit, from the side), horizontal."""
    return direction(facing(joints), view_deg, 0.0)


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 4x4 world matrix of a camera or lamp at `position` looking at `target`: its -Z axis on the
    target, its Y axis as near world up as that allows (Blender's track -Z, up Y)."""
    back = np.asarray(position, float) - np.asarray(target, float)
    z = back / max(np.linalg.norm(back), 1e-12)
    x = np.cross(UP, z)
    if np.linalg.norm(x) < 1e-9:   # looking straight up or down: any right will do
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(z, x), z, position
    return m


def rotation(axis: str, radians: float) -> np.ndarray:
    """A 4x4 rotation about the local X, Y or Z axis."""
    c, s = math.cos(radians), math.sin(radians)
    i, j = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
    m = np.eye(4)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def translation(v: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = v
    return m
