"""Person segmentation offline: mediapipe's bundled models (they ship inside the 0.10.21 wheel;
nothing is downloaded), as `frame -> person probability`."""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np

SEGMENTERS = ("selfie", "pose")


class Segmenter:
    """`selfie` for faces and upper bodies, `pose` (one person, with a mask) for small full-body
    figures; `cfg` holds the mediapipe solution's own settings."""

    def __init__(self, kind: str, cfg: Mapping[str, Any]):
        import mediapipe as mp
        if kind not in SEGMENTERS:
            raise ValueError(f"segmenter: {kind!r} is not one of {', '.join(SEGMENTERS)}")
        if kind == "selfie":
            self._graph = mp.solutions.selfie_segmentation.SelfieSegmentation(**cfg)
        else:
            self._graph = mp.solutions.pose.Pose(enable_segmentation=True, **cfg)

    def __call__(self, frame_rgb: np.ndarray) -> np.ndarray:
        """float32 (H, W) person probability of one uint8 RGB frame."""
        mask = self._graph.process(frame_rgb).segmentation_mask
        # The pose model gives no mask when it finds nobody; then nothing is foreground.
        return np.zeros(frame_rgb.shape[:2], np.float32) if mask is None else mask

    def close(self) -> None:
        self._graph.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def person_maps(frames: Iterator[np.ndarray], chain: Mapping[str, Any]) -> Iterator[np.ndarray]:
    """The chain's segmenter (conf/chain/default.yaml) over a stream of frames: person probability
    (H, W) float32 per frame, segmented at most `max_size` on the long side like the classical chain."""
    from matting.image import resize
    with Segmenter(chain["segmenter"], chain[chain["segmenter"]]) as seg:
        for frame in frames:
            h, w = frame.shape[:2]
            scale = min(1.0, chain["max_size"] / max(h, w))
            small = resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))))
            yield np.clip(resize(seg(small), (w, h)), 0.0, 1.0)
