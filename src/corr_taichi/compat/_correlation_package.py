"""Stand-in for flownet2-pytorch's ``correlation_package`` package (see ``install_aliases``)."""

from . import flownet2 as correlation  # noqa: F401  (``correlation_package.correlation``)
