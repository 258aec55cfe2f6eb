"""`Detections`: the one result type every detector returns for one image or frame.

The VLM `Detector`, the edge classifier and box detector, the line's stream runner and the service all
speak it: boxes in ORIGINAL image pixels (`BoxObject`s, the same shape as ground truth), the raw model
text and what the parser had to repair, and the frame's verdict (top class, confidence, jam risk) that
the line acts on. `to_sample` turns it into the prediction record `jamspotter.evaluate` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jamspotter.data.records import BoxObject, Sample


@dataclass
class Detections:
    """One image's or frame's detections and verdict; fields a detector does not produce keep their defaults."""

    objects: list[BoxObject] = field(default_factory=list)  # boxes in original pixels (none for a classifier)
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the original image
    input_size: tuple[int, int] = (0, 0)  # (width, height) the model saw after resizing; (0, 0) when unknown
    text: str = ""  # the model's raw answer (VLMs)
    problems: list[str] = field(default_factory=list)  # what the parser had to repair or could not read
    frame: int | None = None  # frame index when it came from a clip
    label: str | None = None  # the verdict: top class of a classifier, or the label of the riskiest box
    confidence: float | None = None  # confidence of the verdict, 0..1
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, confidence), best first
    jam_risk: bool = False  # the verdict is a jam-causing item

    def to_sample(self, sample: Sample) -> Sample:
        """`sample` with its objects replaced by these boxes (other annotations dropped), text in `meta`.

        `meta["input_size"]` keeps the size the model saw: Qwen2.5-VL text is in pixels of that input,
        so `eval --raw` can re-read it exactly.
        """
        w, h = self.image_size
        meta = {**sample.meta, "text": self.text, "parse_problems": list(self.problems)}
        if all(self.input_size):
            meta["input_size"] = list(self.input_size)
        return sample.model_copy(update={"objects": list(self.objects), "width": w or sample.width,
                                         "height": h or sample.height, "qa": [], "label": None, "target": None,
                                         "frame_objects": None, "meta": meta})
