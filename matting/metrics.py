"""Matting metrics with the conventions video matting papers report, so our numbers sit beside theirs.

Alpha, foreground and spatial-gradient errors follow the Robust Video Matting evaluation (Lin et al.,
"Robust High-Resolution Video Matting with Temporal Guidance", WACV 2022, its `evaluation/` scripts):

- `pha_mad`  1e3 * mean |p - g|;  `pha_mse` 1e3 * mean (p - g)^2.
- `pha_grad` 1e-3 * sum (|grad g| - |grad p|)^2 with Gaussian-derivative gradients (sigma 1.4, a 9x9
  kernel of unit L2 norm, replicated border). Protocol `lr` min-max normalises each alpha map (pred
  and true, each on its own) to [0, 1] before taking its gradient, as RVM's evaluate_lr.py does;
  protocol `hr` does not normalise.
- `pha_conn` (lr only) 1e-3 * sum |phi(g) - phi(p)|, Rhemann et al.'s connectivity error with 4-connected
  components at thresholds 0, 0.1, ..., 1.
- `pha_dtssd` 1e2 * sqrt(sum(((p_t - p_t-1) - (g_t - g_t-1))^2) / N); frame 0 scores 0.
- `fgr_mad`, `fgr_mse` as MAD/MSE over all colour channels of the pixels whose true alpha is above 0.

Grad and Conn are sums over the frame, so they grow with resolution: report the resolution with them.

Inputs are float32 in [0, 1] (8-bit PNG / 255) and the arithmetic stays in float32 where the reference's
does: thresholds compared in float64 would put alpha 153/255 below the 0.6 step in Conn.

MESSDdt (Erofeev, Gitman, Vatolin, Fedorov, Wang, "Perceptually Motivated Benchmark for Video Matting",
BMVC 2015; used again by e.g. Zhang et al., "Attention-guided Temporally Coherent Video Object Matting",
ACM MM 2021) is their motion-aware temporal error: with E_t = (p_t - g_t)^2 * m_t the masked squared
error of frame t and v the optical flow of the ground-truth sequence from frame t-1 to t, it sums
|E_t-1(x) - E_t(x + v(x))| over pixels and frames. An error that travels with the subject (a steady
halo) costs nothing; one that appears, vanishes or slides over the subject (flicker, swimming) does.
Here: the flow is OpenCV's DIS on the 8-bit ground-truth alphas, E_t is sampled at x + v bilinearly,
the sum is divided by the frame's pixel count and scaled by 1e3 like MSE (it is a difference of squared
errors), frame 0 scores 0 like dtSSD, and m is the whole frame (`region: all`: trimap-free matting has
no trimap) or, closer to the benchmark, which scored the trimap's unknown region, the band where
0 < g < 1 dilated by `unknown_dilation` (`region: unknown`).
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from clipstore import CLASS_LABELS
from core.checks import require_keys
from core.conf import load as load_conf
from matting.flow import DIS_PRESETS, dis_flow, warp
from matting.image import disc

PROTOCOLS = ("lr", "hr")
ALPHA = ("pha_mad", "pha_mse", "pha_grad", "pha_conn", "pha_dtssd", "pha_messddt")
FGR = ("fgr_mad", "fgr_mse")
HAIR = ("hair_mad", "hair_mse", "hair_grad")
# A clip of several people matted for one of them (its gt `others/`: everyone else's coverage): the
# error on the other people (the matte leaking onto them, or hollowed where the target is in front)
# and on the rest of the frame, the target and the background (MaGGIe's split of the error).
OTHERS = ("others_mad", "others_mse", "target_mad", "target_mse")
# per material class of a set that labels them (its classes/ layer; hair has its own alpha, above)
CLASS_REGIONS = ("lens", "sheer", "opaque_objects", "effects", "volume", "rest")
CLASS = tuple(f"{c}_{m}" for c in CLASS_REGIONS for m in ("mad", "mse"))
ORDER = ALPHA + FGR + HAIR + CLASS + OTHERS
SECTIONS = {"grad": ("sigma", "eps"), "conn": ("step", "theta"),
            "messddt": ("enabled", "region", "unknown_dilation", "dis_preset"), "hair": ("dilation",)}


def default_config() -> dict[str, Any]:
    """The `metrics` block of conf/evaluate.yaml, read without Hydra so any caller can use it."""
    return load_conf("evaluate")["metrics"]


def check_config(cfg: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every metric parameter present and known; ValueError naming the key otherwise."""
    cfg = default_config() if cfg is None else cfg
    out = {name: require_keys(cfg.get(name), keys, f"metrics.{name}") for name, keys in SECTIONS.items()}
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise ValueError(f"metrics: unknown section(s) {', '.join(unknown)}")
    g, c, m = out["grad"], out["conn"], out["messddt"]
    _need(_number(g["sigma"]) and g["sigma"] > 0, "grad.sigma", "a positive number", g["sigma"])
    _need(_number(g["eps"]) and 0 < math.sqrt(2 * math.pi) * g["sigma"] * g["eps"] < 1, "grad.eps",
          "a positive number below 1 / (sqrt(2 pi) sigma)", g["eps"])
    _need(_number(c["step"]) and 0 < c["step"] <= 1, "conn.step", "in (0, 1]", c["step"])
    _need(_number(c["theta"]) and c["theta"] >= 0, "conn.theta", "a non-negative number", c["theta"])
    _need(isinstance(m["enabled"], bool), "messddt.enabled", "true or false", m["enabled"])
    _need(m["region"] in ("all", "unknown"), "messddt.region", "all or unknown", m["region"])
    _need(m["dis_preset"] in DIS_PRESETS, "messddt.dis_preset", " | ".join(DIS_PRESETS), m["dis_preset"])
    for key, v in (("messddt.unknown_dilation", m["unknown_dilation"]), ("hair.dilation", out["hair"]["dilation"])):
        _need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, key, "a non-negative integer (px)", v)
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"metrics.{key} must be {what}, got {value!r}")


def metric_names(protocol: str, cfg: Mapping[str, Any], fgr: bool = False, hair: bool = False) -> list[str]:
    """The metrics one clip gets, in report order."""
    names = [m for m in ALPHA if not (m == "pha_conn" and protocol != "lr")
             and not (m == "pha_messddt" and not cfg["messddt"]["enabled"])]
    return names + (list(FGR) if fgr else []) + (list(HAIR) if hair else [])


@lru_cache(maxsize=8)
def gauss_kernels(sigma: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """x and y Gaussian-derivative kernels: gaussian along rows times its derivative along columns,
    truncated where the Gaussian falls below eps (9x9 at sigma 1.4), scaled to unit L2 norm."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    r = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-r ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    kx = np.outer(gauss, -r * gauss / sigma ** 2)
    kx /= np.sqrt((kx ** 2).sum())
    ky = np.ascontiguousarray(kx.T)
    kx.flags.writeable = ky.flags.writeable = False
    return kx, ky


def gradient_magnitude(alpha: np.ndarray, sigma: float, eps: float, normalise: bool) -> np.ndarray:
    """|grad alpha| as float32; for the lr protocol (`normalise`) of the alpha min-max normalised to
    [0, 1] first (cv2.normalize, as RVM: a constant map becomes all zeros)."""
    kx, ky = gauss_kernels(sigma, eps)
    if normalise:
        alpha = cv2.normalize(alpha, None, 1.0, 0.0, cv2.NORM_MINMAX)
    gx = cv2.filter2D(alpha, -1, kx, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(alpha, -1, ky, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy).astype(np.float32)


def connectivity(pred: np.ndarray, true: np.ndarray, step: float, theta: float) -> float:
    """Rhemann et al.'s connectivity error (1e-3 * sum |phi(g) - phi(p)|) as RVM computes it."""
    # float32 thresholds: the comparisons the reference makes with float32 alphas.
    steps = np.arange(0, 1 + step, step).astype(np.float32)
    round_down = np.zeros_like(true)
    undecided = np.ones(true.shape, bool)   # in the largest component at every threshold so far
    # Each threshold's pixels lie inside the bounding box of the last one's: labelling only that box
    # finds the same components in the same raster order (ties go the same way), and it shrinks fast.
    box: tuple[slice, slice] = np.s_[:, :]
    for i in range(1, len(steps)):
        both = ((true[box] >= steps[i]) & (pred[box] >= steps[i])).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(both, connectivity=4)
        largest = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if n > 1 else np.zeros(both.shape, bool)
        kept = undecided[box]
        round_down[box][kept & ~largest] = steps[i - 1]
        kept &= largest
        if n == 1:
            break
        rows, cols = np.flatnonzero(both.any(1)), np.flatnonzero(both.any(0))
        top, left = box[0].start or 0, box[1].start or 0
        box = np.s_[top + rows[0]:top + rows[-1] + 1, left + cols[0]:left + cols[-1] + 1]
    round_down[undecided] = 1
    d_true, d_pred = true - round_down, pred - round_down
    phi_true = 1 - d_true * (d_true >= theta)
    phi_pred = 1 - d_pred * (d_pred >= theta)
    return float(np.abs(phi_true - phi_pred).sum() * 1e-3)


def dtssd(pred_prev: np.ndarray, pred: np.ndarray, true_prev: np.ndarray, true: np.ndarray) -> float:
    """1e2 * RMS over pixels of the difference between predicted and true frame-to-frame change."""
    d = (pred - pred_prev) - (true - true_prev)
    return float(np.sqrt((d * d).sum() / true.size) * 1e2)


def ground_truth_flow(true_prev: np.ndarray, true: np.ndarray, preset: str) -> np.ndarray:
    """DIS optical flow (H, W, 2, x then y) of the 8-bit ground truth from frame t-1 to frame t."""
    return dis_flow(true_prev, true, preset)


def messddt(pred_prev: np.ndarray, pred: np.ndarray, true_prev: np.ndarray, true: np.ndarray,
            flow: np.ndarray, region_prev: np.ndarray | None = None, region: np.ndarray | None = None) -> float:
    """1e3 * mean over pixels x of |E_t-1(x) - E_t(x + flow(x))|, E the (region-masked) squared error."""
    e_prev = (pred_prev - true_prev) ** 2
    e = (pred - true) ** 2
    if region_prev is not None:
        e_prev, e = e_prev * region_prev, e * region
    moved = warp(e, flow)
    return float(np.abs(e_prev - moved).mean() * 1e3)


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> float:
    return float(x[mask].mean()) if mask.any() else math.nan


@dataclass(frozen=True)
class Frame:
    """What the temporal metrics of the next frame need from this one."""
    pred: np.ndarray
    true: np.ndarray
    region: np.ndarray | None   # MESSDdt's mask (region: unknown)
    key: Hashable | None        # the truth's identity (TruthCache), None: not kept


class TruthCache:
    """What the metrics compute from the ground truth alone (a frame's gradient magnitude, its optical
    flow from the frame before), kept by the truth's identity (its file, as matting.evaluate names it)
    for the next method scored against the same set: computed once, the numbers the same. The least
    recently used goes first past `max_bytes`; safe to share between threads."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable | None, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key is None or self.max_bytes <= 0:
            return make()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        value.flags.writeable = False   # shared: whoever gets it reads it
        with self._lock:
            if key not in self._items and value.nbytes <= self.max_bytes:
                self._items[key] = value
                self._bytes += value.nbytes
                while self._bytes > self.max_bytes:
                    self._bytes -= self._items.popitem(last=False)[1].nbytes
        return value


class ClipScorer:
    """Scores one clip a frame at a time (frames stream from disk; the temporal metrics keep one frame).

    `add` takes the frames in order. `frame` (everything of one frame) and `pair` (what compares it with
    the one before) keep no state, so a caller may run them for many frames at once (matting.evaluate's
    threads) and join each frame's two parts with `join`."""

    def __init__(self, protocol: str = "lr", cfg: Mapping[str, Any] | None = None, cache: TruthCache | None = None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be lr or hr, not {protocol!r}")
        self.protocol, self.cfg, self.cache = protocol, check_config(cfg), cache or TruthCache(0)
        self._prev: Frame | None = None
        self._unknown_kernel = disc(self.cfg["messddt"]["unknown_dilation"])
        self._hair_kernel = disc(self.cfg["hair"]["dilation"])

    def add(self, pred_pha: np.ndarray, true_pha: np.ndarray, pred_fgr: np.ndarray | None = None,
            true_fgr: np.ndarray | None = None, true_hair: np.ndarray | None = None,
            true_classes: np.ndarray | None = None, true_others: np.ndarray | None = None) -> dict[str, float]:
        """Metrics of the next frame (see `frame` for the arguments)."""
        own, cur = self.frame(pred_pha, true_pha, pred_fgr, true_fgr, true_hair, true_classes, true_others)
        prev, self._prev = self._prev, cur
        return join(own, self.pair(prev, cur))

    def frame(self, pred_pha: np.ndarray, true_pha: np.ndarray, pred_fgr: np.ndarray | None = None,
              true_fgr: np.ndarray | None = None, true_hair: np.ndarray | None = None,
              true_classes: np.ndarray | None = None,
              true_others: np.ndarray | None = None, key: Hashable | None = None) -> tuple[dict[str, float], Frame]:
        """The metrics of one frame alone, and what `pair` needs of it: alphas (H, W), foregrounds
        (H, W, 3), all float32 in [0, 1]; `true_classes` (H, W) the class labels (clipstore.CLASS_LABELS,
        1-based, uint8); `true_others` (H, W) the other people's coverage in [0, 1] when the clip is
        matted for one of several; `key` the truth's identity, what the cache keeps its work under."""
        p, g = _f32(pred_pha), _f32(true_pha)
        if p.shape != g.shape:
            raise ValueError(f"predicted alpha is {p.shape[1]}x{p.shape[0]}, true alpha {g.shape[1]}x{g.shape[0]}")
        lr, gc = self.protocol == "lr", self.cfg["grad"]
        err = p - g
        out = {"pha_mad": float(np.abs(err).mean() * 1e3), "pha_mse": float((err * err).mean() * 1e3)}
        mag_p = gradient_magnitude(p, gc["sigma"], gc["eps"], lr)
        mag_g = self.cache.get(None if key is None else ("grad", key, gc["sigma"], gc["eps"], lr),
                               lambda: gradient_magnitude(g, gc["sigma"], gc["eps"], lr))
        grad_err = (mag_g - mag_p) ** 2
        out["pha_grad"] = float(grad_err.sum() * 1e-3)
        if lr:
            out["pha_conn"] = connectivity(p, g, self.cfg["conn"]["step"], self.cfg["conn"]["theta"])
        if pred_fgr is not None and true_fgr is not None:
            fg = g > 0
            diff = _f32(pred_fgr) - _f32(true_fgr)
            out["fgr_mad"] = _masked_mean(np.abs(diff), fg) * 1e3
            out["fgr_mse"] = _masked_mean(diff * diff, fg) * 1e3
        if true_hair is not None:
            hair = cv2.dilate((_f32(true_hair) > 0).astype(np.uint8), self._hair_kernel) > 0
            out["hair_mad"] = _masked_mean(np.abs(err), hair) * 1e3
            out["hair_mse"] = _masked_mean(err * err, hair) * 1e3
            out["hair_grad"] = float(grad_err[hair].sum() * 1e-3) if hair.any() else math.nan
        if true_classes is not None:
            labels = np.asarray(true_classes)
            for name in CLASS_REGIONS:
                # the class's pixels, widened as the hair region is (the error round an edge counts)
                mine = labels == 1 + CLASS_LABELS.index(name)
                region = cv2.dilate(mine.astype(np.uint8), self._hair_kernel) > 0 if name != "rest" else mine
                out[f"{name}_mad"] = _masked_mean(np.abs(err), region) * 1e3
                out[f"{name}_mse"] = _masked_mean(err * err, region) * 1e3
        if true_others is not None:
            others = _f32(true_others) > 0
            for name, region in (("others", others), ("target", ~others)):
                out[f"{name}_mad"] = _masked_mean(np.abs(err), region) * 1e3
                out[f"{name}_mse"] = _masked_mean(err * err, region) * 1e3
        mc = self.cfg["messddt"]
        region = None
        if mc["enabled"] and mc["region"] == "unknown":
            region = cv2.dilate(((g > 0) & (g < 1)).astype(np.uint8), self._unknown_kernel).astype(np.float32)
        return out, Frame(p, g, region, key)

    def pair(self, prev: Frame | None, cur: Frame) -> dict[str, float]:
        """The temporal metrics of `cur` after `prev` (None: the clip's first frame, which scores 0)."""
        mc = self.cfg["messddt"]
        out = {"pha_dtssd": 0.0 if prev is None else dtssd(prev.pred, cur.pred, prev.true, cur.true)}
        if mc["enabled"]:
            if prev is None:
                out["pha_messddt"] = 0.0
            else:
                keyed = prev.key is not None and cur.key is not None
                flow = self.cache.get(("flow", prev.key, cur.key, mc["dis_preset"]) if keyed else None,
                                      lambda: ground_truth_flow(prev.true, cur.true, mc["dis_preset"]))
                out["pha_messddt"] = messddt(prev.pred, cur.pred, prev.true, cur.true, flow, prev.region, cur.region)
        return out


def join(own: Mapping[str, float], temporal: Mapping[str, float]) -> dict[str, float]:
    """One frame's metrics in report order."""
    both = {**own, **temporal}
    return {k: both[k] for k in ORDER if k in both}


def clip_metrics(pred_pha: np.ndarray, true_pha: np.ndarray, pred_fgr: np.ndarray | None = None,
                 true_fgr: np.ndarray | None = None, true_hair: np.ndarray | None = None, protocol: str = "lr",
                 cfg: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Per-frame metrics of one clip: alphas (T, H, W), foregrounds (T, H, W, 3), hair alpha (T, H, W)."""
    if len(pred_pha) != len(true_pha):
        raise ValueError(f"{len(pred_pha)} predicted frames but {len(true_pha)} true frames")
    scorer = ClipScorer(protocol, cfg)
    pick = lambda a, t: None if a is None else a[t]  # noqa: E731
    rows = [scorer.add(pred_pha[t], true_pha[t], pick(pred_fgr, t), pick(true_fgr, t), pick(true_hair, t))
            for t in range(len(true_pha))]
    return stack(rows)


def stack(rows: Iterable[Mapping[str, float]]) -> dict[str, np.ndarray]:
    rows = list(rows)
    return {k: np.array([r[k] for r in rows], np.float64) for k in (rows[0] if rows else {})}


def clip_means(per_frame: Mapping[str, np.ndarray]) -> dict[str, float]:
    """A clip's value of each metric: the mean over its frames (frames where it is undefined skipped)."""
    return {k: _nanmean(v) for k, v in per_frame.items()}


def dataset_means(clips: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean over clips of each clip mean: every clip weighs the same, whatever its length."""
    names = list(dict.fromkeys(k for c in clips.values() for k in c))
    return {k: _nanmean(np.array([c.get(k, math.nan) for c in clips.values()], np.float64)) for k in names}


def _nanmean(v: np.ndarray) -> float:
    v = np.asarray(v, np.float64)
    return float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else math.nan


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)

