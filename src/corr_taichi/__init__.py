"""corr_taichi: the correlation (cost-volume) layer of optical-flow and stereo networks, in Taichi.

Public API:

* :func:`correlation` / :class:`Correlation` -- the core op (spatial_correlation_sampler semantics);
* :func:`correlation1d` -- one-sided horizontal correlation for stereo;
* :func:`groupwise_correlation1d` -- group-wise correlation volumes (GwcNet, IGEV-Stereo);
* :func:`volume_lookup1d`, :func:`correlation_lookup1d` -- RAFT-Stereo's 1-D lookup, in a volume or on
  the fly; :mod:`corr_taichi.raft_stereo` -- its ``CorrBlock1D``;
* :func:`correlation_lookup` -- RAFT's flow-guided 2-D lookup, without the all-pairs volume;
  :mod:`corr_taichi.raft` -- RAFT's ``CorrBlock`` and torchvision's ``corr_block`` on it;
* :class:`CorrTaichi` -- the original Taichi layer's API;
* :mod:`corr_taichi.compat` -- drop-ins for spatial_correlation_sampler, flownet2 and mmcv;
* :mod:`corr_taichi.reference` -- a pure-PyTorch implementation (oracle and baseline);
* :func:`init` -- choose the Taichi backend explicitly (otherwise chosen from the tensors' device).
"""

from . import raft, raft_stereo
from ._runtime import init
from .flow import correlation_lookup
from .functional import Correlation, correlation
from .legacy import CorrTaichi
from .stereo import correlation1d, correlation_lookup1d, groupwise_correlation1d, volume_lookup1d

__all__ = ["correlation", "correlation1d", "Correlation", "CorrTaichi", "correlation_lookup",
           "correlation_lookup1d",
           "groupwise_correlation1d", "init", "raft", "raft_stereo", "volume_lookup1d"]
__version__ = "0.1.0"
