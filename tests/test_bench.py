"""The benchmark tool runs end to end and reports what it measured (speed itself is never asserted)."""

import importlib.util
import json
import threading
import subprocess
import sys

import pytest

from corr_taichi import _dispatch, bench


@pytest.mark.parametrize("channels_last", [False, True])
def test_bench_json_reports_both_passes_of_each_implementation(tmp_path, channels_last):
    path = tmp_path / "timings.json"
    argv = ["--configs", "--shape", "2,5,7,9", "--params", '{"patch_size": 3, "kernel_size": 3}',
            "--impl", "corr_taichi", "pytorch", "--warmup", "1", "--repeats", "2", "--json", str(path)]
    assert bench.main(argv + (["--channels-last"] if channels_last else [])) == 0
    payload = json.loads(path.read_text())
    assert payload["channels_last"] is channels_last
    assert payload["gemm_gflops"] > 0 and payload["copy_gbs"] > 0
    rows = {(t["impl"], t["pass_"]): t for t in payload["timings"]}
    assert set(rows) == {(impl, p) for impl in ("corr_taichi", "pytorch") for p in ("forward", "backward")}
    for t in rows.values():
        assert t["config"] == "custom"
        assert 0 < t["min_ms"] <= t["median_ms"] <= t["max_ms"]
        assert t["ratio"] == pytest.approx(t["median_ms"] / t["floor_ms"])
    # the backward's floor is twice the forward's (two input gradients)
    assert rows["pytorch", "backward"]["floor_ms"] == pytest.approx(2 * rows["pytorch", "forward"]["floor_ms"])


def test_bench_refuses_an_empty_run():
    with pytest.raises(SystemExit):
        bench.main(["--configs"])


def test_simple_kernel_family_is_timed_with_the_tiled_kernels_off(tmp_path, op_plans):
    """``corr_taichi_simple`` runs every call (forward and backward) with the tiled GPU kernels off, and
    only those calls."""
    path = tmp_path / "timings.json"
    argv = ["--configs", "--shape", "1,3,5,6", "--params", '{"patch_size": 3}', "--impl", "corr_taichi_simple",
            "corr_taichi", "--warmup", "1", "--repeats", "1", "--json", str(path)]
    assert bench.main(argv) == 0
    impls = [t["impl"] for t in json.loads(path.read_text())["timings"]]
    assert impls == ["corr_taichi_simple"] * 2 + ["corr_taichi"] * 2
    seen = [p.forced.gpu_simple for p in op_plans]  # at each call the op ran: were the tiled kernels off?
    half = len(seen) // 2
    assert half and len(seen) == 2 * half and seen == [True] * half + [False] * half
    for impl_plans in (op_plans[:half], op_plans[half:]):  # each implementation's forward and backward calls
        assert {p.backward for p in impl_plans} == {False, True}
    assert not _dispatch.forced().gpu_simple


def test_forcing_the_simple_gpu_kernels_restores_the_choice_and_stays_in_its_thread():
    g = bench.sampler_geometry(8, 40, patch_size=9)

    def tiled():
        return _dispatch.plan(g, (1, 16, 8, 40), "cuda").path == "gpu_tiled"

    assert tiled()
    seen_elsewhere = []
    with pytest.raises(RuntimeError):
        with _dispatch.force_paths(gpu_simple=True):
            assert not tiled()
            other = threading.Thread(target=lambda: seen_elsewhere.append(tiled()))
            other.start()
            other.join()
            raise RuntimeError
    assert tiled() and seen_elsewhere == [True]


def test_bench_pins_taichi_threads_on_request(tmp_path):
    """``--pin-threads`` starts Taichi's CPU runtime pinned (in a process of its own: it restarts
    Taichi) and says so in the title and the JSON; on another device it is refused."""
    path = tmp_path / "timings.json"
    argv = ["-m", "corr_taichi.bench", "--configs", "--shape", "1,3,5,6", "--params", '{"patch_size": 3}',
            "--impl", "corr_taichi", "--warmup", "0", "--repeats", "1", "--pin-threads", "--json", str(path)]
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    payload = json.loads(path.read_text())
    assert payload["pinned_threads"] is True and "(Taichi's pinned)" in payload["title"]
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda", "--pin-threads"])


def test_stereo_configurations_report_time_and_peak_memory(tmp_path, monkeypatch):
    """The stereo configurations, shrunk: every implementation's passes, the peak from a fresh process
    (which reads the same shrunk table: it is passed through the environment), the provenance."""
    from corr_taichi import _bench_stereo

    small = {"gwcnet-crop": ("groupwise", (1, 8, 5, 21), dict(max_disp=6, groups=4)),
             "raft-stereo-kitti": ("lookup", (1, 16, 3, 20), dict(num_levels=2, radius=2)),
             "raft-1024x440": ("flow", (1, 16, 12, 20), dict(num_levels=2, radius=2))}
    monkeypatch.setattr(_bench_stereo, "CONFIGS", small)
    monkeypatch.setattr(_bench_stereo, "LOOKUPS", 2)
    monkeypatch.setattr(_bench_stereo, "peak_mib", lambda *args: 1.0)  # measured for real below
    path = tmp_path / "stereo.json"
    assert bench.main(["--configs", *small, "--warmup", "0", "--repeats", "1", "--json", str(path)]) == 0
    payload = json.loads(path.read_text())
    assert payload["provenance"]["torch"] and payload["provenance"]["cpu"] is not None
    rows = {(t["config"], t["impl"], t["pass_"]) for t in payload["timings"]}
    assert ("gwcnet-crop", "gwcnet_loop", "backward") in rows and ("gwcnet-crop", "corr_taichi", "forward") in rows
    assert ("raft-stereo-kitti", "raft_stereo_alternate", "forward") in rows
    assert ("raft-stereo-kitti", "raft_stereo_alternate", "backward") not in rows  # forward only
    assert ("raft-1024x440", "raft_corrblock", "backward") in rows
    assert ("raft-1024x440", "corr_taichi", "backward") in rows
    assert ("raft-1024x440", "raft_alternate", "backward") not in rows
    assert len(rows) == 2 * 2 + 3 * 2 + 1 + 2 * 2 + 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from Linux's /proc")
def test_stereo_peak_memory_of_a_small_call():
    result = subprocess.run([sys.executable, "-c", (
        "import torch\nfrom corr_taichi import _bench_stereo as b\n"
        "b.CONFIGS['gwcnet-crop'] = ('groupwise', (1, 8, 40, 64), dict(max_disp=6, groups=4))\n"
        "print(b._peak_in_this_process('gwcnet-crop', 'corr_taichi', torch.device('cpu'), torch.float32))")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 0 <= float(result.stdout.split()[-1]) < 200  # MiB: the volume is 0.4 MiB


def test_cold_start_reports_each_backend_case_and_cache_state(tmp_path):
    """``--cold`` runs fresh processes per backend and cache state: the floor case, with one run each."""
    path = tmp_path / "cold.json"
    backends = [name for name in ("taichi", "quadrants") if importlib.util.find_spec(name) is not None]
    assert bench.main(["--cold", "--cases", "floor", "--runs", "1", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [(r["backend"], r["cache"]) for r in rows] == [(b, c) for b in backends for c in ("empty", "warm")]
    for r in rows:
        assert r["case"] == "floor" and r["runs"] == 1 and r["source"] == "installed"
        assert 0 < r["import"] and 0 < r["init"] and 0 < r["forward"] < r["first_forward"]
