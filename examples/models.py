"""Small FlowNetC-style and PWC-style networks built on corr_taichi (no pretrained weights exist
for them here: train them, e.g. with train_synthetic.py)."""

import torch
import torch.nn.functional as F
from torch import nn

import corr_taichi
from corr_taichi.compat import flownet2


def conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1))


class FlowNetCLite(nn.Module):
    """FlowNetC's structure at small width: shared encoder, flownet2-style correlation at 1/4
    resolution (pad 8, max displacement 8, stride2 2: 81 channels), a decoder to flow at 1/4, upsampled."""

    def __init__(self, width=32):
        super().__init__()
        self.encoder = nn.Sequential(conv(3, width // 2, 2), conv(width // 2, width, 2))
        self.corr = flownet2.Correlation(pad_size=8, kernel_size=1, max_displacement=8, stride1=1, stride2=2)
        self.redir = conv(width, width // 2)
        self.decoder = nn.Sequential(conv(81 + width // 2, 64), conv(64, 48), nn.Conv2d(48, 2, 3, 1, 1))

    def forward(self, img1, img2):
        f1, f2 = self.encoder(img1), self.encoder(img2)
        x = torch.cat([F.leaky_relu(self.corr(f1, f2), 0.1), self.redir(f1)], 1)
        flow = self.decoder(x) * 4  # in pixels of the 1/4-resolution grid, scaled to full resolution
        return F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False)


def backwarp(x, flow):
    _, _, h, w = x.shape
    y, xx = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
    grid = torch.stack(((xx + flow[:, 1]) / (w - 1) * 2 - 1, (y + flow[:, 0]) / (h - 1) * 2 - 1), -1)
    return F.grid_sample(x, grid, align_corners=True)


class PWCLite(nn.Module):
    """PWC-Net's structure at small width: a feature pyramid of ``levels`` levels (1/2 to 1/2**levels), then
    coarse to fine, per level, warping by the upsampled coarser flow, a 9 x 9 cost volume
    (spatial_correlation_sampler semantics) and a flow estimator.  Two levels by default (for the training
    example); PWC-Net itself has five to six (the cold-start benchmark times five: each level's channels and
    size are a configuration of its own)."""

    WIDTHS = (16, 32, 64, 96, 128, 196)

    def __init__(self, levels=2):
        super().__init__()
        if not 1 <= levels <= len(self.WIDTHS):
            raise ValueError(f"levels must be 1 to {len(self.WIDTHS)}, got {levels}")
        widths = self.WIDTHS[:levels]
        self.features = nn.ModuleList(nn.Sequential(conv(cin, cout, 2), conv(cout, cout))
                                      for cin, cout in zip((3,) + widths, widths))
        self.corr = corr_taichi.Correlation(patch_size=9)
        # the coarsest level's estimator sees the cost volume alone, the others also the upsampled flow
        self.estimators = nn.ModuleList(nn.Sequential(conv(81 + (2 if i < levels - 1 else 0), 48), conv(48, 32),
                                                      nn.Conv2d(32, 2, 3, 1, 1)) for i in range(levels))

    def cost(self, f1, f2):
        b, c, h, w = f1.shape
        return F.leaky_relu(self.corr(f1, f2).view(b, 81, h, w) / c, 0.1)

    def forward(self, img1, img2):
        pyramid1, pyramid2 = [], []
        for level in self.features:
            img1, img2 = level(img1), level(img2)
            pyramid1.append(img1)
            pyramid2.append(img2)
        flow = None  # in pixels of the current level's grid
        for a, b, estimate in reversed(list(zip(pyramid1, pyramid2, self.estimators))):
            if flow is None:
                flow = estimate(self.cost(a, b))
                continue
            up = F.interpolate(flow, size=a.shape[2:], mode="bilinear", align_corners=False) * 2
            flow = up + estimate(torch.cat([self.cost(a, backwarp(b, up)), up], 1))
        return F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=False) * 2
