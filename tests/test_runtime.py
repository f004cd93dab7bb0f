"""Runtime rules: silent lazy start, a user-initialised runtime respected."""

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


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
