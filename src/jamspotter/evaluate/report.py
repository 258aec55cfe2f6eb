"""Evaluation reports: metrics.json, summary.md, PNG plots and (for detection) an HTML error gallery.

Every file is written atomically. Plots use matplotlib's Agg backend, so no display is needed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jamspotter.data.io import atomic_write, write_json
from jamspotter.data.records import Sample
from jamspotter.errors import DataError
from jamspotter.evaluate.detection import DetectionEval, ImageResult
from jamspotter.evaluate.pairing import WarningLog

GREEN, RED, ORANGE = (40, 200, 70), (230, 40, 40), (255, 150, 0)


def fmt(v: object) -> str:
    """A metric for people: 3 decimals, n/a for undefined."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def headline(task: str, m: dict) -> list[tuple[str, str]]:
    """(name, value) rows of the numbers people ask first; shared by summary.md and the terminal table."""
    if task == "detection":
        t = f"{m['iou_threshold']:g}"
        rows = [(f"precision @IoU {t}", fmt(m["precision"])), (f"recall @IoU {t}", fmt(m["recall"])),
                (f"F1 @IoU {t}", fmt(m["f1"])), ("TP / FP / FN", f"{m['tp']} / {m['fp']} / {m['fn']}")]
        if m["iou_threshold"] != 0.5 and "0.5" in m["by_iou"]:
            b = m["by_iou"]["0.5"]
            rows.append(("P / R / F1 @IoU 0.5", f"{fmt(b['precision'])} / {fmt(b['recall'])} / {fmt(b['f1'])}"))
        jc = m["jam_counts"]
        rows += [("jam recall (any jam class)", f"{fmt(m['jam_recall'])} ({jc['tp']}/{jc['gt']})"),
                 ("jam precision (any jam class)", f"{fmt(m['jam_precision'])} ({jc['tp']}/{jc['pred']})"),
                 ("jam recall / precision (exact class)",
                  f"{fmt(m['jam_recall_exact'])} ({jc['tp_gt_exact']}/{jc['gt']}) / "
                  f"{fmt(m['jam_precision_exact'])} ({jc['tp_pred_exact']}/{jc['pred']})"),
                 ("mean IoU of matches", fmt(m["mean_iou"]))]
        if "map" in m:
            rows += [("COCO mAP@[.5:.95]", fmt(m["map"])), ("COCO mAP@.5", fmt(m["map50"]))]
            if "map_backend" in m:
                rows.append(("mAP computed by", f"{m['map_backend']} {m.get('map_backend_version', '')}".strip()))
        rows += [("images / GT boxes / predictions", f"{m['n_images']} / {m['n_gt']} / {m['n_pred']}"),
                 ("scores", m["score_source"])]
    elif task == "classification":
        w = m["weighted"]
        rows = [("accuracy", fmt(m["accuracy"])), ("weighted precision", fmt(w["precision"])),
                ("weighted recall", fmt(w["recall"])), ("weighted F1", fmt(w["f1"])),
                ("macro F1", fmt(m["macro"]["f1"])), ("images", str(m["n_images"]))]
    else:
        rows = [("MSE (all components)", fmt(m["mse"])), ("MAE (all components)", fmt(m["mae"]))]
        rows += [(f"{name} MSE / MAE", f"{fmt(v['mse'])} / {fmt(v['mae'])}") for name, v in m["per_component"].items()]
        rows.append(("clips / steps", f"{m['n_clips']} / {m['n_steps']}"))
    rows.append(("warnings", ", ".join(f"{k}: {v}" for k, v in m["warnings"].items()) or "none"))
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]


def _save(fig, path: Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_class(per_class: dict, path: Path, keys: Sequence[str] = ("precision", "recall", "f1")) -> Path:
    """Grouped bars per class; undefined values are left out (not drawn as 0)."""
    plt = _pyplot()
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names) * len(keys) / 2 + 2), 4))
    x, width = np.arange(len(names)), 0.8 / len(keys)
    for i, key in enumerate(keys):
        vals = [np.nan if per_class[n][key] is None else per_class[n][key] for n in names]
        ax.bar(x + (i - (len(keys) - 1) / 2) * width, vals, width, label=key)
    ax.set_xticks(x, names, rotation=45, ha="right")
    for tick, n in zip(ax.get_xticklabels(), names, strict=True):
        if per_class[n].get("jam_risk"):
            tick.set_color("firebrick")  # jam-causing classes in red
    ax.set_ylim(0, 1.05)
    ax.set_title("per class (jam-causing classes in red)" if any(v.get("jam_risk") for v in per_class.values())
                 else "per class")
    ax.legend()
    return _save(fig, path)


def plot_pr_curve(pr: dict, path: Path, title: str) -> Path:
    """Precision against recall as the score threshold falls."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(pr["recall"], pr["precision"], marker=".", markersize=3)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion(cm: dict, path: Path) -> Path:
    """Confusion matrix with counts; rows true, columns predicted."""
    plt = _pyplot()
    mat = np.asarray(cm["matrix"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * mat.shape[1], 1.0 + 0.5 * mat.shape[0]))
    ax.imshow(mat, cmap="Blues")
    ax.set_xticks(range(mat.shape[1]), cm["columns"], rotation=45, ha="right")
    ax.set_yticks(range(mat.shape[0]), cm["labels"])
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    top = mat.max() if mat.size else 0
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    return _save(fig, path)


def plot_sequences(pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], names: Sequence[str], path: Path,
                   max_clips: int = 4) -> Path:
    """Predicted (dashed) vs true (solid) sequences, one row per clip, one column per component."""
    plt = _pyplot()
    shown = list(pairs)[:max_clips]
    k = max(len(names), 1)
    fig, axes = plt.subplots(max(len(shown), 1), k, figsize=(3.5 * k, 2.4 * max(len(shown), 1)), squeeze=False)
    for r, (cid, true, pred) in enumerate(shown):
        for c in range(true.shape[1]):
            ax = axes[r][c]
            ax.plot(true[:, c], label="true")
            ax.plot(pred[:, c], "--", label="predicted")
            ax.set_title(f"{cid}: {names[c] if c < len(names) else c}", fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def normalised(bbox: Sequence[float]) -> list[float]:
    """`[x1, y1, x2, y2]` with the corners ordered (an inverted box is drawn where its corners are)."""
    x1, y1, x2, y2 = bbox
    return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


def _draw(img_path: Path, result: ImageResult, out: Path) -> None:
    """Draw matched GT (green), misses (red) and false positives (orange) on the image; save as JPEG."""
    from PIL import ImageDraw, ImageFont

    from jamspotter.data.images import open_rgb

    im = open_rgb(img_path)  # upright, as the boxes were drawn by the labeller
    draw = ImageDraw.Draw(im)
    lw = max(2, round(max(im.size) / 300))
    font = ImageFont.load_default(size=max(11, round(max(im.size) / 50)))

    def tag(xy: tuple[float, float], text: str, colour: tuple[int, int, int]) -> None:
        box = draw.textbbox(xy, text, font=font)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=colour)
        draw.text(xy, text, fill=(0, 0, 0), font=font)

    missed = set(result.misses)
    for i, o in enumerate(result.gt.objects):
        draw.rectangle(normalised(o.bbox), outline=RED if i in missed else GREEN, width=lw)
    for i in result.false_positives:
        draw.rectangle(normalised(result.pred_objects[i].bbox), outline=ORANGE, width=lw)
    for i in sorted(missed):  # labels last, so boxes never hide them
        x1, y1, _, _ = normalised(result.gt.objects[i].bbox)
        tag((x1 + lw, y1 + lw), f"miss {result.gt.objects[i].label}", RED)
    for i in result.false_positives:
        o = result.pred_objects[i]
        x1, _, _, y2 = normalised(o.bbox)
        score = "" if o.score is None else f" {o.score:.2f}"
        tag((x1 + lw, max(0.0, y2 - font.size - 2 * lw)), f"FP {o.label}{score}", ORANGE)
    with atomic_write(out, "wb") as fh:
        im.save(fh, format="JPEG", quality=85)


def error_gallery(ev: DetectionEval, gt_root: Path | None, out_dir: Path, limit: int = 50,
                  log: WarningLog | None = None) -> Path:
    """gallery.html: the images with most errors (misses red, false positives orange, matches green).

    Images that are missing on disk (or clips without an image) are skipped and counted in `log`.
    """
    log = log or WarningLog()
    with_errors = [r for r in ev.images if r.misses or r.false_positives]
    with_errors.sort(key=lambda r: -(len(r.misses) + len(r.false_positives)))
    cards = []
    for n, r in enumerate(with_errors[:limit]):
        src = r.gt.image_path(gt_root)
        if src is None or not src.is_file():
            log.add("gallery_missing_image", r.gt.id)
            continue
        name = f"gallery/{n:04d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', r.gt.id)[:60]}.jpg"
        try:
            _draw(src, r, out_dir / name)
        except DataError:
            log.add("gallery_unreadable_image", r.gt.id)
            continue
        miss = ", ".join(r.gt.objects[i].label for i in r.misses) or "-"
        fps = ", ".join(r.pred_objects[i].label for i in r.false_positives) or "-"
        cards.append(f'<figure><img src="{html.escape(name)}" loading="lazy"><figcaption>'
                     f"<b>{html.escape(r.gt.id)}</b><br>misses: {html.escape(miss)}<br>"
                     f"false positives: {html.escape(fps)}</figcaption></figure>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>jamspotter detection errors</title><style>"
        "body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:.5em;vertical-align:top;"
        "max-width:420px}img{max-width:420px}figcaption{font-size:13px}</style></head><body>"
        f"<h1>Detection errors</h1><p>IoU threshold {ev.metrics['iou_threshold']:g}. "
        "<span style='color:#e62828'>red: missed ground truth</span>, <span style='color:#ff9600'>orange: false "
        "positive</span>, <span style='color:#28c846'>green: matched ground truth</span>. "
        f"{len(with_errors)} images have errors; showing {len(cards)} (most errors first).</p>"
        + "".join(cards) + "</body></html>\n"
    )
    with atomic_write(out_dir / "gallery.html") as fh:
        fh.write(page)
    return out_dir / "gallery.html"


def _summary(task: str, m: dict, figures: Sequence[Path], out_dir: Path, extra: Sequence[str] = (),
             tail: Sequence[str] = ()) -> None:
    lines = [f"# jamspotter {task} evaluation", ""] + _table(["metric", "value"], headline(task, m)) + [""]
    lines += ["n/a means undefined (nothing predicted or nothing to find), never 0. All numbers: metrics.json.", ""]
    if m["warnings"]:
        lines += ["## Warnings (counted, nothing dropped silently)", ""]
        lines += _table(["warning", "count", "examples"], [
            (k, v, "; ".join(m["warning_examples"].get(k, [])[:3])) for k, v in m["warnings"].items()]) + [""]
    lines += list(extra)
    if figures:
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in figures] + [""]
    lines += list(tail)
    with atomic_write(out_dir / "summary.md") as fh:
        fh.write("\n".join(lines))


def write_detection_report(ev: DetectionEval, out_dir: str | Path, gt_root: str | Path | None = None,
                           gallery_limit: int = 50) -> dict:
    """Write metrics.json, summary.md, pr_curve.png (when scored), per_class.png and gallery.html; returns metrics."""
    out_dir = Path(out_dir)
    m = ev.metrics
    figures = []
    if m.get("pr_curve"):
        figures.append(plot_pr_curve(m["pr_curve"], out_dir / "pr_curve.png", f"PR @IoU {m['iou_threshold']:g}"))
    if m["per_class"]:
        figures.append(plot_per_class(m["per_class"], out_dir / "per_class.png"))
    log = WarningLog()
    error_gallery(ev, Path(gt_root) if gt_root else None, out_dir, gallery_limit, log)
    for k, v in log.counts.items():  # gallery problems join the counted warnings
        m["warnings"][k] = m["warnings"].get(k, 0) + v
        m["warning_examples"].setdefault(k, []).extend(log.examples.get(k, []))
    coco = m.pop("coco_summary", None)
    rows = [(name, c["n_gt"], c["n_pred"], c["precision"], c["recall"], c["f1"], c["mean_iou"], c.get("ap"),
             c.get("ap50"), "yes" if c["jam_risk"] else "") for name, c in m["per_class"].items()]
    extra = ["## Per class", ""] + _table(
        ["class", "GT", "pred", "precision", "recall", "F1", "mean IoU", "AP", "AP50", "jam"], rows) + [""]
    backend = f"{m.get('map_backend', 'pycocotools')} {m.get('map_backend_version', '')}".strip()
    extra += ["Matching: greedy one-to-one by IoU with class agreement, highest score first. "
              f"mAP computed by {backend} (COCOeval, bbox, maxDets 100)." if "map" in m else
              "Matching: greedy one-to-one by IoU with class agreement, highest score first. mAP not computed.", ""]
    if not m["n_pred"] or m["score_source"] != "model":
        extra += ["Predictions without a model score count as 1.0: they are unranked, so mAP and the PR curve treat "
                  "them as tied (COCOeval breaks ties by image order).", ""]
    extra += ["Jam recall/precision: jam-causing boxes matched one-to-one whatever jam class each side names "
              "(a rope called hose is still picked); the exact-class figures also need the label to agree.", ""]
    extra += ["[Error gallery](gallery.html)", ""]
    stats = [line for line in (coco or "").splitlines() if line.lstrip().startswith("Average")]
    tail = [f"## COCOeval summary ({backend})", "", "```", *stats, "```", ""] if stats else []
    _summary("detection", m, figures, out_dir, extra, tail)
    write_json(out_dir / "metrics.json", m)
    return m


def write_classification_report(m: dict, out_dir: str | Path) -> dict:
    """Write metrics.json, summary.md, confusion_matrix.png and per_class.png; returns metrics."""
    out_dir = Path(out_dir)
    figures = []
    if m["confusion_matrix"]["labels"]:
        figures += [plot_confusion(m["confusion_matrix"], out_dir / "confusion_matrix.png"),
                    plot_per_class(m["per_class"], out_dir / "per_class.png")]
    rows = [(n, c["support"], c["n_pred"], c["precision"], c["recall"], c["f1"]) for n, c in m["per_class"].items()]
    extra = ["## Per class", ""] + _table(["class", "support", "predicted", "precision", "recall", "F1"], rows)
    extra += ["", "Macro and weighted (by support) averages count an n/a class value as 0, as scikit-learn does.", ""]
    _summary("classification", m, figures, out_dir, extra)
    write_json(out_dir / "metrics.json", m)
    return m


def write_trajectory_report(m: dict, gt: Sequence[Sample], pred: Sequence[Sample], out_dir: str | Path) -> dict:
    """Write metrics.json, summary.md and sequences.png (predicted vs true); returns metrics."""
    from jamspotter.evaluate.trajectory import component_names, trajectory_pairs

    out_dir = Path(out_dir)
    pairs = trajectory_pairs(gt, pred, WarningLog())
    figures = [plot_sequences(pairs, component_names(gt), out_dir / "sequences.png")] if pairs else []
    _summary("trajectory", m, figures, out_dir)
    write_json(out_dir / "metrics.json", m)
    return m
