"""Detectors other than the in-process transformers one, with the same `Detections` out.

- `OpenAIBackend`: an OpenAI-compatible server (`jamspotter serve`, or vLLM's `vllm serve`). It sends the run
  contract's prompt with the image as a PNG data URI to `/v1/chat/completions` (greedy) and parses the text
  with the same `Format` the Detector uses, so it returns what the in-process Detector returns. The contract
  comes from the server (`GET /v1/contract`, which `jamspotter serve` has); for a server without one (vLLM)
  `family` (or a `jamspotter.json` given as `contract`) says what to ask.
- `VLLMBackend`: vLLM's offline engine in this process, when `vllm` is installed (the optional `vllm` extra;
  Linux + CUDA). Documented, not part of the test suite.
- `load_backend(name, ...)`: `transformers` (the `Detector`), `openai` or `vllm` by name (the CLI's `--backend`).

Qwen2.5-VL answers in pixels of the resized input: a client reads them against `format.input_size`, the
smart_resize of the contract's pixel budget (the same numbers the server's processor uses).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jamspotter.detections import Detections
from jamspotter.errors import DataError, JamspotterError
from jamspotter.formats.contract import CONTRACT_FILE, RunContract, untrained_contract
from jamspotter.infer.detector import (
    Detector,
    ImageLike,
    Task,
    _batched,
    check_task,
    contract_for_task,
    cut_at_stops,
    detect_in_batches,
    iter_video_frames,
)

BACKENDS: tuple[str, ...] = ("transformers", "openai", "vllm")
STOPS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")  # end-of-turn text a server may leave in the answer


def image_data_uri(image: Any) -> str:
    """A PIL image as a lossless PNG `data:` URI (the server sees exactly these pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def read_contract(source: RunContract | str | Path) -> RunContract:
    """A run contract given as an object, a `jamspotter.json` file, or a model folder holding one."""
    if isinstance(source, RunContract):
        return source
    path = Path(source)
    if path.is_dir():
        contract = RunContract.load(path)
        if contract is None:
            raise DataError(f"{path}: no {CONTRACT_FILE} in this folder")
        return contract
    if not path.is_file():
        raise DataError(f"{path}: no such run contract file")
    try:
        return RunContract.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a valid run contract ({str(e).splitlines()[0]})") from None


class _TextBackend:
    """Shared by the backends that get answer text from elsewhere: opening images, parsing, clips, samples.

    Subclasses set `contract` (after `task`), `format`, `family`, `max_new_tokens`, `name_or_path` and implement
    `_answers(images) -> [(text, cut)]` (`cut`: generation stopped at max_new_tokens).
    """

    contract: RunContract
    format: Any
    family: str
    max_new_tokens: int
    name_or_path: str

    def _set_contract(self, contract: RunContract, task: str) -> None:
        self.contract = contract_for_task(contract, task)
        self.task = "detect_jam" if self.contract.jam_only else "detect_all"
        self.format = self.contract.format()  # resize settings: the contract's pixel budget
        self.family = self.contract.family

    @property
    def prompt(self) -> str:
        """The user instruction sent with every image (the one training taught)."""
        return self.format.prompt()

    def _answers(self, images: list[Any]) -> list[tuple[str, bool]]:
        raise NotImplementedError

    def _parse(self, image: Any, text: str, cut: bool) -> Detections:
        size = self.format.input_size(*image.size)
        boxes, problems = self.format.parse_detections(text, image.size, size)
        if cut:
            problems.append(f"answer cut at max_new_tokens={self.max_new_tokens}")
        return Detections(boxes, tuple(image.size), size, text, problems)

    def detect(self, images: Sequence[ImageLike], batch_size: int = 4, progress: bool = False,
               skip_unreadable: bool = False) -> list[Detections]:
        """One `Detections` per image, in order (as `Detector.detect`); `batch_size` images are asked at a time."""
        def answer(opened: list[Any]) -> list[Detections]:
            return [self._parse(im, text, cut) for im, (text, cut) in zip(opened, self._answers(opened), strict=True)]

        return detect_in_batches(images, answer, batch_size, progress=progress, skip_unreadable=skip_unreadable)

    def detect_video(self, path: str | Path, every_n: int = 1, batch_size: int = 4) -> list[Detections]:
        """Detect on every `every_n`-th frame of a clip; `frame` holds each frame's index."""
        results: list[Detections] = []
        for batch in _batched(iter_video_frames(path, every_n), batch_size):
            for (index, _), res in zip(batch, self.detect([im for _, im in batch], batch_size=len(batch)),
                                       strict=True):
                res.frame = index
                results.append(res)
        return results

    # Samples and clips are handled exactly as the in-process Detector does (one implementation):
    # both only call `self.detect` and `self.detect_video`.
    detect_samples = Detector.detect_samples
    _detect_clip = Detector._detect_clip


def _cut(text: str) -> str:
    return cut_at_stops(text, STOPS).strip()


class OpenAIBackend(_TextBackend):
    """A detector served over HTTP by an OpenAI-compatible server (`jamspotter serve` or `vllm serve`).

    url: the server (`http://127.0.0.1:8000`, with or without `/v1`). model: the name to send (default: the
    first of the server's `/v1/models`). api_key: sent as `Authorization: Bearer`. contract: a RunContract, a
    `jamspotter.json` or a model folder; default: the server's `/v1/contract`, else the untrained contract of
    `family` (which then must be given). Requests time out after `timeout` seconds; nothing is retried.
    """

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None,
                 contract: RunContract | str | Path | None = None, family: str = "auto", task: Task = "auto",
                 max_new_tokens: int = 512, timeout: float = 120.0) -> None:
        import httpx

        from jamspotter.formats.resize import DEFAULT_PARAMS
        from jamspotter.models.families import check_family

        check_task(task)
        base = url.rstrip("/")
        base = base.removesuffix("/v1")
        if not base.startswith(("http://", "https://")):
            raise JamspotterError(f"--url {url}: give an http:// or https:// address")
        self.url = base
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base, headers=headers, timeout=timeout)
        self.max_new_tokens = int(max_new_tokens)
        found = read_contract(contract) if contract is not None else self._server_contract()
        if found is None:
            if family == "auto":
                raise JamspotterError(f"{base} serves no run contract (not `jamspotter serve`?): pass --family "
                                      "(and --contract jamspotter.json for a model trained here)")
            params = DEFAULT_PARAMS[check_family(family)]
            found = untrained_contract(family, params.min_pixels, params.max_pixels)
        if family != "auto" and check_family(family) != found.family:
            raise JamspotterError(f"--family {family}, but the run contract says {found.family}")
        self._set_contract(found, task)
        self.model = model or self._first_model()
        self.name_or_path = f"{self.model} @ {base}"

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.url!r}, model={self.model!r}, family={self.family!r}, task={self.task!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # ---- HTTP -----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise JamspotterError(f"{self.url}{path}: no answer within {self._client.timeout.read} s") from None
        except httpx.HTTPError as e:
            raise JamspotterError(f"{self.url}{path}: cannot reach the server ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())})") from None

    def _fail(self, path: str, response: Any) -> JamspotterError:
        try:
            body = response.json()
            detail = body.get("error") if isinstance(body, dict) else None
            if isinstance(detail, dict):  # OpenAI's and vLLM's shape: {"error": {"message": ...}}
                detail = detail.get("message")
            detail = detail or body.get("detail") or body
        except ValueError:
            detail = response.text[:200]
        hint = " (pass --api-key)" if response.status_code == 401 else ""
        return JamspotterError(f"{self.url}{path}: HTTP {response.status_code}: {' '.join(str(detail).split())}{hint}")

    def _server_contract(self) -> RunContract | None:
        response = self._request("GET", "/v1/contract")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail("/v1/contract", response)
        try:
            return RunContract.model_validate(response.json())
        except ValueError as e:
            raise JamspotterError(f"{self.url}/v1/contract: not a run contract ({str(e).splitlines()[0]})") from None

    def _first_model(self) -> str:
        response = self._request("GET", "/v1/models")
        if response.status_code != 200:
            raise self._fail("/v1/models", response)
        try:
            return str(response.json()["data"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise JamspotterError(f"{self.url}/v1/models: no model listed; pass the model name") from None

    def complete(self, image: Any) -> tuple[str, bool]:
        """(answer text, cut at max_new_tokens) for one PIL image and the contract's prompt."""
        payload = {"model": self.model, "stream": False, "temperature": 0, "max_tokens": self.max_new_tokens,
                   "messages": [{"role": "user", "content": [
                       {"type": "image_url", "image_url": {"url": image_data_uri(image)}},
                       {"type": "text", "text": self.prompt}]}]}
        response = self._request("POST", "/v1/chat/completions", json=payload)
        if response.status_code != 200:
            raise self._fail("/v1/chat/completions", response)
        try:
            choice = response.json()["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise JamspotterError(f"{self.url}/v1/chat/completions: not a chat completion") from None
        return _cut(text), choice.get("finish_reason") == "length"

    def _answers(self, images: list[Any]) -> list[tuple[str, bool]]:
        """The images of one batch asked concurrently (the server batches or queues them)."""
        if len(images) == 1:
            return [self.complete(images[0])]
        with ThreadPoolExecutor(max_workers=len(images)) as pool:
            return list(pool.map(self.complete, images))


class VLLMBackend(_TextBackend):
    """vLLM's offline engine on a local model folder (merged or full; a LoRA adapter must be merged first).

    Needs `pip install 'jamspotter[vllm]'` (Linux, CUDA). Prompts and pixel budget come from the run contract
    beside the model, as for the Detector; `engine_kwargs` go to `vllm.LLM` (e.g. `gpu_memory_utilization`).
    """

    def __init__(self, name_or_path: str | Path, family: str = "auto", task: Task = "auto", max_new_tokens: int = 512,
                 min_pixels: int | None = None, max_pixels: int | None = None, **engine_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError:
            raise JamspotterError("--backend vllm needs vLLM: pip install 'jamspotter[vllm]' (Linux + CUDA)") from None
        from jamspotter.infer.detector import load_contract, settle_contract
        from jamspotter.models.families import check_family
        from jamspotter.models.loading import adapter_base, check_model_source, detect_family, load_processor

        check_task(task)
        source = check_model_source(name_or_path)
        if adapter_base(source) is not None:
            raise JamspotterError(f"{name_or_path}: a LoRA adapter; merge it first (jamspotter train merge)")
        detected = detect_family(source)
        if family != "auto" and check_family(family) != detected:
            raise JamspotterError(f"{name_or_path} is a {detected} model, but family {family!r} was asked for")
        trained = load_contract(source)
        lo = min_pixels if min_pixels is not None else (trained.min_pixels if trained else None)
        hi = max_pixels if max_pixels is not None else (trained.max_pixels if trained else None)
        processor = load_processor(source, min_pixels=lo, max_pixels=hi)
        self._set_contract(settle_contract(trained, detected, processor, name_or_path), task)
        params = self.contract
        self.max_new_tokens = int(max_new_tokens)
        self.name_or_path = str(name_or_path)
        mm = ({"size": {"shortest_edge": params.min_pixels, "longest_edge": params.max_pixels}}
              if detected == "qwen3-vl" else {"min_pixels": params.min_pixels, "max_pixels": params.max_pixels})
        self.llm = vllm.LLM(model=str(source), limit_mm_per_prompt={"image": 1}, mm_processor_kwargs=mm,
                            **engine_kwargs)
        self.sampling = vllm.SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens,
                                            skip_special_tokens=False)  # Qwen2-VL writes boxes with special tokens
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        self._chat = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _answers(self, images: list[Any]) -> list[tuple[str, bool]]:
        outputs = self.llm.generate([{"prompt": self._chat, "multi_modal_data": {"image": im}} for im in images],
                                    self.sampling, use_tqdm=False)
        return [(_cut(o.outputs[0].text), o.outputs[0].finish_reason == "length") for o in outputs]


def load_backend(backend: str, model: str, *, url: str | None = None, api_key: str | None = None,
                 contract: str | Path | None = None, family: str = "auto", task: Task = "auto",
                 max_new_tokens: int = 512, **transformers_kwargs: Any) -> Any:
    """A detector by backend name: `transformers` (`Detector(model, ...)`), `openai` (`model` is the served name;
    needs `url`) or `vllm` (a local model). Options that only the transformers backend has (dtype, device,
    quantization, min/max pixels) are refused elsewhere unless unset; vLLM takes the pixel bounds."""
    if backend == "transformers":
        if url is not None or contract is not None:
            raise JamspotterError("--url and --contract apply to --backend openai")
        return Detector(model, family=family, task=task, max_new_tokens=max_new_tokens, **transformers_kwargs)
    given = {k: v for k, v in transformers_kwargs.items() if v is not None and v != "auto"}
    if backend == "openai":
        if url is None:
            raise JamspotterError("--backend openai needs --url (the server, e.g. http://127.0.0.1:8000)")
        if given:
            raise JamspotterError(f"--{next(iter(given)).replace('_', '-')} applies to the transformers backend, not "
                                  "openai (the server decides)")
        return OpenAIBackend(url, model=model, api_key=api_key, contract=contract, family=family, task=task,
                             max_new_tokens=max_new_tokens)
    if backend == "vllm":
        pixels = {k: given.pop(k) for k in ("min_pixels", "max_pixels") if k in given}
        if url is not None or contract is not None or given:
            bad = "url" if url is not None else "contract" if contract is not None else next(iter(given))
            raise JamspotterError(f"--{bad.replace('_', '-')} does not apply to --backend vllm")
        return VLLMBackend(model, family=family, task=task, max_new_tokens=max_new_tokens, **pixels)
    raise JamspotterError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
