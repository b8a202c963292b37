"""bench/gpu.py runs on the CPU with --tiny: builds its set, times both data paths, trains a member, prints its line."""
import pytest

from bench import gpu


@pytest.mark.system
def test_bench_gpu_tiny_runs_on_the_cpu(tmp_path, capsys):
    gpu.main(["--tiny", "--device", "cpu", "--store", str(tmp_path / "tiny.zarr")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    figures = dict(kv.split("=") for kv in last.split())
    assert list(figures) == ["loader_videos_per_s", "resident_videos_per_s", "member_s", "paper_preset_min"]
    values = {k: float(v) for k, v in figures.items()}
    assert all(v > 0 for v in values.values())
    # both figures are printed to 0.1: the extrapolation holds within their rounding
    rounding = 0.05 + 0.05 * gpu.PAPER_MEMBERS / 60
    assert abs(values["paper_preset_min"] - values["member_s"] * gpu.PAPER_MEMBERS / 60) <= rounding + 1e-9
