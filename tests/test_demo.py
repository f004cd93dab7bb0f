"""The demo's building blocks: sub-pixel refinement, hole filling, scoring, flow colours, warping."""

import numpy as np
import pytest
import torch

demo = pytest.importorskip("corr_taichi.demo")


def test_subpixel_argmax_recovers_parabola_vertex():
    d = torch.arange(10, dtype=torch.float32)
    cost = -(d - 4.3) ** 2  # a parabola peaking at 4.3
    best, _ = demo.subpixel_argmax(cost[:, None], 0)
    assert abs(best.item() - 4.3) < 1e-4


def test_fill_holes_uses_background_neighbour():
    disp = np.array([[5.0, 0.0, 0.0, 2.0, 7.0]])
    valid = np.array([[True, False, False, True, True]])
    np.testing.assert_array_equal(demo.fill_holes(disp, valid), [[5.0, 2.0, 2.0, 2.0, 7.0]])


def test_score_counts_only_valid_ground_truth():
    truth = np.array([[1.0, np.inf, 3.0, 10.0]])
    disp = np.array([[1.5, 99.0, 6.0, 10.0]])
    s = demo.score(disp, truth)
    assert s["bad2"] == pytest.approx(100 / 3) and s["bad4"] == 0.0 and s["mae"] == pytest.approx(3.5 / 3)


def test_flow_colours_follow_the_wheel():
    flow = np.zeros((2, 1, 4), dtype=np.float32)
    flow[1, 0] = [1, -1, 0, 0]  # right, left
    flow[0, 0] = [0, 0, 1, -1]  # down, up
    rgb = demo.flow_to_color(flow, max_norm=1.0).astype(int)
    assert not (rgb[0, 0] == rgb[0, 1]).all() and not (rgb[0, 2] == rgb[0, 3]).all()
    zero = demo.flow_to_color(np.zeros((2, 1, 1), dtype=np.float32), max_norm=1.0)
    assert (zero == 255).all()  # no motion is white


def test_warp_shifts_content():
    img = torch.zeros(1, 1, 5, 7)
    img[0, 0, 2, 3] = 1.0
    flow = torch.zeros(1, 2, 5, 7)
    flow[:, 1] = 1.0  # sample one pixel to the right
    assert demo.warp(img, flow)[0, 0, 2, 2] == pytest.approx(1.0)
