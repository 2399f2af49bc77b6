import cv2
import numpy as np

import clipstore
from tests.conftest import write_store
from pipelines import contact_sheet


def test_edge_window_finds_the_fractional_hair():
    alpha = np.zeros((100, 120), np.float32)
    alpha[:, :60] = 1.0
    alpha[70:90, 20:40] = 0.5                    # fractional, but not hair
    hair = np.zeros_like(alpha)
    alpha[10:30, 80:100] = 0.4                   # fractional hair
    hair[10:30, 80:100] = 0.4
    ys, xs = contact_sheet.edge_window(alpha, hair, 24)
    assert ys.start <= 10 and ys.stop >= 30 and xs.start <= 80 and xs.stop >= 100
    ys, xs = contact_sheet.edge_window(alpha, None, 24)
    assert ys.stop - ys.start == 24 and xs.stop - xs.start == 24
    # A lens by the parts labels: the window goes to the see-through lens, not to the hair.
    legend = clipstore.OUTPUTS["parts"].parts
    parts = np.where(alpha > 0, 1 + legend.index("skin"), 0)
    parts[10:30, 80:100] = 1 + legend.index("scalp_hair")
    alpha[60:70, 100:115] = 0.1
    parts[60:70, 100:115] = 1 + legend.index("lens")
    masks = clipstore.class_masks(parts, legend)
    assert masks["lens"].sum() == 150 and masks["hair"].sum() == 400 and not (masks["rest"] & masks["lens"]).any()
    ys, xs = contact_sheet.edge_window(alpha, masks["lens"], 24)
    assert ys.start <= 60 and ys.stop >= 70 and xs.start <= 100 and xs.stop >= 115


def test_auto_close_up_looks_at_what_makes_the_clip_hard(tmp_path):
    """crop_on=auto: a clip with steam over the background is seen at the steam, one with a lens
    at the lens, one with neither at its hair."""
    legend = clipstore.OUTPUTS["parts"].parts
    root = clipstore.create(str(tmp_path / "s.zarr"), {})
    for name, label, at in (("steam", "volume", (5, 30)), ("glasses", "lens", (30, 5)), ("plain", None, None)):
        parts = np.zeros((1, 40, 40), np.uint8)
        parts[0, 20:, :20] = 1 + legend.index("skin")
        parts[0, 20:25, 20:30] = 1 + legend.index("scalp_hair")
        if label:
            parts[0, at[0]:at[0] + 4, at[1]:at[1] + 4] = 1 + legend.index(label)
        clipstore.write_clip(root, name, {"fgr": np.zeros((1, 40, 40, 3), np.uint8), "alpha": (parts > 0).astype(np.uint16) * 65535,
                                          "parts": parts}, {"source": "synthetic", "fps": 24.0})
    for name, where in (("steam", (5, 30)), ("glasses", (30, 5)), ("plain", (20, 20))):
        mask = contact_sheet.focus(clipstore.read_clip(root, name), 0, "auto")
        ys, xs = np.nonzero(mask)
        assert ys.min() == where[0] and xs.min() == where[1], name


def test_sheet_rows_end_with_the_close_up(tmp_path):
    root = clipstore.open_store(write_store(tmp_path / "s.zarr", 2))
    plain = contact_sheet.write(root, tmp_path / "a.png", clips=2, frames=2, cell=64, crop=0)
    close = contact_sheet.write(root, tmp_path / "b.png", clips=2, frames=2, cell=64, crop=16)
    a, b = cv2.imread(str(plain)), cv2.imread(str(close))
    assert a.shape[0] == b.shape[0] and b.shape[1] > a.shape[1]


def test_output_views_show_what_each_output_is():
    from matting import sheet
    alpha = np.zeros((40, 40), np.float32)
    alpha[10:30, 10:30] = 1.0
    alpha[0, 0] = 0.004                          # a strand's sliver of a pixel
    flow = np.zeros((40, 40, 2), np.float16)
    flow[10:30, 10:30] = (3.0, 0.0)              # the person moves right by 3 px
    flow[0, 0] = (60.0, 0.0)                     # the sliver far faster
    shown = sheet.rgb8(sheet.view("flow", flow, alpha))
    assert shown[20, 20].max() == 255            # the person at full brightness, not darkened by the sliver
    assert shown[35, 35].max() == 0
    depth = np.where(alpha > 0, 2.0, 0.0).astype(np.float16)
    depth[10:20, 10:30] = 1.0                    # the upper half nearer
    d = sheet.rgb8(sheet.view("distance", depth, alpha))
    assert d[15, 20, 0] > d[15, 20, 2] and d[25, 20, 2] > d[25, 20, 0]   # near red, far blue
    labels = np.zeros((40, 40), np.uint8)
    labels[10:30, 10:30] = 2
    assert (sheet.view("label", labels, alpha)[20, 20] == sheet.PALETTE[2]).all()
