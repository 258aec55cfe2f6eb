"""`Detector`: a Qwen-VL model (hub id or local path) in, `BoxObject`s in ORIGINAL image pixels out.

Prompts come from the model's run contract (`jamspotter.json`, written by `jamspotter train`) through
`jamspotter.formats`, with the resize settings of the processor actually loaded, so inference asks
exactly what training taught. Generation is greedy and batched with left padding
(a right-padded prompt would put pad tokens between the question and the answer). Boxes of
Qwen2.5-VL are read against the input size the processor really produced (`image_grid_thw`).
VLM text carries no confidence, so `score` stays None (the evaluator treats that as 1.0 and says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jamspotter.data.records import Sample
from jamspotter.detections import Detections
from jamspotter.errors import DataError, JamspotterError
from jamspotter.formats.contract import RunContract, untrained_contract
from jamspotter.infer.ask import Answer

Task = Literal["auto", "detect_jam", "detect_all"]
ImageLike = Any  # PIL.Image.Image | str | Path | numpy.ndarray (H x W x 3 uint8 RGB)
TASKS: tuple[str, ...] = ("auto", "detect_jam", "detect_all")
UNREADABLE = "unreadable image"  # the parse problem of an input that could not be read


def load_contract(name_or_path: str | Path) -> RunContract | None:
    """The run contract saved beside a local model, None for a hub id or a model jamspotter did not train."""
    path = Path(name_or_path)
    return RunContract.load(path) if path.is_dir() else None


def check_task(task: str) -> str:
    """`task` if it is one of TASKS, else a one-line error."""
    if task not in TASKS:
        raise JamspotterError(f"unknown task {task!r}; use {', '.join(TASKS)}")
    return task


def contract_for_task(contract: RunContract, task: str) -> RunContract:
    """`auto` keeps the trained question; `detect_jam` / `detect_all` ask for jam-causing / all items instead."""
    if check_task(task) == "auto" or (task == "detect_jam") == contract.jam_only:
        return contract
    return contract.model_copy(update={"jam_only": task == "detect_jam", "with_reason": False})


def settle_contract(trained: RunContract | None, family: str, processor: Any, name: str | Path) -> RunContract:
    """The contract a loaded model answers by: its own (its family checked against the weights) or, for a model
    trained elsewhere, the default one; either way with the pixel budget of the processor loaded."""
    from jamspotter.formats import resize_params

    params = resize_params(processor)
    if trained is None:
        trained = untrained_contract(family, params.min_pixels, params.max_pixels)
    elif trained.family != family:
        raise JamspotterError(f"{name}: jamspotter.json says {trained.family} but the model is a {family}")
    return trained.model_copy(update={"min_pixels": params.min_pixels, "max_pixels": params.max_pixels})


def to_pil(image: ImageLike) -> Any:
    """An RGB PIL image from a PIL image, a path (read upright, EXIF applied) or an H x W x 3 uint8 array.

    An unreadable or oversized image file is a DataError.
    """
    from PIL import Image

    from jamspotter.data.images import open_rgb

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"expected an H x W x 3 RGB array, got shape {image.shape}")
        return Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return open_rgb(Path(image))


def iter_video_frames(path: str | Path, every_n: int = 1) -> Iterator[tuple[int, Any]]:
    """(index, RGB PIL frame) for every `every_n`-th frame of a clip, decoded with av (no torchcodec)."""
    import av

    if every_n < 1:
        raise JamspotterError(f"every_n must be >= 1, got {every_n}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such video")
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % every_n == 0:
                    yield i, frame.to_image()
    except av.error.FFmpegError as e:
        raise DataError(f"{path}: cannot decode video ({e})") from None


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def cut_at_stops(text: str, stops: Iterable[str]) -> str:
    """`text` up to the first of `stops` (end-of-turn tokens: what follows is not the model's turn)."""
    for stop in stops:
        text = text.split(stop, 1)[0]
    return text


def detect_in_batches(images: Sequence[ImageLike], answer: Callable[[list[Any]], list[Detections]],
                      batch_size: int = 4, *, progress: bool = False, skip_unreadable: bool = False
                      ) -> list[Detections]:
    """Open `images` and ask `answer` (RGB PIL images -> one `Detections` each) `batch_size` at a time.

    The one batching loop of every backend. An unreadable image is a DataError, or with
    `skip_unreadable` a `Detections` without boxes whose problems say why.
    """
    if batch_size < 1:
        raise JamspotterError(f"batch_size must be >= 1, got {batch_size}")
    results: list[Detections] = []
    batches: Iterable[list[Any]] = _batched(images, batch_size)
    if progress:
        from jamspotter.progress import track

        batches = track(batches, total=-(-len(images) // batch_size), description="detect")
    for batch in batches:
        opened: list[Any] = []
        for im in batch:
            try:
                opened.append(to_pil(im))
            except DataError as e:
                if not skip_unreadable:
                    raise
                opened.append(Detections(problems=[f"{UNREADABLE}: {e.format_message()}"]))
        readable = [im for im in opened if not isinstance(im, Detections)]
        answers = iter(answer(readable) if readable else [])
        results += [im if isinstance(im, Detections) else next(answers) for im in opened]
    return results


class Detector:
    """Load a Qwen-VL model once, then `detect` images, samples or clips.

    The run contract beside a model fine-tuned here decides the prompt (class list, jam-only, reasons,
    pixel budget); a model without one (a released checkpoint) gets the default classes, all items.
    task: "auto" asks what the model was trained on; "detect_jam" / "detect_all" override that.
    min/max_pixels override the image token budget (and are recorded in `self.contract`).
    """

    def __init__(
        self,
        name_or_path: str | Path,
        family: str = "auto",
        quantization: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        task: Task = "auto",
        max_new_tokens: int = 512,
        attn: str | None = None,
    ) -> None:
        import torch

        from jamspotter.models import load_model

        check_task(task)  # before the model is loaded
        trained = load_contract(name_or_path)
        if trained is not None:
            min_pixels = min_pixels if min_pixels is not None else trained.min_pixels
            max_pixels = max_pixels if max_pixels is not None else trained.max_pixels
        model, processor = load_model(
            name_or_path, family=family, quantization=quantization, dtype=dtype, attn=attn, min_pixels=min_pixels,
            max_pixels=max_pixels, video_min_pixels=trained.video_min_pixels if trained else None,
            video_max_pixels=trained.video_max_pixels if trained else None)
        contract = settle_contract(trained, model.jamspotter_family, processor, name_or_path)
        if quantization is None:  # bitsandbytes models are already placed by load_model
            model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.eval()
        self._attach(model, processor, contract_for_task(contract, task), max_new_tokens, str(name_or_path))

    @classmethod
    def from_loaded(cls, model: Any, processor: Any, contract: RunContract, *, task: Task = "auto",
                    max_new_tokens: int = 512, name: str = "(in memory)") -> Detector:
        """Wrap a model that is already loaded (e.g. the one being trained): same prompts, generation, parsing."""
        det = cls.__new__(cls)
        det._attach(model, processor, contract_for_task(contract, task), max_new_tokens, name)
        return det

    def _attach(self, model: Any, processor: Any, contract: RunContract, max_new_tokens: int, name: str) -> None:
        from jamspotter.models.families import VISION_TOKENS

        self.name_or_path, self.max_new_tokens = name, int(max_new_tokens)
        self.contract = contract
        self.task = "detect_jam" if contract.jam_only else "detect_all"
        self.model, self.processor = model, processor
        self.format = contract.format(processor)
        self.family: str = contract.family
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        # The vision pads are never an answer; a random or badly tuned model that sampled one would
        # break the next forward pass, so they are masked out of generation.
        self._suppress = [self.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]
        self._stops = [t for t in ("<|im_end|>", self.tokenizer.pad_token, "<|endoftext|>") if t]
        patch = getattr(self.processor.image_processor, "patch_size", None)
        self._patch = int(patch) if patch else None

    def __repr__(self) -> str:
        return f"Detector({self.name_or_path!r}, family={self.family!r}, task={self.task!r}, format={self.format})"

    @property
    def prompt(self) -> str:
        """The user instruction sent with every image (the same text training renders)."""
        return self.format.prompt()

    def _chat_text(self) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _clean(self, text: str) -> str:
        """Cut the answer at the end-of-turn token (what follows is padding)."""
        return cut_at_stops(text, self._stops).strip()

    def _input_sizes(self, inputs: Any, images: list[Any]) -> list[tuple[int, int]]:
        """(width, height) each image was resized to, from the processor's patch grid when it reports one."""
        grid = inputs.get("image_grid_thw")
        if grid is not None and self._patch and len(grid) == len(images):
            return [(int(w) * self._patch, int(h) * self._patch) for _, h, w in grid.tolist()]
        return [self.format.input_size(*im.size) for im in images]

    def _prepare(self, texts: list[str], images: list[Any]) -> Any:
        """Processor inputs on the model's device; an image the processor refuses is one DataError."""
        try:
            inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        except ValueError as e:  # e.g. an aspect ratio over 200, which Qwen-VL processors refuse
            sizes = ", ".join(f"{w}x{h}" for w, h in (im.size for im in images))
            raise DataError(f"cannot prepare images ({sizes}) for {self.family}: {str(e).splitlines()[0]}") from None
        return inputs.to(self.model.device)

    def generate_turn(self, messages: list[dict[str, Any]], images: list[Any], max_new_tokens: int, *,
                      tools: list[dict[str, Any]] | None = None, **generate: Any) -> tuple[Any, Any]:
        """(new token ids, processor inputs) of one answer to a chat-template conversation: greedy unless
        `generate` says otherwise, vision pads suppressed. The crop-tool loop and the chat route use it."""
        import torch

        text = self.processor.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        inputs = self._prepare([text], images)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, suppress_tokens=self._suppress,
                                      pad_token_id=self.tokenizer.pad_token_id, **{"do_sample": False, **generate})
        return out[0, inputs["input_ids"].shape[1]:], inputs

    def _generate(self, images: list[Any]) -> list[Detections]:
        import torch

        inputs = self._prepare([self._chat_text()] * len(images), images)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      suppress_tokens=self._suppress, pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        # special tokens stay: Qwen2-VL writes its boxes with them
        decoded = self.tokenizer.batch_decode(new, skip_special_tokens=False)
        cut = new.shape[1] >= self.max_new_tokens
        results = []
        for image, size, full in zip(images, self._input_sizes(inputs, images), decoded, strict=True):
            raw = self._clean(full)
            boxes, problems = self.format.parse_detections(raw, image.size, size)
            if cut and not any(stop in full for stop in self._stops):
                problems.append(f"answer cut at max_new_tokens={self.max_new_tokens}")
            results.append(Detections(boxes, tuple(image.size), size, raw, problems))
        return results

    def detect(self, images: Sequence[ImageLike], batch_size: int = 4, progress: bool = False,
               skip_unreadable: bool = False) -> list[Detections]:
        """One `Detections` per image, in order. Images: PIL, paths or RGB arrays (any sizes).

        An unreadable image is a DataError, or with `skip_unreadable` an answer without boxes whose
        `problems` say why (so one bad file in a folder does not throw away the rest of a run).
        """
        return detect_in_batches(images, self._generate, batch_size, progress=progress,
                                 skip_unreadable=skip_unreadable)

    def ask(self, image: ImageLike, question: str, max_crops: int = 3,
            max_new_tokens: int | None = None) -> Answer:
        """Answer a free question about one image, think/answer style, zooming in with the crop tool.

        The model may call `crop` (boxes in its own coordinates); each valid call appends the crop of the
        original image to the conversation and generation goes on. At most `max_crops` crop calls are
        answered (a bad call, e.g. outside the image, counts and gets an error message instead of an image);
        one call over the limit is told so, and a further one ends the loop, so a model that never stops
        calling makes at most max_crops + 2 turns. `max_new_tokens` (default: the detector's) bounds each
        turn. A region in the question may be written `<bbox>[x1, y1, x2, y2]</bbox>` in original pixels.
        Returns the answer, the thinking, the crop boxes in original pixels and any problems (see `Answer`).
        """
        from jamspotter.infer.ask import ask

        return ask(self, image, question, max_crops=max_crops, max_new_tokens=max_new_tokens)

    def detect_video(self, path: str | Path, every_n: int = 1, batch_size: int = 4) -> list[Detections]:
        """Detect on every `every_n`-th frame of a clip (decoded with av); `frame` holds each frame's index."""
        results: list[Detections] = []
        for batch in _batched(iter_video_frames(path, every_n), batch_size):
            for (index, _), res in zip(batch, self._generate([im for _, im in batch]), strict=True):
                res.frame = index
                results.append(res)
        return results

    def detect_samples(self, samples: Sequence[Sample], root: str | Path | None = None, batch_size: int = 4,
                       progress: bool = False, every_n: int = 1) -> list[Sample]:
        """Predictions as `Sample`s (same ids, `objects` = boxes; clips get `frame_objects`).

        The raw text and parse problems go to `meta["text"]` / `meta["parse_problems"]` (for a clip,
        one entry per frame, with `meta["frame_indices"]`), which is where `jamspotter.evaluate` reads them.
        Clip videos are sampled every `every_n` frames; a clip given as `frames` runs on all of them.
        An unreadable image gets no boxes and an `unreadable image: ...` parse problem; the others still run.
        """
        for s in samples:
            if s.image is None and s.video is None and not s.frames:
                raise DataError(f"sample {s.id}: no image, video or frames to run the detector on")
        out: list[Sample | None] = [None] * len(samples)
        on_images = [i for i, s in enumerate(samples) if s.image is not None]
        results = self.detect([samples[i].image_path(root) for i in on_images], batch_size=batch_size,
                              progress=progress, skip_unreadable=True)
        for i, res in zip(on_images, results, strict=True):
            out[i] = res.to_sample(samples[i])
        for i, s in enumerate(samples):
            if out[i] is None:
                out[i] = self._detect_clip(s, root, batch_size, every_n)
        return out  # type: ignore[return-value]  # every slot is filled above

    def _detect_clip(self, sample: Sample, root: str | Path | None, batch_size: int, every_n: int) -> Sample:
        if sample.frames:
            results = self.detect([sample.resolve(f, root) for f in sample.frames], batch_size=batch_size)
            indices = list(range(len(results)))
        else:
            results = self.detect_video(sample.resolve(sample.video, root), every_n=every_n, batch_size=batch_size)
            indices = [int(r.frame or 0) for r in results]
        meta = {**sample.meta, "text": [r.text for r in results], "parse_problems": [r.problems for r in results],
                "frame_indices": indices}
        return sample.model_copy(update={"objects": [], "frame_objects": [r.objects for r in results],
                                         "qa": [], "label": None, "target": None, "meta": meta})
