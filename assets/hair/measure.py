"""What a groom measures: the numbers that tell the style families apart, stored with every clip."""
from __future__ import annotations

import numpy as np


def groom_stats(points: np.ndarray, radius: np.ndarray, head_centre: np.ndarray) -> dict:
    """Medians over strands of a (S,P,3) groom in metres: arc length, tortuosity (arc / chord),
    curvature (total turning / arc, rad/m), root diameter (um); volume is the 90th percentile of the
    tips' distance from the head centre (how far the hair stands out)."""
    p = np.asarray(points, np.float64)
    d = np.diff(p, axis=1)
    seg = np.linalg.norm(d, axis=-1)
    arc = np.maximum(seg.sum(axis=1), 1e-9)
    chord = np.maximum(np.linalg.norm(p[:, -1] - p[:, 0], axis=1), 1e-9)
    t = d / np.maximum(seg, 1e-12)[..., None]
    turn = np.arccos(np.clip((t[:, 1:] * t[:, :-1]).sum(-1), -1, 1)).sum(axis=1)
    return {"strands": int(len(p)),
            "length_m": float(np.median(arc)),
            "tortuosity": float(np.median(arc / chord)),
            "curvature_rad_m": float(np.median(turn / arc)),
            "volume_m": float(np.percentile(np.linalg.norm(p[:, -1] - head_centre, axis=1), 90)),
            "root_diameter_um": float(np.median(np.asarray(radius)[:, 0]) * 2e6)}
