"""Inference pipelines, one task per file; `load_pipeline` picks the right one for a model name."""

from __future__ import annotations


def load_pipeline(name: str, precision: str = "fp32", settings=None, responsible: bool = True,
                  backend: str | None = None):
    """A ready pipeline for a built-in or added model (raises ValueError for an unknown name); `settings`
    says whose model registry to read (default: the process's settings). `responsible` attaches the
    guard (prompt and image screening, watermark, C2PA, audit log): every entry point keeps it on.
    `backend` says how a conjure U-Net runs (see TextToImagePipeline; None = the best that works here)."""
    from conjure.pipelines.product import Guard
    from conjure.pipelines.registry import get_model
    entry = get_model(name, settings)
    if entry.kind == "conjure":
        from conjure.pipelines.text_to_image import TextToImagePipeline
        from conjure.config import get_settings
        from conjure.pipelines.onnx_unet import cache_dir
        s = settings or get_settings()
        pipe = TextToImagePipeline.from_folder(entry.path, precision=precision, backend=backend or s.unet_backend or None,
                                               onnx_cache=cache_dir(s.home))
        if responsible:
            pipe.guard = Guard(encoder=pipe.text_encoder)
        return pipe
    from conjure.pipelines.diffusers_folder import DiffusersFolderPipeline
    return DiffusersFolderPipeline(entry.path, name=entry.name, guard=Guard() if responsible else None)
