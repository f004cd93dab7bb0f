"""Drop-in replacements for the correlation layers users come from.

* :mod:`corr_taichi.compat.spatial_correlation_sampler` -- the PyPI ``spatial_correlation_sampler``;
* :mod:`corr_taichi.compat.flownet2` -- NVIDIA flownet2-pytorch's ``correlation_package``;
* :mod:`corr_taichi.compat.mmcv` -- ``mmcv.ops.Correlation``.
"""
