"""CPU step of the GPU SFT benchmark: build the carry folder that travels to the lent GPU machine.

The device machine (see benchmarks/gpu/README.md) has torch, transformers 5.17, peft, accelerate, typer,
rich, pyyaml, opencv and pillow, but no trl, datasets or pydantic, no bitsandbytes, no network and no
../shared. This script puts into one git-ignored folder (default `.gpu_carry/`):

- `wheels/`: the wheels the device lacks, for its Python (3.12, manylinux x86-64), at the versions this
  machine's tests run with (so the device runs what the CPU rehearsal ran): trl, datasets (+ dill,
  multiprocess), pydantic (+ pydantic-core, annotated-types, typing-inspection, typing-extensions),
  transformers and peft (the device's are older; our SFTConfig uses transformers' `activation_checkpointing`),
  regex (transformers checks its version at import), and bitsandbytes cut down to its CPU and CUDA 13
  libraries (the full wheel is 41 MiB; the device's torch is built for CUDA 13.0). jamspotter itself is
  not a wheel: the device command puts the travelling `src/` on PYTHONPATH. av is not carried: nothing on
  the benchmark's path imports it.
- `qwen_configs/Qwen2.5-VL-7B-Instruct`, `qwen_configs/Qwen3-VL-8B-Instruct`: the real configs (no weights).
- `qwen2_5_vl_tokenizer/`: Qwen's tokenizer (tokenizer.json and its config files).
- `manifest.json`: what is in it, with sizes and versions.

It checks that the carry plus the tracked files (`git ls-files`) stay under the 64 MiB the device copies,
prints both sizes, and exits with code 1 when over.

    .venv/bin/python benchmarks/gpu/prepare_carry.py [--carry .gpu_carry] [--shared ../shared/data] [--no-wheels]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 64 * 2**20  # what the device machine copies: tracked + untracked-not-ignored + carried paths
MODEL_CONFIGS = ("Qwen2.5-VL-7B-Instruct", "Qwen3-VL-8B-Instruct")
CONFIG_FILES = ("config.json", "preprocessor_config.json", "video_preprocessor_config.json", "chat_template.json",
                "tokenizer_config.json", "generation_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.json")
# Carried at the version installed here (the version the CPU rehearsal runs), else at the pinned one.
CARRIED = ("trl", "datasets", "dill", "multiprocess", "pydantic", "pydantic_core", "annotated-types",
           "typing-inspection", "typing_extensions", "transformers", "peft", "regex")
PINNED = {"bitsandbytes": "0.50.2"}  # not installed on this CPU machine; transformers needs >= 0.46.1
BNB_KEEP = ("libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so")
DEVICE_PYTHON = "3.12"  # KINDS.md: python3 there is 3.12.3
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def pinned_requirements() -> list[str]:
    """`name==version` for every carried wheel: this interpreter's installed version, or PINNED."""
    reqs = []
    for name in CARRIED:
        try:
            reqs.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            raise SystemExit(f"prepare_carry: {name} is not installed here; run `make install-dev` first") from None
    return reqs + [f"{k}=={v}" for k, v in PINNED.items()]


def download_wheels(dest: Path, reqs: list[str], python: str = DEVICE_PYTHON) -> None:
    """pip download for the device's Python and platform, no dependencies (each one is named)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", python,
           "--implementation", "cp", *(a for p in PLATFORMS for a in ("--platform", p)),
           "-q", "-d", str(dest), *reqs]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def cut_bitsandbytes(wheel: Path, keep: tuple[str, ...] = BNB_KEEP) -> tuple[int, int]:
    """Rewrite the bitsandbytes wheel in place without the native libraries not in `keep` (ROCm, XPU, CUDA 11/12).

    The RECORD loses the removed files' lines, so the wheel stays installable. Returns (bytes before, after).
    """
    before = wheel.stat().st_size
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        dropped = {n for n in src.namelist()
                   if Path(n).name.startswith("libbitsandbytes_") and Path(n).name not in keep}
        for info in src.infolist():
            if info.filename in dropped:
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = [ln for ln in data.decode().splitlines() if ln.split(",", 1)[0] not in dropped]
                data = ("\n".join(lines) + "\n").encode()
            dst.writestr(info, data)
    missing = [k for k in keep if not any(Path(n).name == k for n in zipfile.ZipFile(tmp).namelist())]
    if "libbitsandbytes_cuda130.so" in missing:
        tmp.unlink()
        raise SystemExit(f"prepare_carry: {wheel.name} has no libbitsandbytes_cuda130.so (the device's CUDA 13.0)")
    tmp.replace(wheel)
    return before, wheel.stat().st_size


def copy_reference(shared: Path, carry: Path) -> None:
    """The two model configs and Qwen's tokenizer, in ../shared/data's layout (JAMSPOTTER_REFERENCE_DATA)."""
    for name in MODEL_CONFIGS:
        _copy_folder(shared / "qwen_configs" / name, carry / "qwen_configs" / name, "config.json", CONFIG_FILES)
    _copy_folder(shared / "qwen2_5_vl_tokenizer", carry / "qwen2_5_vl_tokenizer", "tokenizer.json", TOKENIZER_FILES)


def _copy_folder(src: Path, dst: Path, required: str, names: tuple[str, ...]) -> None:
    """Copy the `names` that exist in `src` to `dst`; `src` must hold `required`."""
    if not (src / required).is_file():
        raise SystemExit(f"prepare_carry: {src}/{required} not found (pass --shared)")
    dst.mkdir(parents=True, exist_ok=True)
    for f in names:
        if (src / f).is_file():
            shutil.copyfile(src / f, dst / f)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def tracked_bytes(root: Path = ROOT) -> int:
    """Bytes of the files git tracks (they travel with every device call)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout
    return sum((root / n).stat().st_size for n in names.decode().split("\0") if n and (root / n).is_file())


def untracked_bytes(root: Path = ROOT) -> int:
    """Bytes of the untracked files git does not ignore (they travel too)."""
    names = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard"], cwd=root, check=True,
                           capture_output=True).stdout
    return sum((root / n).stat().st_size for n in names.decode().split("\0") if n and (root / n).is_file())


def build(carry: Path, shared: Path, wheels: bool, python: str = DEVICE_PYTHON) -> dict:
    """Fill `carry` (replacing what was there); returns the manifest."""
    if carry.exists():
        shutil.rmtree(carry)
    carry.mkdir(parents=True)
    copy_reference(shared, carry)
    manifest: dict = {"python": python, "wheels": {}, "bitsandbytes_cut": None}
    if wheels:
        dest = carry / "wheels"
        dest.mkdir()
        reqs = pinned_requirements()
        download_wheels(dest, reqs, python)
        bnb = sorted(dest.glob("bitsandbytes-*.whl"))
        if len(bnb) != 1:
            raise SystemExit(f"prepare_carry: expected one bitsandbytes wheel, found {[p.name for p in bnb]}")
        before, after = cut_bitsandbytes(bnb[0])
        manifest["bitsandbytes_cut"] = {"wheel": bnb[0].name, "bytes_before": before, "bytes_after": after,
                                        "kept": list(BNB_KEEP)}
        manifest["requirements"] = reqs
        manifest["wheels"] = {p.name: p.stat().st_size for p in sorted(dest.glob("*.whl"))}
    manifest["files"] = {str(p.relative_to(carry)): p.stat().st_size for p in sorted(carry.rglob("*"))
                         if p.is_file() and p.parent.name != "wheels"}
    (carry / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--carry", type=Path, default=ROOT / ".gpu_carry", help="the folder to build (git-ignored)")
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("JAMSPOTTER_REFERENCE_DATA", "")
                                                      or ROOT.parent / "shared" / "data"),
                   help="where qwen_configs/ and qwen2_5_vl_tokenizer/ are (../shared/data)")
    p.add_argument("--no-wheels", action="store_true", help="configs and tokenizer only (the CPU rehearsal)")
    p.add_argument("--python-version", default=DEVICE_PYTHON,
                   help="the Python the wheels are for (the device's; this machine's to rehearse the install)")
    args = p.parse_args(argv)
    manifest = build(args.carry, args.shared, wheels=not args.no_wheels, python=args.python_version)
    carry_b = folder_bytes(args.carry)
    tracked_b, untracked_b = tracked_bytes(), untracked_bytes()
    total = carry_b + tracked_b + untracked_b
    mib = 2**20
    for name, size in manifest["wheels"].items():
        print(f"  {size / mib:7.2f} MiB  wheels/{name}")
    if manifest["bitsandbytes_cut"]:
        cut = manifest["bitsandbytes_cut"]
        print(f"bitsandbytes wheel cut from {cut['bytes_before'] / mib:.1f} MiB to {cut['bytes_after'] / mib:.1f} MiB")
    print(f"carry {args.carry}: {carry_b / mib:.1f} MiB; tracked files {tracked_b / mib:.1f} MiB; untracked "
          f"(not ignored) {untracked_b / mib:.1f} MiB; together {total / mib:.1f} MiB of the device's "
          f"{LIMIT_BYTES / mib:.0f} MiB")
    if total >= LIMIT_BYTES:
        print("prepare_carry: too large for the device machine", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
