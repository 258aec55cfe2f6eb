"""Run each peer trainer's OWN data loader on our `data export --for TRAINER` files (issue 13).

Not CI, not a unit test: it installs ms-swift and LLaMA-Factory from PyPI into throwaway virtualenvs, and
runs qwen-vl-finetune (github:QwenLM/Qwen3-VL, folder qwen-vl-finetune) and 2U1 (github:2U1/Qwen2-VL-Finetune),
which are not on PyPI, from checkouts given with `--source NAME=PATH`, in virtualenvs holding the transformers
version their README / requirements.txt pin. Their pixel budget is read from their shipped training script.

For each peer: a virtualenv under WORK/venv_PEER (`python3 -m venv`), pip-installed with a constraints
file holding the torch/torchvision lines of constraints.txt (the local 2.14.1 build; the venv sees the
project's installed torch through a .pth shim of symlinks, so pip does not copy ~5 GB per peer); then, per
image size (1280x720 and 640x480, rendered by `jamspotter data synth`), our export
`jamspotter data export --to qwen2.5-vl --for TRAINER`, and a probe run with the venv's python that feeds
that file through the peer's own dataset loader and template with a Qwen2.5-VL processor (a tiny model
from `jamspotter train tiny-model qwen2.5-vl --real-tokenizer`, real processor/tokenizer files).

Checks, per image: the peer's `image_grid_thw` x 14 equals `get_trainer(name).format("qwen2.5-vl")`'s
`input_size(w, h)` (the size our boxes were written for); every record and image is read; and the boxes
the model is trained on (parsed from the peer's encoded labels) equal the original boxes of
samples.jsonl scaled to the peer's grid size, within 1 px. Every step's output goes to WORK/logs/.

    .venv/bin/python benchmarks/peer_loaders.py --work /tmp/jamspotter-peers [--peers swift,llamafactory] \
        [--source qwen-vl-finetune=CHECKOUT_OF_Qwen3-VL] [--source 2u1=CHECKOUT_OF_Qwen2-VL-Finetune]

A checkout may be a `git archive` export (e.g. `git --git-dir=MIRROR archive HEAD qwen-vl-finetune | tar -x`);
write the commit to CHECKOUT/.source-commit so the results name it.

Writes benchmarks/results/peer_loaders.json and prints a table. A peer that cannot be installed or run
is recorded with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _results import machine

from jamspotter.data.trainers import get_trainer

REPO = Path(__file__).resolve().parents[1]
JAM = REPO / ".venv" / "bin" / "jamspotter"
SIZES = ("1280x720", "640x480")
QWEN_CONFIGS = Path("/work/shared/data/qwen_configs/Qwen2.5-VL-3B-Instruct")

# The probes run inside each peer's venv (with the peer's own code); each prints one JSON line:
# {"records": N, "items": [{"images": [[w, h], ...], "grid": [[t, h, w], ...], "image_tokens": K,
#   "labels": "decoded assistant text"}]}
SWIFT_PROBE = r'''
import json, sys
from swift import get_processor, get_template, load_dataset
model_dir, data_file = sys.argv[1], sys.argv[2]
processor = get_processor(model_dir, model_type="qwen2_5_vl")
template = get_template(processor, template_type="qwen2_5_vl")
template.set_mode("train")
train, _ = load_dataset(data_file, load_from_cache_file=False)
tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
items = []
for row in train:
    enc = template.encode(dict(row))
    grid = enc["image_grid_thw"].tolist()
    labels = [t for t in enc["labels"] if t != -100]
    from PIL import Image
    sizes = []
    for im in row["images"]:
        p = im["path"] if isinstance(im, dict) else im
        with Image.open(p) as f:
            sizes.append(list(f.size))
    items.append({"images": sizes, "grid": grid, "image_tokens": int(sum(1 for t in enc["input_ids"]
                  if t == tok.convert_tokens_to_ids("<|image_pad|>"))), "labels": tok.decode(labels)})
print("PROBE " + json.dumps({"records": len(train), "items": items, "template": type(template).__name__}))
'''

LF_PROBE = r'''
import json, sys, tempfile
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
from llamafactory.data import get_template_and_fix_tokenizer, get_dataset
model_dir, dataset_dir, name = sys.argv[1], sys.argv[2], sys.argv[3]
out = tempfile.mkdtemp()
model_args, data_args, training_args, finetuning_args, _ = get_train_args(dict(
    model_name_or_path=model_dir, stage="sft", do_train=True, finetuning_type="lora", template="qwen2_vl",
    dataset_dir=dataset_dir, dataset=name, cutoff_len=8192, output_dir=out, overwrite_cache=True,
    report_to="none", use_cpu=True))
tok_mod = load_tokenizer(model_args)
tokenizer, processor = tok_mod["tokenizer"], tok_mod["processor"]
template = get_template_and_fix_tokenizer(tokenizer, data_args)
train = get_dataset(template, model_args, data_args, training_args, stage="sft", **tok_mod)["train_dataset"]
pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
items = []
for row in train:
    images = row["images"]
    mm = template.mm_plugin.get_mm_inputs(images, [], [], [len(images)], [0], [0], [row["input_ids"]], processor)
    from PIL import Image
    sizes = []
    for p in images:
        p = p["path"] if isinstance(p, dict) else p
        with Image.open(p) as f:
            sizes.append(list(f.size))
    items.append({"images": sizes, "grid": mm["image_grid_thw"].tolist(),
                  "image_tokens": int(sum(1 for t in row["input_ids"] if t == pad)),
                  "labels": tokenizer.decode([t for t in row["labels"] if t != -100])})
print("PROBE " + json.dumps({"records": len(train), "items": items,
                             "image_max_pixels": getattr(processor, "image_max_pixels", None)}))
'''

# qwen-vl-finetune (github:QwenLM/Qwen3-VL, folder qwen-vl-finetune): its LazySupervisedDataset with its own
# DataArguments at the shipped script's pixels. `item_fn` is the per-record function __getitem__ wraps in
# retries that silently substitute the NEXT record on an error; calling it directly lets an error surface.
QVF_PROBE = r'''
import json, sys
src, model_dir, data_file, min_px, max_px = sys.argv[1:6]
sys.path.insert(0, src)
import qwenvl.data as qd
from qwenvl.data.data_processor import LazySupervisedDataset
from qwenvl.train.argument import DataArguments
from transformers import AutoProcessor
from PIL import Image
qd.data_dict["jam"] = {"annotation_path": data_file, "data_path": ""}
args = DataArguments(dataset_use="jam", min_pixels=int(min_px), max_pixels=int(max_px))
args.model_type = "qwen2.5vl"  # train_qwen.py sets this from the Qwen2.5-VL model class
processor = AutoProcessor.from_pretrained(model_dir)
ds = LazySupervisedDataset(processor, args)
tok = processor.tokenizer
pad = tok.convert_tokens_to_ids("<|image_pad|>")
ip = processor.image_processor
items = []
for rec in ds.list_data_dict:
    ex = ds.item_fn([rec])
    imgs = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
    sizes = []
    for p in imgs:
        with Image.open(p) as f:
            sizes.append(list(f.size))
    ids, labels = ex["input_ids"][0].tolist(), ex["labels"][0].tolist()
    items.append({"images": sizes, "grid": ex["image_grid_thw"].tolist(),
                  "image_tokens": sum(1 for t in ids if t == pad),
                  "labels": tok.decode([t for t in labels if t != -100])})
print("PROBE " + json.dumps({"records": len(ds), "items": items, "budget": [int(min_px), int(max_px)],
                             "image_processor": {"min_pixels": getattr(ip, "min_pixels", None),
                                                 "max_pixels": getattr(ip, "max_pixels", None),
                                                 "size": dict(getattr(ip, "size", None) or {})}}))
'''

# 2U1/Qwen2-VL-Finetune: its src.dataset.sft_dataset.SupervisedDataset with its own DataArguments at the
# shipped script's --image_min_pixels/--image_max_pixels (it resizes with qwen_vl_utils, then the processor
# runs with do_resize=False).
TWO_U1_PROBE = r'''
import json, sys
src, model_dir, data_file, min_px, max_px = sys.argv[1:6]
sys.path.insert(0, src)
from src.dataset.sft_dataset import SupervisedDataset
from src.params import DataArguments
from transformers import AutoProcessor
from PIL import Image
args = DataArguments(data_path=data_file, image_folder="/", image_min_pixels=int(min_px),
                     image_max_pixels=int(max_px))
processor = AutoProcessor.from_pretrained(model_dir)
ds = SupervisedDataset(data_path=data_file, processor=processor, data_args=args,
                       model_id="Qwen/Qwen2.5-VL-3B-Instruct")
tok = processor.tokenizer
pad = tok.convert_tokens_to_ids("<|image_pad|>")
items = []
for i in range(len(ds)):
    ex = ds[i]
    rec = ds.list_data_dict[i]
    imgs = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
    sizes = []
    for p in imgs:
        with Image.open(p) as f:
            sizes.append(list(f.size))
    ids, labels = ex["input_ids"].tolist(), ex["labels"].tolist()
    items.append({"images": sizes, "grid": ex["image_grid_thw"].tolist(),
                  "image_tokens": sum(1 for t in ids if t == pad),
                  "labels": tok.decode([t for t in labels if t != -100])})
print("PROBE " + json.dumps({"records": len(ds), "items": items, "budget": [int(min_px), int(max_px)]}))
'''

PEERS: dict[str, dict[str, Any]] = {
    # ms-swift's Qwen2.5-VL template writes <bbox>/<ref-object> as Qwen2-VL special tokens unless
    # QWENVL_BBOX_FORMAT=new (swift/template/templates/qwen.py replace_bbox/replace_ref): both are run.
    "swift": {"pip": ["ms-swift", "qwen_vl_utils"], "dist": "ms-swift", "probe": SWIFT_PROBE,
              "variants": {"": {}, "QWENVL_BBOX_FORMAT=new": {"QWENVL_BBOX_FORMAT": "new"}}},
    "llamafactory": {"pip": ["llamafactory"], "dist": "llamafactory", "probe": LF_PROBE},
    # Repository peers (not on PyPI): run from a checkout given with --source NAME=PATH, in a venv with the
    # transformers its README / requirements.txt pin. "budget" names the shipped script and its two pixel
    # flags, read from the checkout (the values a user starting from that script trains at).
    # qwen-vl-finetune's README asks for transformers==4.57.0.dev0 (not on PyPI): its release, 4.57.0.
    "qwen-vl-finetune": {"repo": "QwenLM/Qwen3-VL", "folder": "qwen-vl-finetune", "probe": QVF_PROBE,
                         "pip": ["transformers==4.57.0", "accelerate==1.7.0", "qwen-vl-utils", "pillow"],
                         "budget": ("scripts/sft.sh", "--min_pixels", "--max_pixels"), "ext": ".json"},
    # 2U1's requirements.txt pins transformers==4.56.1, trl==0.17.0 (src/params.py imports trl),
    # accelerate==1.10.1, peft==0.15.2, qwen-vl-utils==0.0.11.
    "2u1": {"repo": "2U1/Qwen2-VL-Finetune", "folder": "", "probe": TWO_U1_PROBE,
            "pip": ["transformers==4.56.1", "trl==0.17.0", "accelerate==1.10.1", "peft==0.15.2",
                    "qwen-vl-utils==0.0.11", "ujson", "pillow"],
            "budget": ("scripts/finetune.sh", "--image_min_pixels", "--image_max_pixels"), "ext": ".json"},
}


def script_flag(script: Path, flag: str) -> int:
    """The integer value of `flag` in a shell script: a number or a `$((A * B * C))` product of numbers."""
    m = re.search(rf"{re.escape(flag)}\s+(\d+|\$\(\(([\d\s*]+)\)\))", script.read_text())
    if m is None:
        raise ValueError(f"{flag} not found in {script}")
    if m.group(2) is None:
        return int(m.group(1))
    value = 1
    for factor in m.group(2).split("*"):
        value *= int(factor)
    return value


def source_commit(path: Path) -> str | None:
    """The commit of a peer checkout: `git rev-parse HEAD` there, else the first line of PATH/.source-commit
    (written next to a `git archive` export), else None."""
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    if proc.returncode == 0:
        return proc.stdout.strip()
    marker = path / ".source-commit"
    return marker.read_text().split()[0] if marker.exists() and marker.read_text().strip() else None


def record_images(rec: dict) -> list[str]:
    """The image paths of one exported record (`images` list, or LLaVA's `image` string or list)."""
    if "images" in rec:
        return [i["path"] if isinstance(i, dict) else i for i in rec["images"]]
    img = rec.get("image", [])
    return [img] if isinstance(img, str) else list(img)


def run(cmd: list[str], log: Path, *, env: dict[str, str] | None = None, timeout: int = 3600,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `cmd`, appending its command line, stdout and stderr to `log`; never raises on a non-zero exit."""
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(map(str, cmd))}\n")
        f.flush()
        try:
            proc = subprocess.run(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, **(env or {})}, timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired as e:
            f.write(f"TIMEOUT after {timeout}s\n{e.output or ''}")
            return subprocess.CompletedProcess(cmd, 124, str(e.output or ""), "")
        f.write(proc.stdout)
        f.write(f"[exit {proc.returncode}]\n")
    return proc


def last_lines(text: str, n: int = 3) -> str:
    """The last `n` non-empty lines of `text`, joined with ' | ' (a reason for the results file)."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return " | ".join(lines[-n:])[-600:]


def make_processor(work: Path) -> Path:
    """A tiny Qwen2.5-VL model folder with the real tokenizer and Qwen2.5-VL-3B's processor files."""
    model = work / "model_qwen25"
    if not (model / "tokenizer.json").exists():
        run([JAM, "train", "tiny-model", "qwen2.5-vl", model, "--real-tokenizer"], work / "logs" / "tiny_model.log",
            env={"JAMSPOTTER_REFERENCE_DATA": "/work/shared/data"})
    # transformers 4.x reads preprocessor_config.json / chat_template.json, not processor_config.json
    for name in ("preprocessor_config.json", "chat_template.json"):
        if (QWEN_CONFIGS / name).exists() and not (model / name).exists():
            shutil.copy(QWEN_CONFIGS / name, model / name)
    return model


def make_processor_tf4(work: Path, model: Path) -> Path:
    """`model` laid out as transformers 4.x reads it (for peers pinned to transformers 4): the real
    Qwen2.5-VL-3B tokenizer_config.json (transformers 5 writes `extra_special_tokens` as a list, which 4.x
    cannot read) and no processor_config.json (preprocessor_config.json holds the image processor)."""
    out = work / "model_qwen25_tf4"
    out.mkdir(exist_ok=True)
    for f in model.iterdir():
        if f.name not in ("tokenizer_config.json", "processor_config.json") and not (out / f.name).exists():
            (out / f.name).symlink_to(f.resolve())
    shutil.copy(QWEN_CONFIGS / "tokenizer_config.json", out / "tokenizer_config.json")
    return out


def make_data(work: Path) -> dict[str, Path]:
    """One small synthetic dataset per image size."""
    out = {}
    for size in SIZES:
        d = work / f"data_{size}"
        if not (d / "samples.jsonl").exists():
            run([JAM, "data", "synth", "--out", d, "--n", "3", "--size", size, "--seed", "7"],
                work / "logs" / f"synth_{size}.log")
        out[size] = d
    return out


def make_venv(work: Path, peer: str, pkgs: list[str], fresh: bool) -> tuple[Path | None, str]:
    """A venv with `pkgs` installed (torch from the project venv via a .pth shim), or None and the reason."""
    venv = work / f"venv_{peer}"
    log = work / "logs" / f"pip_{peer}.log"
    if fresh and venv.exists():
        shutil.rmtree(venv)
    shim = work / "torch_shim"
    if not shim.exists():
        shim.mkdir()
        site = REPO / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        for p in sorted(site.iterdir()):
            if re.match(r"(torch|torchgen|torchvision|triton|nvidia|cuda)([-_.].*)?$", p.name):
                (shim / p.name).symlink_to(p)
    cons = work / "torch_constraints.txt"
    cons.write_text("".join(x + "\n" for x in (REPO / "constraints.txt").read_text().splitlines()
                            if re.match(r"(torch|torchvision)==", x)))
    if not (venv / "bin" / "python").exists():
        proc = run(["python3", "-m", "venv", venv], log)
        if proc.returncode:
            return None, "venv: " + last_lines(proc.stdout)
        pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        (venv / "lib" / pyver / "site-packages" / "_jamspotter_torch.pth").write_text(f"{shim}\n")
    proc = run([venv / "bin" / "pip", "install", "-c", cons, *pkgs], log)
    if proc.returncode:
        return None, "pip install: " + last_lines(proc.stdout)
    return venv, ""


def export(dataset: Path, trainer: str, out: Path, log: Path) -> tuple[bool, str]:
    """Our export of `dataset` for `trainer` to `out`."""
    proc = run([JAM, "data", "export", dataset, "--to", "qwen2.5-vl", "--for", trainer, "--out", out,
                "--overwrite"], log)
    return proc.returncode == 0, last_lines(proc.stdout, 4)


NUM = r"\s*(-?[\d.]+)\s*"


def boxes_in(text: str) -> list[list[float]]:
    """Every `"bbox_2d": [x1, y1, x2, y2]` list, or `<|box_start|>(x1,y1),(x2,y2)<|box_end|>`, in `text`."""
    pats = (rf'"bbox_2d"\s*:\s*\[{NUM},{NUM},{NUM},{NUM}\]', rf"<\|box_start\|>\({NUM},{NUM}\),\({NUM},{NUM}\)")
    return [[float(v) for v in m.groups()] for pat in pats for m in re.finditer(pat, text)]


def json_answer(text: str) -> bool:
    """True when the answer (less its ``` fences and end token) is a JSON list, as Qwen2.5-VL answers are."""
    body = re.sub(r"<\|im_end\|>\s*$", "", text.strip()).strip()
    body = re.sub(r"^```(json)?|```$", "", body.strip()).strip()
    try:
        return isinstance(json.loads(body), list)
    except ValueError:
        return False


def box_error(truth: list[list[float]], got: list[list[float]]) -> float | None:
    """Largest coordinate difference pairing each true box with its nearest `got` box; None if counts differ."""
    if len(truth) != len(got):
        return None
    worst = 0.0
    left = list(got)
    for t in truth:
        best = min(left, key=lambda g: max(abs(a - b) for a, b in zip(t, g, strict=True)))
        left.remove(best)
        worst = max(worst, max(abs(a - b) for a, b in zip(t, best, strict=True)))
    return worst


def check(peer: str, probe: dict, export_file: Path, dataset: Path) -> dict:
    """Compare a probe's output with our export file and the dataset's own boxes."""
    text = export_file.read_text()
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x]
    n_images = sum(len(record_images(r)) for r in records)
    samples = [json.loads(x) for x in (dataset / "samples.jsonl").read_text().splitlines() if x.strip()]
    by_name = {Path(s["image"]).name: s for s in samples}
    fmt, _ = get_trainer(peer).format("qwen2.5-vl")
    grids, worst_box, problems = [], 0.0, []
    for rec, item in zip(records, probe["items"], strict=False):
        for (w, h), (_t, gh, gw) in zip(item["images"], item["grid"], strict=False):
            exp = fmt.input_size(w, h)
            got = (gw * 14, gh * 14)
            grids.append({"image": [w, h], "peer": list(got), "expected": list(exp), "ok": tuple(exp) == got})
        if sum(t * gh * gw for t, gh, gw in item["grid"]) // 4 != item["image_tokens"]:
            problems.append(f"image tokens {item['image_tokens']} != grid product / 4")
        first = Path(record_images(rec)[0]).name
        sample = by_name[first]
        (w, h), (_t, gh, gw) = item["images"][0], item["grid"][0]
        sx, sy = gw * 14 / w, gh * 14 / h
        truth = [[o["bbox"][0] * sx, o["bbox"][1] * sy, o["bbox"][2] * sx, o["bbox"][3] * sy]
                 for o in sample.get("objects", [])]
        if not json_answer(item["labels"]):
            problems.append(f"{first}: the trained answer is not a JSON list")
        err = box_error(truth, boxes_in(item["labels"]))
        if err is None:
            problems.append(f"{first}: {len(boxes_in(item['labels']))} boxes in the peer's "
                            f"labels, {len(truth)} in the dataset")
        else:
            worst_box = max(worst_box, err)
    read_ok = probe["records"] == len(records) and sum(len(i["images"]) for i in probe["items"]) == n_images
    ok = read_ok and all(g["ok"] for g in grids) and not problems and worst_box <= 1.0
    return {"records_written": len(records), "records_read": probe["records"], "images_written": n_images,
            "images_read": sum(len(i["images"]) for i in probe["items"]), "grids": grids,
            "max_box_error_px": round(worst_box, 2), "problems": problems, "pass": ok,
            "first_labels": probe["items"][0]["labels"][:400] if probe["items"] else ""}


def run_peer(peer: str, work: Path, model: Path, data: dict[str, Path], fresh: bool,
             source: Path | None = None) -> dict:
    """Install `peer`, export for it, run its loader on each size; a result dict (never raises).

    A repository peer (spec "repo") runs from `source`, a checkout of that repository; without one it is
    recorded as not run."""
    spec = PEERS[peer]
    t0 = time.time()
    res: dict[str, Any] = {"peer": peer, "version": None, "sizes": {}, "pass": False, "reason": ""}
    extra_args: list[Any] = []
    if "repo" in spec:
        code = source / spec["folder"] if source is not None else None
        if code is None or not code.is_dir():
            res["reason"] = (f"not run: not on PyPI; pass --source {peer}=PATH, a checkout of "
                             f"github:{spec['repo']}" + (f" (no folder {code})" if code is not None else ""))
            res["seconds"] = 0.0
            return res
        commit = source_commit(source)
        res["version"] = f"{spec['repo']}@{commit[:12]}" if commit else f"{spec['repo']}@unknown"
        res["commit"] = commit
        script, min_flag, max_flag = spec["budget"]
        try:
            budget = (script_flag(code / script, min_flag), script_flag(code / script, max_flag))
        except (OSError, ValueError) as e:
            res.update(reason=f"shipped script: {e}", seconds=round(time.time() - t0, 1))
            return res
        res["budget"] = {"script": script, min_flag: budget[0], max_flag: budget[1]}
        extra_args = [budget[0], budget[1]]
    log = work / "logs" / f"{peer}.log"
    venv, why = make_venv(work, peer, spec["pip"], fresh)
    if venv is None:
        res.update(reason=why, seconds=round(time.time() - t0, 1))
        return res
    py = venv / "bin" / "python"
    dist = spec.get("dist", "transformers")
    v = run([py, "-c", f"import importlib.metadata as m; print(m.version({dist!r})); "
             "print('transformers', m.version('transformers'))"], log)
    if "repo" not in spec:
        res["version"] = v.stdout.strip().splitlines()[0] if v.returncode == 0 else None
    res["transformers"] = v.stdout.strip().splitlines()[-1].split()[-1] if v.returncode == 0 else None
    probe_file = work / f"probe_{peer}.py"
    probe_file.write_text(spec["probe"])
    for (size, dataset), (variant, venv_env) in ((d, v) for d in data.items()
                                                   for v in spec.get("variants", {"": {}}).items()):
        key = f"{size} {variant}".strip()
        if peer == "llamafactory":
            out_dir = work / "exports" / f"{peer}_{size}"
            out = out_dir / "jam.json"
            args = [model, out_dir, "jam"]
        elif "repo" in spec:
            out = work / "exports" / f"{peer}_{size}{spec['ext']}"
            args = [source / spec["folder"], make_processor_tf4(work, model), out, *extra_args]
        else:
            out = work / "exports" / f"{peer}_{size}.jsonl"
            args = [model, out]
        out.parent.mkdir(parents=True, exist_ok=True)
        ok, msg = export(dataset, peer, out, log)
        entry: dict[str, Any] = {"export": msg}
        res["sizes"][key] = entry
        if not ok:
            entry.update(pass_=False, reason="export failed: " + msg)
            continue
        proc = run([py, probe_file, *args], log, cwd=work, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                                                 "CUDA_VISIBLE_DEVICES": "", **venv_env})
        line = next((x for x in proc.stdout.splitlines() if x.startswith("PROBE ")), None)
        if proc.returncode or line is None:
            entry.update(pass_=False, reason="peer loader failed: " + last_lines(proc.stdout, 4))
            continue
        probe = json.loads(line[6:])
        entry.update(check(peer, probe, out, dataset))
        if "image_processor" in probe:  # the budget the peer left on the image processor
            entry["image_processor"] = probe["image_processor"]
        entry["pass_"] = entry.pop("pass")
    res["pass"] = bool(res["sizes"]) and all(e.get("pass_") for e in res["sizes"].values())
    if not res["pass"] and not res["reason"]:
        res["reason"] = "; ".join(f"{s}: {e.get('reason') or ', '.join(e.get('problems', [])) or 'grid/box mismatch'}"
                                  for s, e in res["sizes"].items() if not e.get("pass_"))
    res["seconds"] = round(time.time() - t0, 1)
    return res


def main() -> None:
    """Run the peers named on the command line and write the results file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/jamspotter-peers"))
    ap.add_argument("--peers", default="swift,llamafactory,qwen-vl-finetune,2u1")
    ap.add_argument("--fresh", action="store_true", help="recreate the virtualenvs")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "peer_loaders.json")
    ap.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                    help="a checkout of a repository peer (qwen-vl-finetune: github:QwenLM/Qwen3-VL; "
                         "2u1: github:2U1/Qwen2-VL-Finetune); repeatable")
    a = ap.parse_args()
    sources: dict[str, Path] = {}
    for item in a.source:
        name, sep, path = item.partition("=")
        if not sep or name not in PEERS or "repo" not in PEERS[name]:
            ap.error(f"--source {item}: expected NAME=PATH with NAME one of "
                     f"{', '.join(p for p in PEERS if 'repo' in PEERS[p])}")
        sources[name] = Path(path).resolve()
    work = a.work.resolve()
    (work / "logs").mkdir(parents=True, exist_ok=True)
    model = make_processor(work)
    data = make_data(work)
    results = [run_peer(p, work, model, data, a.fresh, sources.get(p)) for p in a.peers.split(",")]
    print(f"\n{'peer':16} {'version':34} {'size (variant)':33} {'records':8} {'images':7} "
          f"{'peer grid x14 vs expected':27} {'box err':8} pass")
    for r in results:
        for key, e in r["sizes"].items() or {"-": {}}.items():
            grids = sorted({f"{g['peer'][0]}x{g['peer'][1]} vs {g['expected'][0]}x{g['expected'][1]}"
                            for g in e.get("grids", [])}) or ["-"]
            print(f"{r['peer']:16} {str(r['version']):34} {key:33} "
                  f"{e.get('records_read', '-')}/{e.get('records_written', '-'):<5} "
                  f"{e.get('images_read', '-')}/{e.get('images_written', '-'):<4} {', '.join(grids):27} "
                  f"{e.get('max_box_error_px', '-')!s:8} {e.get('pass_', False)}")
        why = f"; {r['reason'][:400]}" if r["reason"] else ""
        print(f"    {r['peer']}: pass={r['pass']} in {r['seconds']} s{why}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), "work": str(work),
                                 "results": results}, indent=1) + "\n")
    print(f"\nwrote {a.out}; logs in {work / 'logs'}")


if __name__ == "__main__":
    main()
