"""Drop-in replacements for the correlation layers users come from.

* :mod:`corr_taichi.compat.spatial_correlation_sampler` -- the PyPI ``spatial_correlation_sampler``;
* :mod:`corr_taichi.compat.flownet2` -- NVIDIA flownet2-pytorch's ``correlation_package``;
* :mod:`corr_taichi.compat.mmcv` -- ``mmcv.ops.Correlation``.

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
}


def install_aliases() -> dict[str, types.ModuleType]:
    """Make ``import spatial_correlation_sampler`` and ``from correlation_package.correlation import
    Correlation`` resolve to this package's drop-ins (for this Python process).

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
