"""Slow, obvious float64 implementations written straight from each API's definition.

Loops over every output element and kernel tap with a NumPy dot over channels; nothing here shares
code with the package, so agreement means the package computes what the definitions say.
"""

import math

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def sampler(x1, x2, kernel_size=1, patch_size=1, stride=1, padding=0, dilation=1, dilation_patch=1):
    """spatial_correlation_sampler: (B, pH, pW, oH, oW)."""
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    kh, kw = _pair(kernel_size)
    ph_, pw_ = _pair(patch_size)
    sh, sw = _pair(stride)
    padh, padw = _pair(padding)
    dh, dw = _pair(dilation)
    dph, dpw = _pair(dilation_patch)
    B, C, H, W = x1.shape
    oh = (H + 2 * padh - ((kh - 1) * dh + 1)) // sh + 1
    ow = (W + 2 * padw - ((kw - 1) * dw + 1)) // sw + 1
    out = np.zeros((B, ph_, pw_, oh, ow))
    for b in range(B):
        for p in range(ph_):
            for q in range(pw_):
                su = (p - (ph_ - 1) // 2) * dph
                sv = (q - (pw_ - 1) // 2) * dpw
                for h in range(oh):
                    for w in range(ow):
                        u, v = h * sh - padh, w * sw - padw
                        total = 0.0
                        for i in range(kh):
                            for j in range(kw):
                                y1, xa = u + i * dh, v + j * dw
                                y2, xb = y1 + su, xa + sv
                                if 0 <= y1 < H and 0 <= xa < W and 0 <= y2 < H and 0 <= xb < W:
                                    total += float(np.dot(x1[b, :, y1, xa], x2[b, :, y2, xb]))
                        out[b, p, q, h, w] = total
    return out


def corr_taichi_original(x0, x1, max_disp, dila_patch):
    """The original CorrTaichi: x1 zero-padded by max_disp, (B, P*P, H, W)."""
    x0 = np.asarray(x0, dtype=np.float64)
    x1 = np.asarray(x1, dtype=np.float64)
    B, C, H, W = x0.shape
    P = max_disp * 2 // dila_patch + 1
    x1pad = np.zeros((B, C, H + 2 * max_disp, W + 2 * max_disp))
    x1pad[:, :, max_disp:max_disp + H, max_disp:max_disp + W] = x1
    out = np.zeros((B, P * P, H, W))
    for b in range(B):
        for u in range(P):
            for v in range(P):
                for y in range(H):
                    for x in range(W):
                        out[b, u * P + v, y, x] = np.dot(
                            x0[b, :, y, x], x1pad[b, :, y + u * dila_patch, x + v * dila_patch])
    return out


def flownet2(x1, x2, pad_size, kernel_size, max_displacement, stride1, stride2):
    """NVIDIA flownet2-pytorch Correlation (corr_multiply=1): (B, D*D, oH, oW), divided by k*k*C."""
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    B, C, H, W = x1.shape
    p = pad_size
    r1 = np.zeros((B, C, H + 2 * p, W + 2 * p))
    r2 = np.zeros_like(r1)
    r1[:, :, p:p + H, p:p + W] = x1
    r2[:, :, p:p + H, p:p + W] = x2
    PH, PW = H + 2 * p, W + 2 * p
    kr = (kernel_size - 1) // 2
    border = kr + max_displacement
    dr = max_displacement // stride2
    D = 2 * dr + 1
    oh = math.ceil((PH - 2 * border) / stride1)
    ow = math.ceil((PW - 2 * border) / stride1)
    out = np.zeros((B, D * D, oh, ow))
    nelems = kernel_size * kernel_size * C
    for b in range(B):
        for oy in range(oh):
            for ox in range(ow):
                yc, xc = oy * stride1 + max_displacement, ox * stride1 + max_displacement
                for tj in range(-dr, dr + 1):
                    for ti in range(-dr, dr + 1):
                        total = 0.0
                        for j in range(-kr, kr + 1):
                            for i in range(-kr, kr + 1):
                                ya, xa = yc + j, xc + i
                                yb, xb = ya + tj * stride2, xa + ti * stride2
                                if 0 <= ya < PH and 0 <= xa < PW and 0 <= yb < PH and 0 <= xb < PW:
                                    total += float(np.dot(r1[b, :, ya, xa], r2[b, :, yb, xb]))
                        out[b, (tj + dr) * D + (ti + dr), oy, ox] = total / nelems
    return out


def correlation1d(left, right, max_disp, kernel_size=1, stride=1, padding=0, dilation=1, both_directions=False):
    """One-sided (or two-sided) horizontal correlation: out[:, d] pairs left x with right x - d."""
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    padh, padw = _pair(padding)
    dh, dw = _pair(dilation)
    B, C, H, W = left.shape
    oh = (H + 2 * padh - ((kh - 1) * dh + 1)) // sh + 1
    ow = (W + 2 * padw - ((kw - 1) * dw + 1)) // sw + 1
    disps = list(range(-max_disp, max_disp + 1)) if both_directions else list(range(max_disp + 1))
    out = np.zeros((B, len(disps), oh, ow))
    for b in range(B):
        for k, d in enumerate(disps):
            for h in range(oh):
                for w in range(ow):
                    total = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            y, x = h * sh - padh + i * dh, w * sw - padw + j * dw
                            if 0 <= y < H and 0 <= x < W and 0 <= x - d < W:
                                total += float(np.dot(left[b, :, y, x], right[b, :, y, x - d]))
                    out[b, k, h, w] = total
    return out


def groupwise_correlation1d(left, right, max_disp, groups, **kwargs):
    """Group-wise correlation: per group of C/G channels, correlation1d divided by C/G: (B, G, D, oH, oW)."""
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    per = left.shape[1] // groups
    return np.stack([correlation1d(left[:, g * per:(g + 1) * per], right[:, g * per:(g + 1) * per], max_disp,
                                   **kwargs) / per for g in range(groups)], axis=1)


def volume_lookup1d(volume, coords, radius):
    """Linear sampling of each pixel's row volume[b, h, w, :] at coords[b, h, w] + k, k = -R..R, zero outside
    the row: (B, 2R + 1, H, W1)."""
    volume = np.asarray(volume, dtype=np.float64)
    coords = np.asarray(coords, dtype=np.float64)
    B, H, W1, W2 = volume.shape

    def at(b, h, w, q):
        return volume[b, h, w, q] if 0 <= q < W2 else 0.0

    out = np.zeros((B, 2 * radius + 1, H, W1))
    for b in range(B):
        for h in range(H):
            for w in range(W1):
                for k in range(-radius, radius + 1):
                    p = coords[b, h, w] + k
                    q = math.floor(p)
                    t = p - q
                    out[b, k + radius, h, w] = (1 - t) * at(b, h, w, q) + t * at(b, h, w, q + 1)
    return out


def correlation_lookup1d(fmap1, fmap2, coords, radius, scale):
    """volume_lookup1d of the row volume scale * <fmap1[b, :, h, x1], fmap2[b, :, h, x2]>."""
    fmap1 = np.asarray(fmap1, dtype=np.float64)
    fmap2 = np.asarray(fmap2, dtype=np.float64)
    B, C, H, W1 = fmap1.shape
    W2 = fmap2.shape[3]
    volume = np.zeros((B, H, W1, W2))
    for b in range(B):
        for h in range(H):
            for x1 in range(W1):
                for x2 in range(W2):
                    volume[b, h, x1, x2] = scale * float(np.dot(fmap1[b, :, h, x1], fmap2[b, :, h, x2]))
    return volume_lookup1d(volume, coords, radius)


def volume_lookup1d_coords_grad(volume, coords, radius, grad_out):
    """d/dx of sum_k grad_out[k] * lookup(x + k): sum_k grad_out[k] * (V(q_k + 1) - V(q_k)), q_k = floor(x + k)
    (at an integer, the derivative from the right)."""
    volume = np.asarray(volume, dtype=np.float64)
    B, H, W1, W2 = volume.shape

    def at(b, h, w, q):
        return volume[b, h, w, q] if 0 <= q < W2 else 0.0

    grad = np.zeros((B, H, W1))
    for b in range(B):
        for h in range(H):
            for w in range(W1):
                for k in range(-radius, radius + 1):
                    q = math.floor(float(coords[b, h, w]) + k)
                    grad[b, h, w] += float(grad_out[b, k + radius, h, w]) * (at(b, h, w, q + 1) - at(b, h, w, q))
    return grad


def flow_lookup(fmap1, fmap2, coords, radius, x_major=True, scale=1.0):
    """RAFT's lookup from its definition, on torch float64 tensors (so that autograd gives the reference
    gradients): for each offset (dx, dy) in -R..R, the bilinear sample of fmap2 at (x + dx, y + dy) from
    its four corners (floor-based weights, zero outside), dotted with fmap1.  Channel k = (dx + R)(2R + 1)
    + (dy + R) when x_major, else (dy + R)(2R + 1) + (dx + R).  (B, (2R + 1)**2, H1, W1)."""
    import torch

    B, C, H1, W1 = fmap1.shape
    H2, W2 = fmap2.shape[2:]
    side = 2 * radius + 1
    flat2 = fmap2.reshape(B, C, H2 * W2)
    planes = {}
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            x, y = coords[:, 0] + dx, coords[:, 1] + dy
            x0, y0 = torch.floor(x), torch.floor(y)
            sample = 0
            for cx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                for cy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                    inside = (cx >= 0) & (cx < W2) & (cy >= 0) & (cy < H2)
                    index = (cy.clamp(0, H2 - 1) * W2 + cx.clamp(0, W2 - 1)).long().reshape(B, 1, -1)
                    corner = flat2.gather(2, index.expand(-1, C, -1)).reshape(B, C, H1, W1)
                    sample = sample + corner * (wx * wy * inside).unsqueeze(1)
            k = (dx + radius) * side + (dy + radius) if x_major else (dy + radius) * side + (dx + radius)
            planes[k] = (fmap1 * sample).sum(1) * scale
    return torch.stack([planes[k] for k in range(side * side)], 1)
