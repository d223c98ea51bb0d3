"""The U-Net under ONNX Runtime: chosen by default where it can run, the same images as eager diffusers to
within float rounding, deterministic, exported once per weights and shape and cached on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conjure.pipelines import onnx_unet
from conjure.pipelines.components import load_components
from conjure.pipelines.request import GenerationRequest
from conjure.pipelines.text_to_image import TextToImagePipeline


def _req(**kw) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red apple", "steps": 4, "size": 64, "seed": 0, "n": 2, **kw})


def _pixels(result) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in result.images])


def test_onnx_is_the_default_fp32_backend_here_and_bf16_stays_eager(tiny_model_dir):
    assert onnx_unet.available()
    assert TextToImagePipeline.from_folder(tiny_model_dir).backend == "onnx"
    assert TextToImagePipeline.from_folder(tiny_model_dir, precision="bf16").backend == "eager"
    with pytest.raises(ValueError, match="backend must be one of onnx, jit, eager"):
        TextToImagePipeline.from_folder(tiny_model_dir, backend="tensorrt")


def test_without_the_onnx_packages_the_pipeline_falls_back_to_torchscript(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(onnx_unet, "available", lambda: False)
    assert TextToImagePipeline.from_folder(tiny_model_dir).backend == "jit"


@pytest.mark.parametrize("scheduler", ["dpmpp_2m", "euler_a"])
def test_onnx_images_match_eager_and_torchscript_and_repeat_exactly(tiny_model_dir, tmp_path, scheduler):
    pipes = {b: TextToImagePipeline.from_folder(tiny_model_dir, backend=b, onnx_cache=tmp_path)
             for b in ("onnx", "jit", "eager")}
    out = {b: _pixels(p(_req(scheduler=scheduler))) for b, p in pipes.items()}
    for other in ("jit", "eager"):
        assert np.abs(out["onnx"] - out[other]).max() <= 2          # fp32 everywhere: rounding, not drift
    assert np.array_equal(out["onnx"], _pixels(pipes["onnx"](_req(scheduler=scheduler))))


def test_the_prediction_matches_eager_to_float_rounding(tiny_model_dir, tmp_path):
    c = load_components(tiny_model_dir)
    g = torch.Generator().manual_seed(0)
    x, states = torch.randn(3, 4, 16, 16, generator=g), torch.randn(3, 16, 384, generator=g)
    mask = torch.ones(3, 16)
    mask[0, 5:] = 0
    t = torch.tensor(321.0)
    with torch.inference_mode():
        ref = c.unet(x, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
    got = onnx_unet.OnnxUNet(c.unet, c.model_hash, tmp_path)(x, t, states, mask)
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
    # one graph serves every batch size (dynamic batch axis)
    got1 = onnx_unet.OnnxUNet(c.unet, c.model_hash, tmp_path)(x[:1], t, states[:1], mask[:1])
    assert torch.allclose(got1, ref[:1], atol=1e-4, rtol=1e-4)


def test_the_graph_is_exported_once_and_reused_by_a_later_pipeline(tiny_model_dir, tmp_path, monkeypatch):
    p1 = TextToImagePipeline.from_folder(tiny_model_dir, onnx_cache=tmp_path)
    first = _pixels(p1(_req()))
    for kind in ("unet", "vae-decoder"):
        graphs = list(tmp_path.glob(f"{kind}-*.onnx"))
        assert len(graphs) == 1 and p1.components.model_hash in graphs[0].name
    assert not list(tmp_path.glob("*.part"))                          # written atomically, nothing left over

    def no_export(self, example):
        raise AssertionError("exported again although the graph is cached")
    monkeypatch.setattr(onnx_unet.OnnxGraph, "_export", no_export)
    p2 = TextToImagePipeline.from_folder(tiny_model_dir, onnx_cache=tmp_path)
    assert np.array_equal(first, _pixels(p2(_req())))
    # with both graphs cached, the torch modules are never built (so diffusers is never needed)
    assert not p2.components.loaded("unet") and not p2.components.loaded("vae")


def test_lazy_components_build_modules_on_first_use_and_read_facts_without_them(tiny_model_dir):
    lazy = load_components(tiny_model_dir, lazy=True)
    assert not lazy.loaded("unet") and not lazy.loaded("vae")
    count, dtype, device = lazy.unet_facts()                          # from the weight file's header
    assert lazy.vae_config["latent_channels"] == 4 and not lazy.loaded("vae")
    assert not lazy.loaded("unet")
    assert count == sum(q.numel() for q in lazy.unet.parameters()) and lazy.loaded("unet")
    assert (dtype, device) == (torch.float32, "cpu") and lazy.unet_facts()[0] == count
    assert lazy.vae_config["scaling_factor"] == load_components(tiny_model_dir).vae.config.scaling_factor


def test_the_decoder_graph_matches_the_vae(tiny_model_dir, tmp_path):
    c = load_components(tiny_model_dir)
    z = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = c.vae.decode(z).sample
    got = onnx_unet.OnnxDecoder(c.vae, c.model_hash, tmp_path)(z)
    assert got.shape == ref.shape == (3, 3, 64, 64) and torch.allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_memory_estimate_counts_built_modules_and_open_graphs(tiny_model_dir, tmp_path):
    from conjure.service.worker import module_bytes
    pipe = TextToImagePipeline.from_folder(tiny_model_dir, onnx_cache=tmp_path)
    weights = 4 * sum(q.numel() for name in ("unet", "vae") for q in getattr(load_components(tiny_model_dir), name)
                      .parameters())
    assert module_bytes(pipe) == weights                              # nothing built yet: the fp32 weights
    assert not pipe.components.loaded("unet")
    pipe(_req())
    graphs = sum(f.stat().st_size for f in tmp_path.glob("*.onnx"))
    built = sum(t.numel() * t.element_size() for name in ("unet", "vae") if pipe.components.loaded(name)
                for t in getattr(pipe.components, name).parameters())
    assert module_bytes(pipe) >= graphs > 0 and module_bytes(pipe) >= built


def test_a_model_held_only_in_memory_is_never_cached_on_disk(tiny_model_dir, tmp_path):
    c = load_components(tiny_model_dir)
    c.folder = None                                                   # e.g. weights changed after loading
    pipe = TextToImagePipeline(c, onnx_cache=tmp_path)
    assert pipe.backend == "onnx"
    pipe(_req())
    assert not list(tmp_path.iterdir())


def test_the_backend_setting_reaches_load_pipeline(settings):
    from conjure.pipelines import load_pipeline
    forced = settings.model_copy(update={"unet_backend": "jit"})
    assert load_pipeline("conjure-tiny", settings=forced, responsible=False).backend == "jit"
    assert load_pipeline("conjure-tiny", settings=forced, responsible=False, backend="eager").backend == "eager"
    assert load_pipeline("conjure-tiny", settings=settings, responsible=False).backend == "onnx"


def test_a_process_with_cached_graphs_imports_neither_diffusers_nor_transformers(tmp_path):
    """The cold-start path: once the graphs are exported, generation (screening, sampling, decoding, stamping)
    needs only torch, ONNX Runtime and tokenizers."""
    import json
    import os
    import subprocess
    import sys
    code = (
        "import sys\n"
        "from conjure.pipelines import load_pipeline\n"
        "from conjure.pipelines.request import GenerationRequest\n"
        "pipe = load_pipeline('conjure-tiny')\n"
        "r = pipe(GenerationRequest('a red apple', steps=2, size=64, seed=3))\n"
        "assert len(r.images) == 1\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers'}))\n")
    env = {**os.environ, "CONJURE_HOME": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1].replace("'", '"')) for r in runs)
    assert first == ["diffusers", "transformers"]           # the first process exports the graphs
    assert second == []
