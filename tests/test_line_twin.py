"""Digital twin: determinism, perfect detector, recall 0 == no detector, config loading, CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from jamspotter.errors import DataError
from jamspotter.line.config import DetectorSpec, detector_from_metrics, load_line_config
from jamspotter.line.twin import simulate


@pytest.fixture(scope="module")
def cfg():
    return load_line_config()


def test_default_config_is_calibrated_near_reference(cfg):
    # reference: 2.5 wrap stops per 16-h day (1-3); allow seed noise over 20 days
    runs = [simulate(cfg, None, 16 * 20, seed=s) for s in range(3)]
    per_day = sum(r.jams for r in runs) / 60
    assert 1.0 <= per_day <= 3.5
    assert all(r.tanglers > 0 and r.wraps > 0 for r in runs)


def test_deterministic_per_seed(cfg):
    det = DetectorSpec(recall=0.6, precision=0.5, latency_s=0.3)
    a, b = simulate(cfg, det, 200, seed=7), simulate(cfg, det, 200, seed=7)
    assert a == b
    c = simulate(cfg, det, 200, seed=8)
    assert (a.jams, a.tanglers, a.false_flags) != (c.jams, c.tanglers, c.false_flags)


def test_perfect_detector_removes_tangler_jams(cfg):
    base = simulate(cfg, None, 320, seed=1)
    perfect = simulate(cfg, DetectorSpec(recall=1.0, precision=1.0, latency_s=0.0), 320, seed=1)
    assert base.jams > 0
    assert perfect.jams == 0 and perfect.wraps == 0 and perfect.downtime_h == 0
    assert perfect.tanglers_picked == perfect.tanglers > 0
    assert perfect.tons_processed > base.tons_processed
    assert perfect.cost_total < base.cost_total


def test_recall_zero_matches_no_detector(cfg):
    base = simulate(cfg, None, 320, seed=3)
    blind = simulate(cfg, DetectorSpec(recall=0.0, precision=0.3, latency_s=0.1), 320, seed=3)
    assert blind.jams == base.jams and blind.jam_times_h == base.jam_times_h
    assert blind.downtime_h == base.downtime_h and blind.tons_recovered == base.tons_recovered
    assert blind.false_flags == 0 and blind.costs == base.costs


def test_latency_longer_than_travel_means_no_picks(cfg):
    slow = DetectorSpec(recall=1.0, precision=1.0, latency_s=60.0)  # 2 m at 0.3 m/s is ~6.7 s
    r = simulate(cfg, slow, 160, seed=0)
    assert r.tanglers_flagged == r.tanglers and r.tanglers_picked == 0
    assert r.jams == simulate(cfg, None, 160, seed=0).jams


def test_low_precision_costs_good_material(cfg):
    det = DetectorSpec(recall=0.9, precision=0.2, latency_s=0.1)
    r = simulate(cfg, det, 160, seed=0)
    assert r.false_picks > 0 and r.costs["false_picks"] > 0


def test_detector_from_metrics_prefers_jam_keys(tmp_path):
    p = tmp_path / "metrics.json"
    p.write_text(json.dumps({"recall": 0.4, "precision": 0.9, "jam_recall": 0.7, "jam_precision": 0.6}))
    d = detector_from_metrics(p, latency_s=0.5)
    assert (d.recall, d.precision, d.latency_s) == (0.7, 0.6, 0.5)
    p.write_text(json.dumps({"recall": 0.4, "precision": 0.9}))
    assert detector_from_metrics(p).recall == 0.4
    p.write_text(json.dumps({"f1": 0.5}))
    with pytest.raises(DataError, match="metrics.json"):
        detector_from_metrics(p)
    # a detector that flagged nothing: precision is undefined (null) but it makes no false picks
    p.write_text(json.dumps({"recall": 0.0, "precision": None, "jam_recall": 0.0, "jam_precision": None, "fp": 0}))
    assert (detector_from_metrics(p).recall, detector_from_metrics(p).precision) == (0.0, 1.0)


def test_bad_config_names_file_and_field(tmp_path):
    p = tmp_path / "line.yaml"
    p.write_text("throughput_tph: -3\n")
    with pytest.raises(DataError, match=r"line.yaml: throughput_tph"):
        load_line_config(p)


def test_simulate_cli_with_sweep(tmp_path):
    from jamspotter.cli import app

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"jam_recall": 0.75, "jam_precision": 0.8}))
    out = tmp_path / "sim"
    res = CliRunner().invoke(app, ["line", "simulate", "--detector-metrics", str(metrics), "--hours", "48",
                                   "--sweep-recall", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "simulation.json").read_text())
    assert report["detector"]["recall"] == 0.75
    assert report["with_detector"]["jams"] <= report["without_detector"]["jams"]
    sweep = json.loads((out / "recall_sweep.json").read_text())["rows"]
    assert [r["recall"] for r in sweep] == [i / 10 for i in range(11)]
    assert sweep[0]["savings_per_day"] == 0 and sweep[-1]["jams_per_day"] <= sweep[0]["jams_per_day"]
    assert (out / "recall_sweep.png").stat().st_size > 1000


def test_sweep_assumptions(tmp_path, cfg):
    from jamspotter.cli import app
    from jamspotter.line.twin import sweep

    det = DetectorSpec(recall=0.8, precision=0.8)
    rows = sweep(cfg, det, "tangler_scale", [0.0, 1.0, 2.0], hours=160, replications=2)
    assert rows[0]["baseline_jams_per_day"] == 0 and rows[2]["baseline_jams_per_day"] > rows[1]["baseline_jams_per_day"]
    with pytest.raises(DataError, match="cannot sweep"):
        sweep(cfg, det, "colour", [1.0], hours=1)
    with pytest.raises(DataError, match="wraps_to_jam"):
        sweep(cfg, det, "wraps_to_jam", [0], hours=1)

    out = tmp_path / "s"
    res = CliRunner().invoke(app, ["line", "simulate", "--hours", "24", "--sweep", "wraps_to_jam=5,20",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "wraps_to_jam_sweep.json").read_text())
    assert [r["wraps_to_jam"] for r in data["rows"]] == [5, 20] and (out / "wraps_to_jam_sweep.png").is_file()
    res = CliRunner().invoke(app, ["line", "simulate", "--hours", "1", "--sweep", "crew=a", "--out", str(out)])
    assert res.exit_code == 2 and "NAME=v1" in res.output
