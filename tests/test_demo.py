"""`jamspotter demo --quick` runs the whole pipeline end to end (what `make demo` runs, smaller)."""

import json

from typer.testing import CliRunner

from jamspotter.cli import app


def test_demo_quick_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "belt" / "preview.png").stat().st_size > 10_000
    first = json.loads((out / "belt_qwen2.5-vl.jsonl").read_text().splitlines()[0])
    assert "bbox_2d" in first["messages"][-1]["content"] and first["images"]
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n_images"] == 8 and metrics["n_gt"] > 0
    sim = json.loads((out / "twin" / "simulation.json").read_text())
    assert sim and (out / "twin" / "recall_sweep.png").is_file()
    assert (out / "runs" / "tiny" / "final" / "model.safetensors").is_file()
