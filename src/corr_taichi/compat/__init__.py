"""Drop-in replacements for the correlation layers users come from.

* :mod:`corr_taichi.compat.spatial_correlation_sampler` -- the PyPI ``spatial_correlation_sampler``;
* :mod:`corr_taichi.compat.flownet2` -- NVIDIA flownet2-pytorch's ``correlation_package``;
* :mod:`corr_taichi.compat.mmcv` -- ``mmcv.ops.Correlation``;
* :mod:`corr_taichi.compat.gwcnet` -- GwcNet's ``groupwise_correlation`` and ``build_gwc_volume``;
* :mod:`corr_taichi.compat.corr_sampler` -- RAFT-Stereo's ``corr_sampler`` CUDA extension;
* :mod:`corr_taichi.compat.alt_cuda_corr` -- RAFT's ``alt_cuda_corr`` CUDA extension (also imported by
  GMA, MemFlow, VideoFlow, ptlflow's models and others).

:func:`install_aliases` makes existing model code that imports the originals run unchanged.
"""

from __future__ import annotations

import importlib
import sys
import types

#: module name model code imports -> this package's drop-in.
ALIASES = {
    "spatial_correlation_sampler": "corr_taichi.compat.spatial_correlation_sampler",
    "correlation_package": "corr_taichi.compat._correlation_package",
    "correlation_package.correlation": "corr_taichi.compat.flownet2",
    "corr_sampler": "corr_taichi.compat.corr_sampler",
    "alt_cuda_corr": "corr_taichi.compat.alt_cuda_corr",
}


def install_aliases() -> dict[str, types.ModuleType]:
    """Make ``import spatial_correlation_sampler``, ``from correlation_package.correlation import
    Correlation`` and ``import corr_sampler`` (RAFT-Stereo) resolve to this package's drop-ins (for this
    Python process).

    Call it once, before the model code is imported.  A module of the same name that is already
    imported is replaced.  Returns the installed aliases.

    Example:
        >>> import corr_taichi.compat
        >>> _ = corr_taichi.compat.install_aliases()
        >>> from spatial_correlation_sampler import SpatialCorrelationSampler
        >>> SpatialCorrelationSampler.__module__
        'corr_taichi.compat.spatial_correlation_sampler'
    """
    installed = {}
    for alias, target in ALIASES.items():
        module = importlib.import_module(target)
        sys.modules[alias] = module
        installed[alias] = module
    return installed
