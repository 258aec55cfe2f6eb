"""Export edge models: ONNX (opset >= 17, dynamic batch, checked and compared with PyTorch), TorchScript
fallback, optional INT8 dynamic quantisation; and ONNX Runtime sessions for inference.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jamspotter.data.io import atomic_write
from jamspotter.errors import JamspotterError
from jamspotter.outputs import apply_umask

OPSET = 17
TOLERANCE = 1e-4


def export_onnx(module: nn.Module, path: str | Path, example: torch.Tensor, opset: int = OPSET,
                input_name: str = "image", output_name: str = "logits") -> Path:
    """Trace `module` (eval mode) to ONNX with a dynamic batch axis; onnx.checker validates the file."""
    import onnx

    if opset < 17:
        raise JamspotterError(f"ONNX opset must be >= 17, got {opset}")
    path = Path(path)
    module = module.eval()
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent if path.parent.exists() else None)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter is chatty about shape inference
            torch.onnx.export(module, (example,), tmp, input_names=[input_name], output_names=[output_name],
                              dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                              opset_version=opset, dynamo=False)
        onnx.checker.check_model(tmp, full_check=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        apply_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def ort_session(path: str | Path, threads: int | None = None):  # noqa: ANN201 - onnxruntime.InferenceSession
    """A CPU ONNX Runtime session with `threads` intra-op threads (default: torch's thread count)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise JamspotterError(f"{path}: cannot load ONNX model ({e})") from None


def ort_run(session, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Run the single-input, single-output session on a float32 batch."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def max_abs_diff(module: nn.Module, session, x: torch.Tensor) -> float:  # noqa: ANN001
    """Largest |PyTorch - ONNX Runtime| output difference on `x`."""
    with torch.no_grad():
        ref = module.eval()(x).numpy()
    return float(np.abs(ref - ort_run(session, x.numpy())).max())


def export_torchscript(module: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """TorchScript trace (the fallback where ONNX Runtime is not available)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), example)
    with atomic_write(path, "wb") as fh, warnings.catch_warnings():
        # PyTorch marks TorchScript deprecated; the caller asked for this format, so the file is still written
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.save.* is deprecated", category=FutureWarning)
        torch.jit.save(traced, fh)
    return Path(path)


def _quantize_atomic(out_path: str | Path, quantize: Callable[[str], None]) -> Path:
    """Run an onnxruntime quantiser into a temp file beside `out_path`, then rename it into place."""
    out_path = Path(out_path)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out_path.parent)
    os.close(fd)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantisers warn once per padding Slice they leave in float
    try:
        quantize(tmp)
        apply_umask(tmp)  # mkstemp made it 0600
        os.replace(tmp, out_path)
    finally:
        root.setLevel(level)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def quantize_int8(onnx_path: str | Path, out_path: str | Path) -> Path:
    """INT8 dynamic quantisation (weights int8, activations quantised on the fly) with onnxruntime.

    Smaller file; for convolutional nets ONNX Runtime's dynamic ConvInteger path can be SLOWER than fp32
    on CPU (benchmarks/bench_edge_latency.py --int8 measures it), so keep fp32 unless size matters.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return _quantize_atomic(out_path, lambda tmp: quantize_dynamic(str(onnx_path), tmp, weight_type=QuantType.QInt8))


def quantize_int8_static(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray) -> Path:
    """INT8 static quantisation (QDQ, per-channel weights) calibrated on `calibration` (N x 3 x S x S in [0, 1]).

    Activation ranges come from real frames, so use a few dozen images like the ones the model will see.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration[i:i + 1].astype(np.float32) for i in range(len(calibration)))

        def get_next(self) -> dict | None:
            x = next(self._it, None)
            return None if x is None else {"image": x}

    return _quantize_atomic(out_path, lambda tmp: quantize_static(
        str(onnx_path), tmp, _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8))


class OrtModule:
    """Call an ONNX export of a frozen module like the module itself (torch in, torch out)."""

    def __init__(self, module: nn.Module, example: torch.Tensor, workdir: str | Path) -> None:
        path = export_onnx(module, Path(workdir) / "stem.onnx", example, input_name="x", output_name="y")
        self.session = ort_session(path)
        diff = max_abs_diff(module, self.session, example)
        if diff > 1e-3:  # relative to stem activations of order 1-10
            raise JamspotterError(f"ONNX Runtime stem disagrees with PyTorch (max diff {diff:.2e})")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(ort_run(self.session, x.numpy()))


def set_onnx_metadata(path: str | Path, meta: dict) -> None:
    """Store the checkpoint metadata (classes, image size, arch) inside the ONNX file, so it stands alone."""
    import json

    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    with atomic_write(path, "wb") as fh:
        fh.write(model.SerializeToString())


def read_onnx_metadata(session) -> dict:  # noqa: ANN001
    """The metadata written by `set_onnx_metadata`, from a loaded session."""
    import json

    props = session.get_modelmeta().custom_metadata_map
    out = {}
    for key, value in props.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, opset: int = OPSET, int8: bool = False,
                      torchscript: bool = False, batch: int = 2, seed: int = 0,
                      calibration: str | Path | None = None) -> dict:
    """Checkpoint -> out_dir/model.onnx (+ model.int8.onnx, model.int8-static.onnx, model.ts); returns what
    was written (file names relative to `out_dir`) and checked. `calibration` (a folder of images) turns on
    static INT8 quantisation.

    ONNX Runtime logits must match PyTorch within `TOLERANCE` on a random batch, else this raises.
    If the ONNX export itself fails, a TorchScript file is written instead and the reason reported.
    """
    from jamspotter.data.io import write_json
    from jamspotter.edge.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = meta["image_size"]
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    report: dict = {"checkpoint": str(checkpoint), "opset": opset, "image_size": size, "classes": meta["classes"]}
    try:
        onnx_path = export_onnx(model, out_dir / "model.onnx", x, opset=opset)
    except Exception as e:  # noqa: BLE001 - exporter failures vary; fall back to TorchScript
        report["onnx_error"] = f"{type(e).__name__}: {e}"
        torchscript = True
    else:
        set_onnx_metadata(onnx_path, meta)
        session = ort_session(onnx_path)
        diff = max_abs_diff(model, session, x)
        report.update(onnx=onnx_path.name, max_abs_diff=diff, tolerance=TOLERANCE)
        if diff > TOLERANCE:
            raise JamspotterError(f"{onnx_path}: ONNX Runtime differs from PyTorch by {diff:.2e} > {TOLERANCE:g}")
        if int8:
            q = quantize_int8(onnx_path, out_dir / "model.int8.onnx")
            set_onnx_metadata(q, meta)
            qs = ort_session(q)
            with torch.no_grad():
                ref = model(x).argmax(1).numpy()
            report.update(int8=q.name, int8_top1_agreement=float((ort_run(qs, x.numpy()).argmax(1) == ref).mean()))
        if calibration is not None:
            calib = calibration_batch(calibration, size)
            q = quantize_int8_static(onnx_path, out_dir / "model.int8-static.onnx", calib)
            set_onnx_metadata(q, meta)
            with torch.no_grad():
                ref = model(torch.from_numpy(calib)).argmax(1).numpy()
            agree = float((ort_run(ort_session(q), calib).argmax(1) == ref).mean())
            report.update(int8_static=q.name, int8_static_calibration_images=len(calib),
                          int8_static_top1_agreement_on_calibration=agree)
    if torchscript:
        report["torchscript"] = export_torchscript(model, out_dir / "model.ts", x).name
    write_json(out_dir / "model.json", meta)
    write_json(out_dir / "export.json", report)
    return report


def calibration_batch(folder: str | Path, size: int, limit: int = 64) -> np.ndarray:
    """Up to `limit` images of a folder (recursively, sorted), as the model's input batch."""
    from jamspotter.edge.data import IMAGE_EXTS, load_rgb, to_tensor

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise JamspotterError(f"{folder}: no calibration images")
    step = max(1, len(files) // limit)  # spread over the folder (all classes), not the first `limit`
    return torch.stack([to_tensor(load_rgb(f), size) for f in files[::step][:limit]]).numpy()
