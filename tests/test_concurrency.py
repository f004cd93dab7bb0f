"""Threads and processes, each test in a fresh interpreter (:mod:`tests.fresh`): the first calls of a
process, of a configuration and of a dtype are the ones that compile Taichi kernels, and an earlier test
in the same process would have done that already."""

import pytest

from .fresh import run

# Four threads whose first calls are the process's first calls (a user's report: three of the four died
# on their first call with "Kernels cannot call other kernels").
_FIRST_CALLS = """
    import threading, torch, corr_taichi
    from corr_taichi import reference
    errors, ok = [], []
    start = threading.Barrier(4)

    def work(i):
        gen = torch.Generator().manual_seed(i)
        x1 = torch.randn(1, 4, 11, 13, dtype=torch.float64, generator=gen)
        x2 = torch.randn(1, 4, 11, 13, dtype=torch.float64, generator=gen)
        expected = reference.correlation(x1, x2, patch_size=5, dilation_patch=2)
        start.wait()
        try:
            for _ in range(10):
                got = corr_taichi.correlation(x1, x2, patch_size=5, dilation_patch=2)
                ok.append(torch.allclose(got, expected, rtol=1e-12, atol=1e-12))
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(errors, len(ok), all(ok))
"""


def test_first_calls_of_a_process_from_four_threads():
    result = run(_FIRST_CALLS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "[] 40 True"


def test_thread_stress_with_an_empty_offline_cache(tmp_path):
    """8 threads x 25 calls over every CPU path, forward and backward (tests/thread_stress.py), in float16
    and float32: every compile of the float32 kernels happens under contention (float64 would compile
    each kernel again, doubling the test's time for the same property; the standalone script runs it)."""
    result = run("import sys, torch; from tests import thread_stress; "
                 "sys.exit(thread_stress.main((torch.float16, torch.float32)))",
                 env={"TI_OFFLINE_CACHE_FILE_PATH": str(tmp_path)}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "200 passed, 0 failed"


def test_a_user_runtime_may_be_used_from_threads_once_its_thread_ran_a_kernel():
    """Taichi's CPU backend must run its first kernel on the thread that called ti.init: before that, a
    call from another thread gets a clear error (never an assertion or a crash); after it, every thread
    may call."""
    result = run(
        """
        import threading, taichi as ti, torch, corr_taichi
        ti.init(arch=ti.cpu)
        x = torch.randn(1, 3, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        seen = []

        def call():
            try:
                seen.append(corr_taichi.correlation(x, x, patch_size=3).shape[1])
            except RuntimeError as e:
                seen.append(str(e))

        t = threading.Thread(target=call); t.start(); t.join()
        corr_taichi.correlation(x, x, patch_size=3)  # the first kernel, on ti.init's thread
        threads = [threading.Thread(target=call) for _ in range(3)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(repr(seen[0]))
        print(seen[1:])
        """
    )
    assert result.returncode == 0, result.stderr
    first, rest = result.stdout.splitlines()[-2:]
    assert "started with ti.init() on another thread" in first and "thread that called ti.init()" in first
    assert rest == "[3, 3, 3]"


_DATASET = """
    import torch, corr_taichi
    from corr_taichi import reference

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            a = torch.randn(1, 3, 6, 7, generator=g, dtype=torch.float64)
            b = torch.randn(1, 3, 6, 7, generator=g, dtype=torch.float64)
            return corr_taichi.correlation(a, b, patch_size=3)[0], reference.correlation(a, b, patch_size=3)[0]

    def check(context):
        loader = torch.utils.data.DataLoader(Data(), batch_size=2, num_workers=2, multiprocessing_context=context)
        return all(torch.allclose(got, exp, rtol=1e-12, atol=1e-12) for got, exp in loader)
"""


@pytest.mark.parametrize("context", ["fork", "spawn"])
@pytest.mark.parametrize("parent_started", [False, True])
def test_dataloader_workers(tmp_path, context, parent_started):
    """Workers forked after the parent's first call compute with the pure-PyTorch implementation (Taichi
    cannot run in such a child); spawned workers, and workers forked before it, run the kernels."""
    result = run(
        _DATASET + f"""
    if __name__ == "__main__":
        if {parent_started}:
            corr_taichi.correlation(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4))
        print(check("{context}"))
    """, file=tmp_path / "loader.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_fork_while_another_thread_is_inside_a_launch():
    """A child forked while a thread of the parent holds Taichi (inside a kernel launch) computes, with
    the pure-PyTorch implementation, instead of waiting for a lock that no thread of its own holds."""
    result = run(
        """
        import os, threading, time, torch, corr_taichi
        from corr_taichi import reference
        big = torch.randn(2, 64, 64, 96)
        corr_taichi.correlation(big, big, patch_size=9)
        stop = threading.Event()

        def busy():
            while not stop.is_set():
                corr_taichi.correlation(big, big, patch_size=9)

        thread = threading.Thread(target=busy)
        thread.start()
        statuses = []
        for i in range(5):
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:
                x = torch.randn(1, 3, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
                got = corr_taichi.correlation(x, x, patch_size=3)
                os._exit(0 if torch.allclose(got, reference.correlation(x, x, patch_size=3)) else 1)
            deadline = time.time() + 60
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses.append(os.waitstatus_to_exitcode(status))
                    break
                if time.time() > deadline:
                    os.kill(pid, 9)
                    statuses.append("hung")
                    break
                time.sleep(0.01)
        stop.set()
        thread.join()
        print(statuses)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 0, 0, 0, 0]"


def test_torch_compiled_code_called_from_threads():
    result = run(
        """
        import threading, torch, corr_taichi
        from corr_taichi import reference

        @torch.compile(fullgraph=True, backend="aot_eager")
        def head(a, b):
            return corr_taichi.correlation(a, b, patch_size=5).flatten(1, 2).relu()

        inputs = [tuple(torch.randn(1, 6, 8, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
                        for _ in range(2)) for i in range(4)]
        results, errors = [None] * 4, []

        def work(i):
            try:
                results[i] = head(*inputs[i])
            except Exception as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        expected = [reference.correlation(a, b, patch_size=5).flatten(1, 2).relu() for a, b in inputs]
        print(errors, all(r is not None and torch.allclose(r, e) for r, e in zip(results, expected)))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True"
