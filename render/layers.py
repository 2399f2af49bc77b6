"""From what Cycles wrote to the store's arrays: one converter per kind of output (the `convert`
of clipstore.outputs), applied frame by frame as the frames come out of the renderer.

A converter takes the layers of the pass its output is made by (`made_by`) and returns that
frame of the output in the store's dtype. Coverage-pass layers are the colour pass's when the
spec renders no separate coverage pass (cycles.alpha_samples=0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from core.colour import ALPHA_MAX, quantise_alpha
from render import frames

FLOW = "flow"           # the per-point attribute and the colour AOV carrying forward screen motion
DEPTH_RANGE_M = 100.0   # the Mist pass's linear range: the camera's far clip, so no surface saturates it


@dataclass(frozen=True)
class Coverage:
    """What the scene's coverage groups are (render.scene.build reads them off the scene's materials)."""
    groups: tuple[str, ...] = ()        # every coverage group the scene writes
    see_through: tuple[str, ...] = ()   # groups of surfaces that pass light (their AOV is their opacity)
    residual: str | None = None         # the group no shader can write (volumes): alpha beyond the others
    owner: str | None = None            # the person the residual belongs to (the one volume is theirs), if any


@dataclass
class Clip:
    """A clip's outputs being filled frame by frame."""
    spec: Any
    arrays: dict[str, np.ndarray]
    t: int = 0
    gain: float = 1.0   # exposure, from the first frame's colour pass (render.frames.exposure_gain)
    extra: dict[str, dict] = field(default_factory=dict)
    cover: Coverage = Coverage()

    @classmethod
    def start(cls, spec: Any, cover: Coverage = Coverage()) -> "Clip":
        c = spec.cycles
        arrays = {name: np.zeros((spec.n_frames, c["height"], c["width"], *((len(o["channels"]),) if o["channels"] else ())),
                                 np.dtype(o["dtype"])) for name, o in spec.outputs.items()}
        return cls(spec, arrays, cover=cover)

    def add(self, t: int, frame: dict[str, dict[str, np.ndarray]]) -> None:
        """Frame t's layers by pass -> frame t of every output."""
        frame = {"coverage": frame["colour"], **frame}
        r = self.cover.residual
        if r:
            for name in ("colour", "coverage"):
                frame[name] = {**frame[name], r: residual(frame[name], self.cover.groups, r)}
        self.t = t
        if t == 0:
            cam = self.spec.camera
            self.gain = frames.exposure_gain(frame["colour"]["Combined"], cam["exposure_target"], cam["exposure_max_gain"],
                                             cam["exposure_highlight"], cam["exposure_highlight_percentile"])
        for name, o in self.spec.outputs.items():
            self.arrays[name][t] = CONVERTERS[o["convert"]](frame[o["made_by"]], o, self)

    def attrs(self) -> dict[str, dict]:
        """What each output records of this clip beside its declaration."""
        out = {}
        for name, o in self.spec.outputs.items():
            if o["convert"] == "label":
                out[name] = {"legend": {str(i): p for i, p in enumerate(("background", *o["parts"]))}}
            elif o["convert"] == "flow":
                out[name] = {"invalid_frames": [self.spec.n_frames - 1]}   # no next frame to move to
        return out


def _alpha(layers: dict[str, np.ndarray]) -> np.ndarray:
    return np.clip(layers["Combined"][..., 3], 0.0, 1.0)


def residual(layers: dict[str, np.ndarray], groups: tuple[str, ...], group: str) -> np.ndarray:
    """A volume's coverage group: Cycles runs no AOV inside a volume, but a surface writes its group
    wherever a camera ray reaches it (through a volume or a see-through surface too), so what alpha
    holds beyond all the surfaces' groups is what the volumes alone keep from the camera."""
    surfaces = sum((layers[g] for g in groups if g != group and g in layers), np.zeros_like(layers["Combined"][..., 3]))
    return np.clip(_alpha(layers) - surfaces, 0.0, 1.0)


def foreground(layers: dict, o: dict, clip: Clip) -> np.ndarray:
    rgba = layers["Combined"].copy()
    rgba[..., :3] *= clip.gain
    see = [layers[g] for g in clip.cover.see_through if g in layers]   # their AOVs: the alpha they give (their opacity)
    return frames.foreground(rgba, clip.spec.cycles["fgr_min_alpha"], sum(see) if see else None)


def coverage(layers: dict, o: dict, clip: Clip) -> np.ndarray:
    """The coverage of the output's groups (their AOVs summed), or of the whole foreground."""
    if o["parts"]:
        return quantise_alpha(np.clip(sum(layers.get(p, 0.0) for p in o["parts"]), 0.0, 1.0))
    return quantise_alpha(_alpha(layers))


def instances(layers: dict, o: dict, clip: Clip) -> np.ndarray:
    """Each person's coverage (the output's channels name their groups), with the volume they own.
    Rounded as running sums, so the channels add up to the rounded total as closely as one rounding
    allows (no error builds up over the people)."""
    none = np.zeros(layers["Combined"].shape[:2], np.float32)
    cover = clip.cover
    own = [np.clip(layers.get(name, none) + (layers[cover.residual] if cover.residual and cover.owner == name else 0.0),
                   0.0, 1.0) for name in o["channels"]]
    running = np.stack([quantise_alpha(np.clip(s, 0.0, 1.0)).astype(np.int64) for s in np.cumsum(own, axis=0)], axis=-1)
    return np.diff(running, axis=-1, prepend=0).clip(0, ALPHA_MAX).astype(o["dtype"])


def plate(layers: dict, o: dict, clip: Clip) -> np.ndarray:
    return frames.plate_to_store(layers["Combined"][..., :3] * clip.gain)


def distance(layers: dict, o: dict, clip: Clip) -> np.ndarray:
    """Metres from the camera: the Mist pass is distance / DEPTH_RANGE_M averaged over the pixel's
    samples with 1 where they miss, so the covered samples' mean distance is 1 - (1 - mist) / alpha.
    Volumes write no mist: their share of alpha (the residual group) is left out, and a pixel only
    a volume covers has no distance (0)."""
    a = _alpha(layers) - (layers[clip.cover.residual] if clip.cover.residual else 0.0)
    seen = a * ALPHA_MAX >= 0.5
    d = DEPTH_RANGE_M * (1.0 - (1.0 - layers["Mist"]) / np.maximum(a, 1e-12))
    return np.where(seen, np.clip(d, 0.0, DEPTH_RANGE_M), 0.0).astype(o["dtype"])


def flow(layers: dict, o: dict, clip: Clip) -> np.ndarray:
    """Pixels to the next frame: the flow AOV is the `flow` attribute averaged over the pixel's
    covered samples (premultiplied: its alpha is their coverage)."""
    f = layers[FLOW]
    if clip.t == clip.spec.n_frames - 1:
        return np.zeros(f.shape[:2] + (2,), o["dtype"])
    a = f[..., 3:4]
    return np.where(a * ALPHA_MAX >= 0.5, f[..., :2] / np.maximum(a, 1e-12), 0.0).astype(o["dtype"])


def label(layers: dict, o: dict, clip: Clip) -> np.ndarray:
    """1 + the index in the output's `parts` of the group covering most of the pixel; 0 where
    nothing does."""
    none = np.zeros(layers["Combined"].shape[:2], np.float32)
    best = np.stack([layers.get(p, none) for p in o["parts"]]).argmax(axis=0) + 1
    return np.where(_alpha(layers) * ALPHA_MAX >= 0.5, best, 0).astype(o["dtype"])


def multiplier(layers: dict, o: dict, clip: Clip) -> np.ndarray:
    """The shadow catcher's factor on the set's light (1 where the person changes nothing), x255. The
    catcher is not denoised and at colour-pass samples leaves isolated dark specks along the
    silhouette; a median of `cycles.shadow_median_px` removes them and keeps shadow edges."""
    out = np.round(np.clip(layers["Shadow Catcher"], 0.0, 1.0) * 255.0).astype(np.uint8)
    k = clip.spec.cycles["shadow_median_px"]
    return (cv2.medianBlur(out, k) if k > 1 else out).astype(o["dtype"])


CONVERTERS: dict[str, Callable[[dict, dict, Clip], np.ndarray]] = {
    "foreground": foreground, "coverage": coverage, "instances": instances, "plate": plate, "distance": distance, "flow": flow,
    "label": label, "multiplier": multiplier}
