"""torch.autograd.gradcheck of every API.

Run: ``python -m tests.check_grad [cpu|cuda]``
"""

import sys

import torch

import corr_taichi
from corr_taichi.compat import flownet2, mmcv


def main(device: str = "cpu") -> int:
    def inputs(shape):
        return tuple(torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True) for _ in range(2))

    cases = {
        "correlation": (lambda a, b: corr_taichi.correlation(a, b, kernel_size=(2, 3), patch_size=(3, 4), stride=(1, 2),
                                                             padding=1, dilation=(2, 1), dilation_patch=(1, 2)),
                        (1, 2, 7, 8)),
        "CorrTaichi": (corr_taichi.CorrTaichi(max_disp=3, dila_patch=2), (2, 3, 6, 6)),
        "flownet2": (flownet2.Correlation(pad_size=2, kernel_size=3, max_displacement=2, stride1=2, stride2=1),
                     (1, 2, 7, 8)),
        "mmcv": (mmcv.Correlation(kernel_size=3, max_displacement=1, stride=2, padding=1), (1, 2, 7, 7)),
    }
    for name, (fn, shape) in cases.items():
        ok = torch.autograd.gradcheck(fn, inputs(shape))
        print(f"{name:<12} gradcheck {'passed' if ok else 'FAILED'} ({device})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cpu"))
