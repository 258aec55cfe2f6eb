"""Canonical records, JSONL I/O, importers/exporters, splits, validation and the taxonomy."""

from jamspotter.data.io import atomic_write, iter_samples, read_samples, write_json, write_samples
from jamspotter.data.records import BoxObject, Crop, QATurn, Sample, Target
from jamspotter.data.taxonomy import DEFAULT_TAXONOMY, JAM_CLASSES, MATERIAL_CLASSES, Taxonomy

__all__ = [
    "BoxObject", "Crop", "DEFAULT_TAXONOMY", "JAM_CLASSES", "MATERIAL_CLASSES", "QATurn",
    "Sample", "Target", "Taxonomy", "atomic_write", "iter_samples", "read_samples", "write_json",
    "write_samples",
]
