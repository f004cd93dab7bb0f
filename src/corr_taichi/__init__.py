"""corr_taichi: the correlation (cost-volume) layer of optical-flow and stereo networks, in Taichi.

Public API:

* :func:`correlation` / :class:`Correlation` -- the core op (spatial_correlation_sampler semantics);
* :func:`correlation1d` -- one-sided horizontal correlation for stereo;
* :class:`CorrTaichi` -- the original Taichi layer's API;
* :mod:`corr_taichi.compat` -- drop-ins for spatial_correlation_sampler, flownet2 and mmcv;
* :mod:`corr_taichi.reference` -- a pure-PyTorch implementation (oracle and baseline);
* :func:`init` -- choose the Taichi backend explicitly (otherwise chosen from the tensors' device).
"""

from ._runtime import init
from .functional import Correlation, correlation
from .legacy import CorrTaichi
from .stereo import correlation1d

__all__ = ["correlation", "correlation1d", "Correlation", "CorrTaichi", "init"]
__version__ = "0.1.0"
