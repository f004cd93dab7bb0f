import contextlib
import random

import pytest


@pytest.fixture
def rng():
    return random.Random(1234)


#: the tests `make test-fast` leaves out (marked ``slow`` here, in one place): whole modules of fresh
#: interpreters and processes, and by name the ONNX exports, torch.compile, the hypothesis fuzzing,
#: gradcheck, the third-party model code run after install_aliases() and the cold-start benchmark
SLOW_MODULES = {"test_concurrency", "test_distributed", "test_runtime"}
SLOW_NAMES = ("onnx", "torch_compile", "fuzz", "gradcheck", "install_aliases_runs", "cold_start")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in SLOW_MODULES or any(part in item.name for part in SLOW_NAMES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def force_paths():
    """``force_paths(row_path=..., gpu_simple=...)``: the op's one path override
    (:func:`corr_taichi._dispatch.force_paths`), in force until the test ends."""
    from corr_taichi import _dispatch  # here, not at the top: pytest-xdist's controller would import Taichi

    with contextlib.ExitStack() as stack:
        yield lambda **kw: stack.enter_context(_dispatch.force_paths(**kw))


@pytest.fixture
def op_plans():
    """The plans the op ran during the test, in order (:func:`corr_taichi._dispatch.recorded_plans`)."""
    from corr_taichi import _dispatch  # here, not at the top: see force_paths

    with _dispatch.recorded_plans() as plans:
        yield plans
