"""The benchmark tool runs end to end and reports what it measured (speed itself is never asserted)."""

import json

import pytest

from corr_taichi import bench


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
