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


def test_sheet_rows_end_with_the_close_up(tmp_path):
    root = clipstore.open_store(write_store(tmp_path / "s.zarr", 2))
    plain = contact_sheet.write(root, tmp_path / "a.png", clips=2, frames=2, cell=64, crop=0)
    close = contact_sheet.write(root, tmp_path / "b.png", clips=2, frames=2, cell=64, crop=16)
    a, b = cv2.imread(str(plain)), cv2.imread(str(close))
    assert a.shape[0] == b.shape[0] and b.shape[1] > a.shape[1]
