"""Skin tones as the individual typology angle: the scale's anchors, and the configured tones span
dark to very light skin."""
import numpy as np
import pytest

from assets import skin
from core.colour import individual_typology_angle, linear_to_lab
from core.conf import load


def test_lab_and_ita_anchors():
    np.testing.assert_allclose(linear_to_lab(np.ones(3)), [100, 0, 0], atol=0.05)
    grey = 0.18419   # linear sRGB of L* = 50
    assert linear_to_lab(np.full(3, grey))[0] == pytest.approx(50, abs=0.05)
    assert individual_typology_angle(np.array([0.6, 0.4, 0.3])) > individual_typology_angle(np.array([0.2, 0.1, 0.06]))


def test_configured_tones_span_the_human_range():
    cfg = load("body/default")["skin"]
    ita = [skin.sample(cfg, s)["ita_deg"] for s in range(300)]
    assert min(ita) < -30 and max(ita) > 55   # dark (< -30) to very light (> 55)
