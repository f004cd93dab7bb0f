"""Runtime rules: silent lazy start, a user-initialised runtime respected."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from .fresh import run


def test_normal_use_prints_and_warns_nothing():
    result = run(
        """
        import warnings
        warnings.simplefilter("error")
        import torch, corr_taichi
        x = torch.randn(1, 4, 6, 7, requires_grad=True)
        out = corr_taichi.correlation(x, x.detach() * 2, patch_size=3)
        out.sum().backward()
        corr_taichi.CorrTaichi(2, 2)(x, x)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_lazy_start_matches_device_and_torch_threads():
    result = run(
        """
        import torch, corr_taichi
        from corr_taichi import _runtime
        torch.set_num_threads(1)
        assert not _runtime.is_initialised()
        corr_taichi.correlation(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3))
        import taichi as ti
        print(_runtime.current_arch_name(), ti.lang.impl.current_cfg().cpu_max_num_threads)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["x64", "1"]


def test_user_initialised_runtime_is_respected():
    result = run(
        """
        import taichi as ti, torch
        ti.init(arch=ti.cpu, cpu_max_num_threads=1, debug=True)
        import corr_taichi
        x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
        corr_taichi.correlation(x, x, patch_size=3, kernel_size=2)
        cfg = ti.lang.impl.current_cfg()
        print(cfg.cpu_max_num_threads, cfg.debug)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["1", "True"]


def test_a_user_cpu_runtime_keeps_its_scalarize_setting_and_the_kernels_compile_as_vectors(tmp_path):
    """Taichi's default real_matrix_scalarize=True is the user's to keep; this package's CPU kernels compile
    unscalarised even so (scalarised, a FlowNetC-sized forward compiled for minutes)."""
    result = run(
        """
        import time, taichi as ti, torch, corr_taichi
        from corr_taichi import reference
        ti.init(arch=ti.cpu)
        x0, x1 = torch.randn(1, 64, 12, 16, dtype=torch.float64), torch.randn(1, 64, 12, 16, dtype=torch.float64)
        start = time.perf_counter()
        out = corr_taichi.CorrTaichi(max_disp=8, dila_patch=2)(x0, x1)
        seconds = time.perf_counter() - start
        expected = reference.correlation(x0, x1, patch_size=9, dilation_patch=2).flatten(1, 2)
        print(torch.allclose(out, expected, rtol=1e-12, atol=1e-12), ti.lang.impl.current_cfg().real_matrix_scalarize,
              seconds < 60)
        """, env={"TI_OFFLINE_CACHE_FILE_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["True", "True", "True"]


def test_quick_compile_kernels_compile_without_taichis_ir_optimiser_and_the_users_options_come_back(tmp_path):
    """``locked.quick_compile`` kernels compile on taichi's CPU backend with ``advanced_optimization`` off
    (on quadrants it is left alone), every kernel of this package unscalarised; in a runtime the user started
    with Taichi's defaults, both options are the user's again after each call, and the user's own kernel
    compiles with them.  Each kernel notes the options while its front end runs, inside its first call."""
    result = run("""
        import taichi as ti, torch
        ti.init(arch=ti.cpu)
        from corr_taichi import _runtime

        cfg, seen = ti.lang.impl.current_cfg(), []

        def options():
            seen.append((cfg.advanced_optimization, cfg.real_matrix_scalarize))
            return 1

        def kernel():
            @ti.kernel
            def mark(x: ti.types.ndarray(ndim=1)):
                one = ti.static(options())
                x[0] = one
            return mark

        for wrap in (_runtime.locked.quick_compile, _runtime.locked, lambda k: k):
            mark, x = wrap(kernel()), torch.zeros(1, dtype=torch.int32)
            seen.clear()
            mark(x)
            mark(x)  # compiled already
            print("compiled", *sorted(set(seen)), "after", (cfg.advanced_optimization, cfg.real_matrix_scalarize))
            assert x.item() == 1
        """, file=tmp_path / "options.py")  # a file: Taichi reads a kernel's source
    assert result.returncode == 0, result.stderr
    quadrants = os.environ.get("CORR_TAICHI_BACKEND", "").strip().lower() == "quadrants"
    assert [line for line in result.stdout.splitlines() if line.startswith("compiled")] == [
        f"compiled ({quadrants}, False) after (True, True)",  # quick_compile; the user's options after the call
        "compiled (True, False) after (True, True)",  # every kernel of this package: unscalarised
        "compiled (True, True) after (True, True)",  # the user's own kernel: the user's options
    ]


def test_explicit_init_and_environment_variable():
    result = run(
        """
        import os
        os.environ["CORR_TAICHI_ARCH"] = "cpu"
        import torch, corr_taichi
        from corr_taichi import _runtime
        corr_taichi.correlation(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2))
        print(_runtime.current_arch_name())
        try:
            corr_taichi.init("tpu")
        except ValueError as e:
            print("refused:", e)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "x64"
    assert "refused: arch must be one of cpu, cuda" in result.stdout


# Which of the process's threads run on a single CPU, and how long each has run (Linux's /proc).
_THREADS = """
import os
def single_cpu_threads():
    out = {}
    for tid in map(int, os.listdir("/proc/self/task")):
        cpus = os.sched_getaffinity(tid)
        if len(cpus) == 1:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[tid] = (next(iter(cpus)), int(f.read().split()[0]))
    return out
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="thread pinning is Linux's, and needs two CPUs to show")
@pytest.mark.parametrize("how", ["init", "environment"])
def test_pinned_threads_are_the_workers_one_per_cpu(how):
    """With pinning requested, Taichi's CPU workers (torch's thread count of them) run one per CPU, and
    they are the threads that compute: after a large call each has run for a while."""
    start = ("corr_taichi.init('cpu', pin_threads=True)" if how == "init"
             else "os.environ['CORR_TAICHI_PIN_THREADS'] = '1'")
    result = run(
        _THREADS + f"""
        import torch, corr_taichi
        from corr_taichi import reference
        torch.set_num_threads(2)
        assert not single_cpu_threads()
        {start}
        x1, x2 = torch.randn(4, 32, 48, 64, dtype=torch.float64), torch.randn(4, 32, 48, 64, dtype=torch.float64)
        out = corr_taichi.correlation(x1, x2, patch_size=9)
        assert torch.allclose(out, reference.correlation(x1, x2, patch_size=9))
        before = single_cpu_threads()
        for _ in range(5):
            corr_taichi.correlation(x1, x2, patch_size=9)
        after = single_cpu_threads()
        print(*sorted(cpu for cpu, _ in after.values()))
        print(min(after[t][1] - before[t][1] for t in after) > 10**6)
        """.replace("\n        ", "\n")
    )
    assert result.returncode == 0, result.stderr
    cpus, busy = result.stdout.splitlines()[-2:]
    assert len(set(cpus.split())) == 2 and busy == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread affinity is read from Linux's /proc")
def test_threads_are_not_pinned_by_default_and_a_bad_setting_is_refused():
    result = run(
        _THREADS + """
        import os, torch, corr_taichi
        corr_taichi.correlation(torch.randn(1, 2, 5, 5), torch.randn(1, 2, 5, 5), patch_size=3)
        print(len(single_cpu_threads()) if len(os.sched_getaffinity(0)) > 1 else 0)
        from corr_taichi import _runtime
        os.environ["CORR_TAICHI_PIN_THREADS"] = "yes"
        try:
            corr_taichi.init("cpu")
        except ValueError as e:
            print("refused:", e)
        """.replace("\n        ", "\n")
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1] == "refused: CORR_TAICHI_PIN_THREADS must be 0 or 1, got 'yes'"


INSTALLED = [name for name in ("taichi", "quadrants") if importlib.util.find_spec(name) is not None]


@pytest.mark.parametrize("backend", INSTALLED)
def test_the_backend_a_user_started_is_used_without_being_named(backend):
    """With ``CORR_TAICHI_BACKEND`` unset, a runtime the user started with either implementation is the one
    the layer runs on (the other is not even imported), and the results match the reference."""
    code = f"""
        import sys, torch
        import {backend} as ti
        ti.init(arch=ti.cpu, cpu_max_num_threads=1)
        import corr_taichi
        from corr_taichi import _runtime, reference
        x1, x2 = torch.randn(2, 5, 7, 9, dtype=torch.float64), torch.randn(2, 5, 7, 9, dtype=torch.float64)
        got = corr_taichi.correlation(x1, x2, patch_size=3)
        torch.testing.assert_close(got, reference.correlation(x1, x2, patch_size=3))
        other = "quadrants" if "{backend}" == "taichi" else "taichi"
        print(_runtime.BACKEND, other in sys.modules, ti.lang.impl.current_cfg().cpu_max_num_threads)
        """
    env = {key: value for key, value in os.environ.items() if key != "CORR_TAICHI_BACKEND"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == [backend, "False", "1"]  # after the banner of the user's own import


def test_a_backend_name_is_checked_and_each_installed_one_runs():
    code = """
        import torch
        try:
            import corr_taichi
        except ValueError as e:
            print("refused:", e)
        """
    result = run(code, env={"CORR_TAICHI_BACKEND": "cuda"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused: CORR_TAICHI_BACKEND must be one of taichi, quadrants, got 'cuda'"
    for backend in INSTALLED:
        result = run("""
            import torch, corr_taichi
            from corr_taichi import _runtime
            x = torch.randn(1, 3, 4, 6)
            corr_taichi.correlation(x, x, patch_size=3).sum()
            print(_runtime.BACKEND)
            """, env={"CORR_TAICHI_BACKEND": backend})
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{backend}\n"  # and nothing else: no banner, no warning
        assert result.stderr == ""


def test_the_users_kernels_compile_with_taichis_own_front_end(tmp_path):
    """This package's kernels compile with a leaner Taichi 1.7 front end (no per-node source excerpts, each
    function's source read once); a kernel of the user's, compiled after them, gets Taichi's full error
    messages, with the faulty expression underlined."""
    result = run("""
        import torch, corr_taichi
        from corr_taichi import _runtime
        x = torch.randn(1, 3, 5, 6, requires_grad=True)
        corr_taichi.correlation(x, x.detach(), patch_size=3).sum().backward()
        ti = _runtime.ti

        @ti.kernel
        def broken(a: ti.types.ndarray(ndim=1)):
            for i in a:
                a[i] = undefined_name + 1

        try:
            broken(torch.zeros(4))
        except Exception as e:
            print(type(e).__name__)
            print(str(e))
        """, file=tmp_path / "user_kernel.py")  # a file: Taichi reads a kernel's source
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] in ("TaichiNameError", "QuadrantsNameError")
    assert "undefined_name + 1" in result.stdout and "^^^" in result.stdout


def test_the_quick_class_check_answers_as_taichis_own_and_is_put_back(tmp_path):
    """``taichi.lang.matrix_ops`` is imported at ``import corr_taichi`` with a quicker stand-in for Taichi
    1.7's ``_inside_class`` (whether a decorated function sits in a class body); the stand-in answers as
    Taichi's own does, and Taichi's own is back in place afterwards."""
    result = run("""
        import sys, corr_taichi
        from corr_taichi import _runtime
        if _runtime._FRONT_END is None:  # another implementation: nothing is replaced
            print("skip")
            raise SystemExit
        kernel_impl = _runtime._FRONT_END[1]
        print(kernel_impl._inside_class.__module__, "taichi.lang.matrix_ops" in sys.modules)

        def both():  # what each says about the statement that called this function
            return kernel_impl._inside_class(2), _runtime._inside_class_quickly(2)

        at_module = both()
        class Body: in_body = both()
        class Plain:
            in_body = both()
        print(at_module, Body.in_body, Plain.in_body)
        """, file=tmp_path / "probe.py")  # a file: both read the calling statement's source
    assert result.returncode == 0, result.stderr
    if result.stdout.strip() == "skip":
        pytest.skip("the quick class check is only used on taichi 1.7")
    first, second = result.stdout.splitlines()
    assert first == "taichi.lang.kernel_impl True"
    assert second == "(False, False) (True, True) (False, False)"


def test_the_lean_front_end_builds_the_kernel_taichis_own_builds(tmp_path):
    """What the lean Taichi 1.7 front end builds differently (zero vectors and matrices, the range checks of
    integer constants, the lanes that ``lanes_from`` and ``column`` take) gives the kernel that Taichi's
    own front end gives: compiled in one mode and then in the other with one offline cache, which Taichi
    keys by the kernel's IR, the second process finds it there, and both compute the same values (float64
    and float32, so that a stand-in building the wrong type would show).  Afterwards Taichi's own
    functions are back."""
    code = """
        import os
        import numpy as np
        import corr_taichi
        from corr_taichi import _kernel_helpers, _runtime
        if _runtime._FRONT_END is None:  # another implementation: nothing is replaced
            print("skip")
            raise SystemExit
        ti = _runtime.ti
        lean = os.environ["MODE"] == "lean"
        if not lean:  # Taichi's own subscript for the lanes too
            _kernel_helpers.lane = lambda vector, index: ti.lang.impl.subscript(None, vector, index)
        corr_taichi.init("cpu", offline_cache_file_path=os.environ["CACHE"])

        @ti.kernel
        def probe(x: ti.types.ndarray(dtype=ti.f64, ndim=1), y: ti.types.ndarray(dtype=ti.f32, ndim=1)):
            for i in range(1):
                acc = [ti.Vector.zero(ti.f64, 4) for _ in ti.static(range(2))]
                grid = ti.Matrix.one(ti.f32, 2, 3)
                v = ti.Vector([x[0], x[1], x[2], x[3]])
                w = v * 2
                acc[0] += v * 3
                acc[1] += ti.Vector(ti.static(_kernel_helpers.column((v, w, w, v), 3)))
                grid[1, 2] += y[0]
                big = ti.u32(4294967295)
                for j in ti.static(range(4)):
                    x[j] = acc[0][j] + acc[1][j] * 0.125
                for j in ti.static(range(3)):
                    y[j] = grid[0, j] + grid[1, j] * 10 + ti.cast(big % ti.u32(1000), ti.f32)

        x, y = np.array([1.5, -2.25, 3.125, 7.0]), np.array([0.5, 0.0, 0.0], np.float32)
        if lean:
            with _runtime.LOCK, _runtime._lean_front_end():
                probe(x, y)
        else:
            probe(x, y)
        print(repr(x.tolist()), repr(y.tolist()))
        replaced = [getattr(owner, name) is full for owner, name, full, _ in _runtime._SWAPS]
        print(all(replaced), len(replaced))
        """
    outputs = []
    for mode in ("full", "lean"):
        result = run(code, env={"MODE": mode, "CACHE": str(tmp_path / "cache")}, file=tmp_path / "probe.py")
        assert result.returncode == 0, result.stderr
        if result.stdout.strip() == "skip":
            pytest.skip("the lean front end is only used on taichi 1.7")
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    x_list, y_list, back = outputs[0].replace("] [", "]\n[").splitlines()
    # by hand: acc[0] = 3 v; acc[1] = lane 3 of (v, 2 v, 2 v, v) = (7, 14, 14, 7); 4294967295 % 1000 = 295
    assert eval(x_list) == [4.5 + 0.875, -6.75 + 1.75, 9.375 + 1.75, 21.0 + 0.875]
    assert eval(y_list) == [1.0 + 10 + 295, 1.0 + 10 + 295, 1.0 + 15 + 295]
    assert back == "True 8"
    assert len(list((tmp_path / "cache").rglob("*.tic"))) == 1  # one kernel: the second process found it
