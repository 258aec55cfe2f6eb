"""Dynamic batching in front of the model, as Triton does it: one queue, one worker, bounded waits.

Requests join one FIFO queue. A single worker takes the first; when it is an image to detect, it keeps
taking images for up to `max_wait_ms` (or until `max_batch`) and runs `detector.detect(images,
batch_size=len(images))` once in a thread, so torch never blocks the event loop. Other model work
(`/v1/ask`, `/v1/chat/completions`) goes through the same queue and runs alone: one worker means the
model is never used by two threads at once. A full queue is refused at once (`QueueFull` -> 503); a
request that stops waiting (timeout, client gone) is skipped when its turn comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jamspotter.detections import Detections
from jamspotter.errors import JamspotterError

log = logging.getLogger("jamspotter.serve")


class QueueFull(Exception):
    """The queue holds `max_queue` requests already."""


class NotReady(Exception):
    """The model is not loaded (yet)."""


@dataclass
class _Job:
    future: asyncio.Future
    image: Any = None  # a PIL image to detect (batchable) ...
    call: Callable[[Any], Any] | None = None  # ... or work that takes the detector and runs alone


class Batcher:
    """Queue + single worker over `detector_of()` (the loaded detector, or None while it loads).

    metrics: a `jamspotter.serve.metrics.Metrics` (queue depth gauge, batch size histogram) or None.
    """

    def __init__(self, detector_of: Callable[[], Any], *, max_batch: int = 8, max_wait_ms: float = 10.0,
                 max_queue: int = 64, metrics: Any = None) -> None:
        self._detector_of = detector_of
        self.max_batch, self.max_wait = int(max_batch), float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.metrics = metrics
        self._queue: deque[_Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._wakeup = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="jamspotter-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still queued get NotReady."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(NotReady("the service is shutting down"))
        self._gauge()

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch being run)."""
        return len(self._queue)

    # ---- the API the routes use -----------------------------------------------------------------
    async def detect(self, image: Any) -> Detections:
        """Detections for one PIL image, run in a batch with whatever else is waiting."""
        return await self._submit(_Job(asyncio.get_running_loop().create_future(), image=image))

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        """`fn(detector)` in the worker's thread, alone (nothing else uses the model meanwhile)."""
        return await self._submit(_Job(asyncio.get_running_loop().create_future(), call=fn))

    async def _submit(self, job: _Job) -> Any:
        if self._detector_of() is None:
            raise NotReady("the model is still loading")
        if self._worker is None or self._wakeup is None:
            raise NotReady("the batcher is not running")
        waiting = sum(not j.future.done() for j in self._queue)  # callers that gave up do not count
        if waiting >= self.max_queue:
            raise QueueFull(f"{waiting} requests are waiting already")
        self._queue.append(job)
        self._gauge()
        self._wakeup.set()
        try:
            return await job.future
        finally:
            if not job.future.done():  # the caller stopped waiting: its turn is skipped
                job.future.cancel()

    # ---- the worker -----------------------------------------------------------------------------
    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))

    def _pop_live(self) -> _Job | None:
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                return job
        return None

    async def _wait(self, timeout: float | None) -> None:
        assert self._wakeup is not None
        self._wakeup.clear()
        if self._queue:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._pop_live()
            if first is None:
                self._gauge()
                await self._wait(None)
                continue
            if first.call is not None:
                self._gauge()
                await self._run_call(first)
                continue
            batch = [first]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                while self._queue and self._queue[0].call is None and len(batch) < self.max_batch:
                    job = self._queue.popleft()
                    if not job.future.done():
                        batch.append(job)
                if len(batch) >= self.max_batch or (self._queue and self._queue[0].call is not None):
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._wait(remaining)
            self._gauge()
            await self._run_batch(batch)

    async def _run_call(self, job: _Job) -> None:
        detector = self._detector_of()
        try:
            result = await asyncio.to_thread(job.call, detector)  # type: ignore[arg-type]
        except Exception as e:
            _settle(job, error=e)
        else:
            _settle(job, result=result)

    async def _run_batch(self, batch: list[_Job]) -> None:
        detector = self._detector_of()
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(batch))
        try:
            results = await asyncio.to_thread(detector.detect, [j.image for j in batch], batch_size=len(batch))
        except JamspotterError as e:
            if len(batch) == 1:
                _settle(batch[0], error=e)
                return
            # One image the processor refuses must not fail the others: run each alone.
            log.info("a batch of %d failed (%s); running its images one by one", len(batch), e.format_message())
            for job in batch:
                await self._run_batch([job])
            return
        except Exception as e:
            log.exception("detect failed on a batch of %d", len(batch))
            for job in batch:
                _settle(job, error=e)
            return
        for job, res in zip(batch, results, strict=True):
            _settle(job, result=res)


def _settle(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a job's future unless its caller stopped waiting."""
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result)
