"""Colour transfer functions and the 16-bit alpha encoding, shared by the renderer, the store,
training and evaluation."""
from __future__ import annotations

import numpy as np

ALPHA_MAX = 65535  # uint16 alpha: linear coverage 0..1 as 0..65535


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def quantise_alpha(coverage: np.ndarray) -> np.ndarray:
    """Linear coverage in [0, 1] (clipped) -> uint16 alpha."""
    return np.round(np.clip(coverage, 0.0, 1.0) * ALPHA_MAX).astype(np.uint16)


def alpha_float(alpha16: np.ndarray) -> np.ndarray:
    """uint16 alpha -> float32 coverage in [0, 1]."""
    return np.asarray(alpha16).astype(np.float32) / ALPHA_MAX


REC709_LUMA = np.array([0.2126, 0.7152, 0.0722])   # linear Rec.709 / sRGB primaries


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ REC709_LUMA


_SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_D65 = np.array([0.95047, 1.0, 1.08883])


def linear_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of linear sRGB."""
    t = (np.asarray(rgb, float) @ _SRGB_TO_XYZ.T) / _D65
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def individual_typology_angle(rgb: np.ndarray) -> np.ndarray:
    """ITA in degrees, arctan((L* - 50) / b*): the dermatological skin-tone scale (above 55 very
    light, 41-55 light, 28-41 intermediate, 10-28 tan, -30-10 brown, below -30 dark)."""
    lab = linear_to_lab(rgb)
    return np.degrees(np.arctan2(lab[..., 0] - 50, lab[..., 2]))
