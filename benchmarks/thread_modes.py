"""The row path's two speeds on this machine: both of Taichi's threads at work, or about one thread's.

Run: ``python benchmarks/thread_modes.py`` (output in benchmarks/thread-modes.txt).  PWC level 2's
forward kernel alone (inputs in place, the same output buffer each call, so no copies and no page
faults), 60 calls in a process started with one Taichi thread, 60 in one started with two, and 60 in
one started with two pinned one per CPU (``corr_taichi.init(pin_threads=True)``), each call's time in
ms.  For the unpinned two-thread process it also prints, per call, the CPU time each of the process's
threads spent in it (from ``/proc/self/task/*/schedstat``, in ms) and the CPU that thread last ran on:
the main thread launches, the workers compute.
"""

import os
import subprocess
import sys
import time


def threads_cpu() -> dict[str, tuple[int, int]]:
    """Per thread of this process: (nanoseconds on a CPU so far, the CPU it last ran on)."""
    result = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/self/task/{tid}/stat") as f:
                cpu = int(f.read().rsplit(")", 1)[1].split()[36])
        except (OSError, ValueError, IndexError):
            continue
        result[tid] = (ns, cpu)
    return result


def child(threads: int, pinned: bool) -> None:
    import torch

    from corr_taichi import _runtime
    from openmp_spin import kernel_launch  # (this script's folder is on the path)

    torch.set_num_threads(threads)
    _runtime.init("cpu", pin_threads=pinned, cpu_max_num_threads=threads)
    launch, _ = kernel_launch("pwc2")  # the row path's forward kernel, inputs in place, one output buffer
    launch()  # compiles
    before = threads_cpu()
    lines = []
    for _ in range(60):
        start = time.perf_counter()
        launch()
        ms = (time.perf_counter() - start) * 1e3
        after = threads_cpu()
        ran = sorted(((ns - before[t][0]) / 1e6, cpu) for t, (ns, cpu) in after.items()
                     if t in before and ns - before[t][0] > 100_000)
        before = after
        detail = threads > 1 and not pinned
        lines.append(f"{ms:4.1f}" + (" [" + " ".join(f"{c:.1f}@{p}" for c, p in ran) + "]" if detail else ""))
    print(f"{threads} thread(s){', pinned' if pinned else ''}, ms per call"
          + (" [CPU ms of each busy thread @ its CPU]" if detail else ""))
    per_line = 6 if detail else 15
    for i in range(0, len(lines), per_line):
        print("  " + "  ".join(lines[i:i + per_line]))


def main() -> None:
    for threads, pinned in ((1, False), (2, False), (2, True)):
        subprocess.run([sys.executable, __file__, "--child", str(threads), str(int(pinned))], check=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3] == "1")
    else:
        main()
