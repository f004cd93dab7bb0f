"""Does a group-wise cost help the demo's stereo (Middlebury Motorcycle, the demo's 9x9 normalised features)?

Run: ``python benchmarks/stereo_demo_groupwise.py`` (output in benchmarks/stereo-demo-groupwise.txt).  Each
line scores winner-take-all disparities of one cost, before the demo's left-right check and hole filling.
The mean over groups is correlation1d itself; a min or median across the colour channels' groups is what
a group-wise volume adds, and it scored worse, so the demo keeps correlation1d.  Gradient features help,
but through the features, which plain correlation1d can use as well.
"""

import torch
import torch.nn.functional as F
from skimage import data

import corr_taichi
from corr_taichi.demo import MAX_DISP, normalised_features, score, subpixel_argmax
left, right, truth = data.stereo_motorcycle()


def t(im):
    return torch.from_numpy(im).float().permute(2, 0, 1)[None] / 255.0


w = 9
def gradients(img):
    gray = img.mean(1, keepdim=True)
    gx = F.pad(gray, (1, 1, 0, 0), mode="replicate")
    gx = gx[..., 2:] - gx[..., :-2]
    gy = F.pad(gray, (0, 0, 1, 1), mode="replicate")
    gy = gy[..., 2:, :] - gy[..., :-2, :]
    return torch.cat([gx, gy], 1)
def run(name, fl, fr, groups, combine):
    # (G, D, H, W)
    vol = corr_taichi.groupwise_correlation1d(fl, fr, MAX_DISP, groups, kernel_size=w, padding=w // 2)[0]
    cost = combine(vol)
    disp, _ = subpixel_argmax(cost, 0)
    d = disp.numpy()
    s = score(d, truth)
    print(f"{name:<40} bad2 {s['bad2']:.1f} bad4 {s['bad4']:.1f} mae {s['mae']:.2f} (no LR check, no fill)")
fl, fr = normalised_features(t(left), w), normalised_features(t(right), w)
run("colour, mean of 3 groups (= correlation1d)", fl, fr, 3, lambda v: v.mean(0))
run("colour, min over 3 groups", fl, fr, 3, lambda v: v.min(0).values)
run("colour, median over 3 groups", fl, fr, 3, lambda v: v.median(0).values)
gl, gr = normalised_features(gradients(t(left)), w), normalised_features(gradients(t(right)), w)
cl, cr = torch.cat([fl, gl], 1), torch.cat([fr, gr], 1)
run("colour+gradients, mean of 5 groups", cl, cr, 5, lambda v: v.mean(0))
run("colour+gradients, min of 5 groups", cl, cr, 5, lambda v: v.min(0).values)
