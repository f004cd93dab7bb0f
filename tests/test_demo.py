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


def test_patch_features_give_normalised_cross_correlation():
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 1, 12, 13, generator=g)
    f = demo.patch_features(image, 5)
    assert f.shape == (1, 25, 12, 13)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(1, 12, 13))
    torch.testing.assert_close(f.mean(1), torch.zeros(1, 12, 13), atol=1e-6, rtol=0)


def test_refinement_recovers_a_constant_shift():
    g = torch.Generator().manual_seed(4)
    img1 = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 52, 60, generator=g), 3, stride=1, padding=1)
    true = torch.zeros(2, 52, 60)
    true[0], true[1] = 0.6, -1.3  # (y, x)
    img2 = demo.warp(img1, -true[None])
    start = true.round()  # a search's whole-pixel estimate
    flow = demo.refine_flow(img1, img2, start, iterations=4, radius=1, patch=7)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert float((flow - true)[inner].abs().mean()) < 0.15 < float((start - true)[inner].abs().mean())
