"""The demo's plan and its report page: the pipeline as the CLI commands a user would type, tied into one HTML page.

`demo_steps` lists the commands (run by `jamspotter demo` through the real CLI); `write_index` reads what they
wrote and links every artefact from `index.html`, pictures inline, with relative paths so the folder can be
moved or zipped. The page says plainly which model was tiny and random and which figures mean nothing.
"""

from __future__ import annotations

import csv
import html
import json
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jamspotter.data.io import atomic_write
from jamspotter.errors import DataError

# Folder names inside the demo's output, shared by the plan and the page.
BELT, TRAIN_SCENES, HELDOUT_SCENES = "belt", "scenes_train", "scenes_heldout"
SFT_RUN, GRPO_FINAL = "runs/tiny", "runs/tiny/grpo/final"
REPORT_TRAIN, REPORT_HELDOUT, DRAWN, TWIN = "report_train", "report_heldout", "drawn_heldout", "twin"
EDGE_DATA, EDGE_RUN, SERVICE = "trashnet_subset", "edge", "service"
EDGE_PER_CLASS = {"train": 24, "val": 8, "test": 12}  # images per class and split of the TrashNet subset
EDGE_SKIPPED = ("Skipped: pass --trashnet DIR (a TrashNet folder with split.csv) to train the edge classifier on a "
                "small subset of it.")

# What the same pipeline looks like on a real model (a CUDA GPU with 24 GB; the download is about 16 GB).
REAL_COMMANDS = [
    "pip install -e '.[qlora]'",
    "jamspotter data import --from coco annotations.json --images photos/ --out belt/",
    "jamspotter data split belt/",
    "jamspotter train both --config qwen2.5-vl-7b-qlora-grpo --set data.train=belt/",
    "jamspotter infer runs/qwen2.5-vl-7b-qlora-grpo/grpo/final belt/ --split test --out preds.jsonl",
    "jamspotter eval detection --pred preds.jsonl --gt belt/ --split test --out report/",
    "jamspotter line simulate --detector-metrics report/metrics.json --sweep-recall --out twin/",
]


@dataclass(frozen=True)
class Step:
    """One demo step: a heading for the page and the progress display, and the CLI arguments it runs.

    `action` is "cli" for a command, or a step run in Python: "service" (one request to the service in
    process) or "subset" (write the TrashNet subset's split.csv).
    """

    title: str
    args: list[str] = field(default_factory=list)
    action: str = "cli"

    def outputs(self, out: Path) -> list[Path]:
        """What the step writes: its --out/--draw targets, a training run's folder, or the Python step's file."""
        if self.action == "service":
            return [out / SERVICE / "detect.json"]
        if self.action == "subset":
            return [out / EDGE_DATA / "split.csv"]
        found = [Path(v) for k, v in zip(self.args, self.args[1:], strict=False) if k in ("--out", "--draw")]
        runs = [Path(a.split("=", 1)[1]) for a in self.args if a.startswith("train.output_dir=")]
        if self.args[:2] == ["train", "grpo"]:
            runs = [r / "grpo" for r in runs]
        return found + runs


def answer_tokens(quick: bool) -> int:
    """The longest answer the demo's model may give (GRPO rollouts, infer and the service alike)."""
    return 32 if quick else 256


def demo_steps(out: Path, quick: bool = False, trashnet: Path | None = None) -> list[Step]:
    """The demo's commands in order; `quick` shrinks data and training (tests), `trashnet` adds the edge step."""
    o = out
    belt, train, heldout, run = o / BELT, o / TRAIN_SCENES, o / HELDOUT_SCENES, o / SFT_RUN
    final = o / GRPO_FINAL
    tokens = str(answer_tokens(quick))
    steps = [
        Step("synthesise belt scenes and a clip", [
            "data", "synth", "--n", "6" if quick else "24", "--size", "640x480", "--clips", "1", "--seconds", "1",
            "--fps", "5", "--seed", "0", "--preview", "--out", str(belt)]),
        Step("validate the dataset", ["data", "validate", str(belt)]),
        Step("dataset statistics", ["data", "stats", str(belt)]),
        Step("export Qwen2.5-VL training text", [
            "data", "export", "--to", "qwen2.5-vl", str(belt), "--out", str(o / "belt_qwen2.5-vl.jsonl")]),
        Step("export COCO", ["data", "export", "--to", "coco", str(belt), "--out", str(o / "belt_coco.json")]),
        # A tiny random model memorising 8 small scenes proves template, label mask and coordinates end to end
        # in under a minute on a CPU; 8 held-out scenes of the same world show it has learnt nothing general.
        Step("synthesise 8 small training scenes", [
            "data", "synth", "--n", "8", "--size", "112x112", "--jam-rate", "0.5", "--clutter", "2", "--seed", "1",
            "--out", str(train)]),
        Step("synthesise held-out scenes", [
            "data", "synth", "--n", "4" if quick else "8", "--size", "112x112", "--jam-rate", "0.5", "--clutter",
            "2", "--seed", "2", "--out", str(heldout)]),
        Step("SFT: a tiny random Qwen2.5-VL", [
            "train", "sft", "--config", "tiny", "--set", f"data.train={train}", "--set", f"train.output_dir={run}"]
            + (["--set", "train.max_steps=10"] if quick else [])),
        Step("GRPO from the SFT model", [
            "train", "grpo", "--config", "tiny", "--from", str(run / "final"), "--set", f"data.train={train}",
            "--set", f"train.output_dir={run}", "--set", f"grpo.max_steps={2 if quick else 8}",
            "--set", f"grpo.max_completion_length={tokens}"]),
        Step("detect on the training scenes", [
            "infer", str(final), str(train), "--out", str(o / "preds_train.jsonl"), "--max-new-tokens", tokens]),
        Step("evaluate on the training scenes", [
            "eval", "detection", "--pred", str(o / "preds_train.jsonl"), "--gt", str(train), "--run", str(final),
            "--out", str(o / REPORT_TRAIN), "--gallery", "8"]),
        Step("detect on held-out scenes", [
            "infer", str(final), str(heldout), "--out", str(o / "preds_heldout.jsonl"), "--max-new-tokens", tokens,
            "--draw", str(o / DRAWN)]),
        Step("evaluate on held-out scenes", [
            "eval", "detection", "--pred", str(o / "preds_heldout.jsonl"), "--gt", str(heldout), "--run",
            str(final), "--out", str(o / REPORT_HELDOUT), "--gallery", "8"]),
        # The tiny model's held-out figures say nothing about a real detector, so the twin runs on the line
        # config's assumed detector and sweeps recall; ten 16-hour days, five seeds (jams are rare events).
        Step("digital twin of the line (assumed detector)", [
            "line", "simulate", "--hours", "16" if quick else "160", "--replications", "1" if quick else "5",
            "--sweep-recall", "--out", str(o / TWIN)]),
        Step("the service answers over HTTP", action="service"),
    ]
    if trashnet is not None:
        steps += [
            Step("pick a small TrashNet subset", action="subset"),
            Step("edge classifier on the TrashNet subset", [
                "edge", "train", "--data", str(o / EDGE_DATA), "--out", str(o / EDGE_RUN),
                "--epochs", "1" if quick else "4", "--threads", "1"]),
        ]
    return steps


def trashnet_items(src: Path) -> list[Any]:
    """The labelled images of `src` (anything `edge train --data` reads: TrashNet's split.csv, an ImageFolder, a
    samples.jsonl); a folder without any, or without test images to score on, is a one-line DataError."""
    from jamspotter.edge.data import load_items

    items = load_items(src)
    if not any(it.split == "test" for it in items):
        raise DataError(f"{src}: no test images to score the edge classifier on")
    return items


def trashnet_subset(items: list[Any], dst: Path, per_class: dict[str, int] | None = None) -> int:
    """Write `dst/split.csv` naming the first images of each class and split of `items` (no copies); returns
    how many."""
    per_class = per_class or EDGE_PER_CLASS
    chosen: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for it in sorted(items, key=lambda it: str(it.path)):
        bucket = chosen[(it.label, it.split)]
        if len(bucket) < per_class.get(it.split, 0):
            bucket.append(it)
    rows = [it for bucket in chosen.values() for it in bucket]
    dst.mkdir(parents=True, exist_ok=True)
    with atomic_write(dst / "split.csv") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        writer.writerows([str(it.path.resolve()), it.label, it.split] for it in rows)
    return len(rows)


# ---- the page --------------------------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.note{background:#fff6d6;border-left:4px solid #e6a800;padding:.6em .9em;margin:.8em 0}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:.4em;vertical-align:top}
figure img{max-width:520px;border:1px solid #ccc}
.scenes figure img{width:224px;image-rendering:pixelated}figcaption{font-size:12px;color:#555;max-width:330px}
img.wide{max-width:100%;border:1px solid #ccc}pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:13px}
code{background:#f4f4f4;padding:0 .2em}"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _rel(path: Path, out: Path) -> str:
    return _e(path.relative_to(out).as_posix())


def _img(path: Path, out: Path, caption: str = "", wide: bool = False) -> str:
    if not path.is_file():
        return ""
    cls = ' class="wide"' if wide else ""
    img = f'<a href="{_rel(path, out)}"><img src="{_rel(path, out)}" alt="{_e(caption or path.name)}"{cls}></a>'
    return img if wide else f"<figure>{img}<figcaption>{_e(caption)}</figcaption></figure>"


def _link(path: Path, out: Path, text: str | None = None) -> str:
    return f'<a href="{_rel(path, out)}">{_e(text or path.relative_to(out).as_posix())}</a>' if path.exists() else ""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return "n/a" if v is None else _e(v)


def _metrics_table(named: dict[str, dict | None]) -> str:
    rows = [("precision @IoU 0.5", "precision"), ("recall @IoU 0.5", "recall"), ("F1 @IoU 0.5", "f1"),
            ("jam recall (any jam class)", "jam_recall"), ("jam precision", "jam_precision"),
            ("mean IoU of matches", "mean_iou"), ("COCO mAP@[.5:.95] (no scores: one operating point)", "map"),
            ("images / GT boxes / predictions", None)]
    head = "".join(f"<th>{_e(n)}</th>" for n in named)
    body = []
    for label, key in rows:
        cells = []
        for m in named.values():
            if m is None:
                cells.append("<td>not run</td>")
            elif key is None:
                cells.append(f"<td>{m.get('n_images')} / {m.get('n_gt')} / {m.get('n_pred')}</td>")
            else:
                cells.append(f"<td>{_fmt(m.get(key))}</td>")
        body.append(f"<tr><td>{_e(label)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def _sweep_table(sweep: dict) -> str:
    """The line per day without a detector, and with one at each recall of the sweep (precision held)."""
    rows = sweep.get("rows") or []
    if not rows:
        return ""
    base = rows[0]
    head = (f"<p>Without a detector the simulated line stops {_fmt(base.get('baseline_jams_per_day'))} times a day "
            f"({_fmt(base.get('baseline_downtime_h_per_day'))} h of downtime, "
            f"${_fmt(base.get('baseline_cost_per_day'))} a day of downtime, crew and disposal cost). "
            f"With a detector of precision {_fmt(base.get('precision'))}, by its jam recall:</p>")
    body = "".join(f"<tr><td>{_fmt(r.get('recall'))}</td><td>{_fmt(r.get('jams_per_day'))}</td>"
                   f"<td>{_fmt(r.get('downtime_h_per_day'))}</td><td>{_fmt(r.get('cost_per_day'))}</td>"
                   f"<td>{_fmt(r.get('savings_per_day'))}</td></tr>" for r in rows)
    return (head + "<table><tr><th>jam recall</th><th>jams per day</th><th>downtime h per day</th>"
            f"<th>cost per day ($)</th><th>saving per day ($)</th></tr>{body}</table>")


def _gallery(folder: Path, out: Path, limit: int) -> str:
    pics = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    return f"<div class='scenes'>{''.join(_img(p, out, p.stem) for p in pics)}</div>" if pics else "<p>No pictures.</p>"


def write_index(out: Path, steps: list[Step], seconds: float) -> Path:
    """Write `out/index.html` from what the demo's steps left in `out`; returns its path."""
    train_m, held_m = _json(out / REPORT_TRAIN / "metrics.json"), _json(out / REPORT_HELDOUT / "metrics.json")
    sim, sft, grpo = _json(out / TWIN / "simulation.json"), _json(out / SFT_RUN / "metrics.json"), _json(
        out / SFT_RUN / "grpo" / "metrics.json")
    contract = _json(out / GRPO_FINAL / "jamspotter.json") or {}
    service, edge = _json(out / SERVICE / "detect.json"), _json(out / EDGE_RUN / "metrics.json")
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>jamspotter demo</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>jamspotter demo</h1>",
             f"<p>The whole pipeline on synthetic conveyor-belt scenes, in {seconds:.0f} s on this machine: data, "
             "SFT then GRPO of a Qwen2.5-VL, detection, evaluation, the service, a digital twin of the line"
             + (", the edge classifier" if edge else "") + ". Every step is a command you can type; "
             "they are listed at the end with links to what each wrote.</p>",
             "<p class='note'><b>The model here is tiny and random.</b> <code>--config tiny</code> builds a "
             "two-layer Qwen2.5-VL with random weights and a small tokenizer, then fine-tunes it on 8 scenes of "
             "112x112 pixels on the CPU. It memorises those scenes (the training-scene figures check template, "
             "labels and coordinates end to end) and knows nothing else: its held-out figures are shown for "
             "honesty, not as a detector's quality. On a real checkpoint (a CUDA GPU with 24 GB) the same "
             "pipeline is:</p><pre>" + _e("\n".join(REAL_COMMANDS)) + "</pre>"]

    parts.append("<h2>1. Data: a synthetic belt</h2>")
    parts.append(_img(out / BELT / "preview.png", out, "belt preview", wide=True))
    clips = sorted((out / BELT / "clips").glob("*.mp4"))
    parts.append(f"<p>Labelled scenes and a clip ({', '.join(_link(c, out) for c in clips) or 'none'}) in "
                 f"{_link(out / BELT, out)} (the canonical "
                 f"<code>samples.jsonl</code>), exported as Qwen2.5-VL training text "
                 f"({_link(out / 'belt_qwen2.5-vl.jsonl', out)}) and COCO ({_link(out / 'belt_coco.json', out)}).</p>")

    parts.append("<h2>2. Training: SFT, then GRPO</h2>")
    if sft:
        parts.append(f"<p>SFT: {sft.get('global_step')} steps on {sft.get('train_samples')} examples, train loss "
                     f"{_fmt(sft.get('train_loss'))} ({_link(out / SFT_RUN, out, 'run folder')}, weights in "
                     f"{_link(out / SFT_RUN / 'final', out)}).</p>")
    if grpo:
        first, last = grpo.get("first_log") or {}, grpo.get("last_log") or {}
        rewards = sorted(k for k, v in last.items()
                         if k.startswith("rewards/") and k.endswith("/mean") and v is not None)
        shown = ", ".join(f"{_e(k.split('/')[1])} {_fmt(first.get(k))} -> {_fmt(last.get(k))}" for k in rewards)
        parts.append(f"<p>GRPO from the SFT model: {grpo.get('global_step')} steps on {grpo.get('prompts')} prompts; "
                     f"mean rewards of sampled answers, first -> last logged step: {shown or 'n/a'} "
                     f"({_link(out / SFT_RUN / 'grpo', out, 'GRPO folder')}).</p>")
    if contract:
        parts.append("<p>The run contract saved beside the weights (what every later step asks the model): "
                     f"family <code>{_e(contract.get('family'))}</code>, pixel budget "
                     f"{_e(contract.get('min_pixels'))}-{_e(contract.get('max_pixels'))}, "
                     f"{len(contract.get('classes', []))} classes, jam-only {_e(contract.get('jam_only'))} "
                     f"({_link(out / GRPO_FINAL / 'jamspotter.json', out, 'jamspotter.json')}).</p>")

    parts.append("<h2>3. Detection on held-out scenes</h2>")
    parts.append("<p>The model's boxes drawn on scenes it never saw:</p>")
    parts.append(_gallery(out / DRAWN, out, 8))
    parts.append("<h2>4. Metrics</h2>")
    parts.append(_metrics_table({"held-out scenes (not trained on)": held_m,
                                 "training scenes (memorisation check)": train_m}))
    parts.append("<p>VLM answers carry no confidence, so there is no PR curve (all boxes score 1.0; see the "
                 "troubleshooting guide on mAP without scores). Reports: "
                 f"held-out {_link(out / REPORT_HELDOUT / 'summary.md', out, 'summary.md')}, "
                 f"{_link(out / REPORT_HELDOUT / 'metrics.json', out, 'metrics.json')}, "
                 f"{_link(out / REPORT_HELDOUT / 'gallery.html', out, 'gallery.html')}; training scenes "
                 f"{_link(out / REPORT_TRAIN / 'summary.md', out, 'summary.md')}, "
                 f"{_link(out / REPORT_TRAIN / 'metrics.json', out, 'metrics.json')}, "
                 f"{_link(out / REPORT_TRAIN / 'gallery.html', out, 'gallery.html')}; predictions "
                 f"{_link(out / 'preds_heldout.jsonl', out)}, {_link(out / 'preds_train.jsonl', out)}.</p>")
    for report, name in ((REPORT_HELDOUT, "held-out"), (REPORT_TRAIN, "training scenes")):
        for plot in ("pr_curve.png", "per_class.png"):
            parts.append(_img(out / report / plot, out, f"{name}: {plot.removesuffix('.png').replace('_', ' ')}"))
    parts.append("<h3>Error gallery (held-out)</h3><p>Red: missed ground truth, orange: false positive, green: "
                 f"matched ({_link(out / REPORT_HELDOUT / 'gallery.html', out, 'gallery.html')}).</p>")
    parts.append(_gallery(out / REPORT_HELDOUT / "gallery", out, 8))

    parts.append("<h2>5. The service</h2>")
    if service is not None:
        parts.append("<p>The same model behind <code>jamspotter serve</code>'s HTTP API: <code>POST /v1/detect</code>"
                     " with a held-out scene answered (in process, no port opened; "
                     f"{_link(out / SERVICE / 'detect.json', out, 'detect.json')}):</p>"
                     f"<pre>{_e(_compact_json(service))}</pre>")
    parts.append("<p>Serve it with the live operator dashboard: <code>jamspotter serve --model "
                 f"{_e(GRPO_FINAL)} --stream {_e(BELT)}/images/ --token s3cret</code> (run inside this folder), then "
                 "open <code>http://127.0.0.1:8000/</code>.</p>")

    parts.append("<h2>6. Digital twin of the line</h2>")
    sweep = _json(out / TWIN / "recall_sweep.json")
    if sim:
        det = sim.get("detector", {})
        held = f"{held_m.get('f1'):.2f}" if held_m and isinstance(held_m.get("f1"), float) else "n/a"
        parts.append(
            "<p class='note'>This tiny model's held-out F1@0.5 of " + held + " says nothing about a real detector, so "
            "the twin ran on an <b>assumed detector</b> (the line config's defaults: recall "
            f"{_fmt(det.get('recall'))}, precision {_fmt(det.get('precision'))}, latency {_fmt(det.get('latency_s'))}"
            " s) and the page shows the sweep over recall instead of one saving. Read the saving off the sweep at "
            "your own detector's held-out jam recall, or run <code>jamspotter line simulate --detector-metrics "
            "report/metrics.json</code> with its report.</p>")
        parts.append(f"<p>{_e(sim.get('hours'))} h of line time per point, averaged over "
                     f"{_e(sim.get('replications'))} seeded run(s) "
                     f"({_link(out / TWIN / 'recall_sweep.json', out, 'recall_sweep.json')}, "
                     f"{_link(out / TWIN / 'simulation.json', out, 'simulation.json')}).</p>")
    parts.append(_img(out / TWIN / "recall_sweep.png", out, "cost and jams against detector recall", wide=True))
    if sweep:
        parts.append(_sweep_table(sweep))

    parts.append("<h2>7. Edge classifier</h2>")
    if not edge:
        parts.append(f"<p>{_e(EDGE_SKIPPED)}</p>")
    else:
        acc = (edge.get("test") or {}).get("accuracy")
        one = (edge.get("one_view_accuracy") or {}).get("test")
        flips = (edge.get("config") or {}).get("tta_flips")
        parts.append(f"<p>EfficientNet-Lite0 (ImageNet weights) trained on a small TrashNet subset "
                     f"({_link(out / EDGE_DATA / 'split.csv', out, 'split.csv')}) for a few epochs; test accuracy on "
                     f"the subset {_fmt(acc)}" + (f" averaged over flips, {_fmt(one)} in one pass per image (what "
                                                  "the exported model does)" if flips else "")
                     + f" ({_link(out / EDGE_RUN / 'metrics.json', out, 'metrics.json')}). The full TrashNet run is "
                     "<code>benchmarks/train_trashnet.py</code>.</p>")
        for plot in ("confusion_matrix.png", "training_curves.png"):
            parts.append(_img(out / EDGE_RUN / plot, out, plot.removesuffix(".png").replace("_", " ")))

    parts.append("<h2>The commands</h2><p>Run from inside this folder, each as written:</p><ol>")
    for step in steps:
        wrote = ", ".join(_link(p, out) for p in step.outputs(out) if p.exists())
        parts.append(f"<li>{_e(step.title)}" + (f"<pre>{_e(_relative_command(step, out))}</pre>" if step.args
                                                  else "") + (f"wrote {wrote}" if wrote else "") + "</li>")
    parts.append("</ol></body></html>")
    index = out / "index.html"
    with atomic_write(index) as fh:
        fh.write("\n".join(p for p in parts if p))
    return index


def _compact_json(obj: dict) -> str:
    """A JSON object with one line per key and per detection (readable, not a column of numbers)."""
    lines = []
    for k, v in obj.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            inner = ",\n    ".join(json.dumps(x) for x in v)
            lines.append(f'  "{k}": [\n    {inner}\n  ]')
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def _relative_command(step: Step, out: Path) -> str:
    """The step's command with the demo folder's paths written relative to it (as run from inside it)."""
    prefix = str(out) + "/"
    return "jamspotter " + shlex.join(a.replace(prefix, "") if a.startswith(prefix) else
                                      a.replace("=" + prefix, "=") for a in step.args)
