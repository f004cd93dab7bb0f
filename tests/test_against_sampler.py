"""Cross-check against the real spatial_correlation_sampler when it is installed (CI builds it)."""

import pytest

from . import check_fwd_with_other_impl


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside spatial_correlation_sampler
def test_matches_spatial_correlation_sampler():
    pytest.importorskip("spatial_correlation_sampler", reason="spatial_correlation_sampler not installed")
    assert check_fwd_with_other_impl.main("cpu") == 0
