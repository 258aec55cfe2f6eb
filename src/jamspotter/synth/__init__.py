"""Procedural recycling-belt scenes and clips with exact labels (see docs/design.md).

`render_scene` draws one image with its visible-extent boxes (`render_frame` also gives the
masks); `render_clip` moves a scene with the belt; `generate_dataset` writes images, mp4 clips and
`samples.jsonl`; `write_preview` draws a contact sheet with the boxes. `worlds` holds the scale of
simpler worlds, from plain shapes to full belts (`generate_dataset(..., world="shapes")`).
"""

from jamspotter.synth.clip import Clip, render_clip, write_mp4
from jamspotter.synth.conditions import Conditions
from jamspotter.synth.dataset import draw_boxes, generate_dataset, write_preview
from jamspotter.synth.scene import Frame, VisibleMask, build_scene, compose, render_frame, render_scene

__all__ = [
    "Clip", "Conditions", "Frame", "VisibleMask", "build_scene", "compose", "draw_boxes", "generate_dataset",
    "render_clip", "render_frame", "render_scene", "write_mp4", "write_preview",
]
