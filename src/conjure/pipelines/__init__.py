"""Inference pipelines, one task per file; `load_pipeline` picks the right one for a model name."""

from __future__ import annotations


def load_pipeline(name: str, precision: str = "fp32", settings=None):
    """A ready pipeline for a built-in or added model (raises ValueError for an unknown name); `settings`
    says whose model registry to read (default: the process's settings)."""
    from conjure.pipelines.registry import get_model
    entry = get_model(name, settings)
    if entry.kind == "conjure":
        from conjure.pipelines.text_to_image import TextToImagePipeline
        return TextToImagePipeline.from_folder(entry.path, precision=precision)
    from conjure.pipelines.diffusers_folder import DiffusersFolderPipeline
    return DiffusersFolderPipeline(entry.path, name=entry.name)
