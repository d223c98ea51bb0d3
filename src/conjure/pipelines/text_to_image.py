"""Latent-diffusion text-to-image (with image-to-image and inpainting on the same weights).

`__call__` reads as numbered steps; with a `guard` (see pipelines/product.py), screening the prompt and
screening, watermarking, signing and auditing every image are steps of it too.
"""

from __future__ import annotations

import inspect
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from conjure.diffusion.guidance import cfg_combine
from conjure.diffusion.samplers import make_sampler
from conjure.pipelines import onnx_unet
from conjure.pipelines.components import Components, load_components
from conjure.pipelines.product import Guard, Job, Output
from conjure.pipelines.request import GenerationRequest, RequestError, check_request, mask_array

ProgressFn = Callable[[int, int], None]   # (step done, total steps)
BACKENDS = ("onnx", "jit", "eager")       # how the U-Net runs; see TextToImagePipeline


@dataclass
class GenerationResult:
    images: list[Image.Image]
    seeds: list[int]
    request: GenerationRequest
    model: str
    model_hash: str
    timings: dict[str, float] = field(default_factory=dict)   # seconds per stage
    outputs: list[Output] = field(default_factory=list)       # stamped files and verdicts (pipelines with a guard)
    prompt_verdict: dict | None = None
    job_id: str | None = None


def to_latent_input(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> (1, 3, size, size) in [-1, 1]; transparency composited onto white."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB").resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0


class TextToImagePipeline:
    """Prompt -> images. Components: `unet`, `vae`, the model's `scheduler_config`, `text_encoder`.

    How the U-Net runs (`backend`): "onnx" (the default for fp32 on a CPU when onnx and onnxruntime
    import and the U-Net is small; see pipelines/onnx_unet.py), "jit" (a traced, frozen TorchScript
    graph per input shape: oneDNN fuses its convolutions; the default otherwise) or "eager" (plain
    diffusers). All three compute in fp32. precision "bf16" runs eager under bf16 autocast.
    A U-Net changed in memory after loading (so that its folder's hash no longer names its weights)
    must not use the "onnx" backend's file cache: build such a pipeline from Components with folder None.
    """

    def __init__(self, components: Components, text_encoder=None, precision: str = "fp32",
                 backend: str | None = None, guard: Guard | None = None, onnx_cache: Path | None = None):
        if precision not in ("bf16", "fp32"):
            raise ValueError("precision must be 'bf16' or 'fp32'")
        if backend not in (None, *BACKENDS):
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}")
        if precision == "bf16":
            backend = "eager"
        elif backend is None:
            backend = "onnx" if onnx_unet.suitable(facts=components.unet_facts()) else "jit"
        self.backend = backend
        self._traced: dict[tuple, torch.jit.ScriptModule] = {}
        self._onnx: onnx_unet.OnnxUNet | None = None
        self._onnx_decoder: onnx_unet.OnnxDecoder | None = None
        self.onnx_cache = onnx_cache            # exported graphs; None = cache/onnx in the settings' data folder
        self.components = components
        self.spec = components.spec
        self.precision = precision
        if text_encoder is None:
            from conjure.text import get_text_encoder
            text_encoder = get_text_encoder()
        self.text_encoder = text_encoder
        self.guard = guard                  # safety and provenance; None = raw images, nothing recorded

    @property
    def unet(self):
        return self.components.unet

    @property
    def vae(self):
        return self.components.vae

    @classmethod
    def from_folder(cls, folder: Path, **kw) -> "TextToImagePipeline":
        """The pipeline of a model folder; its torch modules are built on first use (see Components)."""
        return cls(load_components(folder, lazy=True), **kw)

    def resolve(self, req: GenerationRequest) -> GenerationRequest:
        """Fill the model's defaults into unset fields."""
        s = self.spec
        return replace(req, steps=s.default_steps if req.steps is None else req.steps,
                       guidance=s.default_guidance if req.guidance is None else req.guidance,
                       scheduler=req.scheduler or s.default_scheduler,
                       size=s.default_size if req.size is None else req.size)

    def check(self, req: GenerationRequest) -> GenerationRequest:
        req = self.resolve(req)
        check_request(req, self.spec.sizes, token_count=self.text_encoder.count_tokens)
        return req

    def denoise(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One U-Net evaluation: (B, C, h, w) latents at timestep t -> (B, C, h, w) prediction."""
        if self.backend == "eager":
            return self.unet(x, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
        if self.backend == "onnx":
            if self._onnx is None:
                self._onnx = onnx_unet.OnnxUNet(lambda: self.components.unet, self.components.model_hash,
                                                self._onnx_dir())   # model hash "unsaved": never cached
            return self._onnx(x, t, states, mask)
        t = torch.as_tensor(t, dtype=torch.float32).reshape(())   # one dtype for every sampler's timesteps
        key = (tuple(x.shape), tuple(states.shape))
        fn = self._traced.get(key)
        if fn is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # TracerWarnings about shape checks baked into the graph
                fn = torch.jit.freeze(torch.jit.trace(onnx_unet.UNetCall(self.unet).eval(), (x, t, states, mask),
                                                      check_trace=False))
            self._traced[key] = fn
        return fn(x, t, states, mask)

    def memory_bytes(self) -> int:
        """Estimated memory it holds: parameters and buffers of the built torch modules plus each open ONNX
        Runtime session's graph (its weights), and at least the U-Net's and VAE's weights at the working
        precision, which the first request will hold in one form or the other (modules are built and graphs
        opened lazily). The text encoder, shared by every pipeline, is not counted."""
        expected = sum(self.components.parameter_count(n) for n in ("unet", "vae")) * \
            torch.finfo(self.components.dtype).bits // 8
        total = 0
        for name in ("unet", "vae"):
            if self.components.loaded(name):
                m = getattr(self.components, name)
                total += sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))
        for graph in (self._onnx, self._onnx_decoder):
            total += graph.nbytes() if graph is not None else 0
        return max(total, expected)

    def _onnx_dir(self) -> Path:
        if self.onnx_cache is None:
            from conjure.config import get_settings
            self.onnx_cache = onnx_unet.cache_dir(get_settings().home)
        return self.onnx_cache

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) scaled latents -> (B, 3, H, W) fp32 pixels in about [-1, 1]."""
        z = latents / self.components.vae_config["scaling_factor"]
        if self.backend == "onnx":
            if self._onnx_decoder is None:
                self._onnx_decoder = onnx_unet.OnnxDecoder(lambda: self.components.vae, self.components.model_hash,
                                                           self._onnx_dir())
            return self._onnx_decoder(z)
        with self._autocast():
            return self.vae.decode(z).sample.float()

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    @torch.inference_mode()
    def __call__(self, req: GenerationRequest, progress: ProgressFn | None = None,
                 on_latents: Callable[[int, torch.Tensor], None] | None = None,
                 job: Job | None = None) -> GenerationResult:
        """`on_latents(step, latents)` sees the (n, C, h, w) latents after each step (for live previews);
        `job` names the job and user that the audit log records (a fresh job id when None)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        # 1. check inputs
        req = self.check(req)
        n, base = req.n, self.spec.base_size
        sf = self.components.vae_config["scaling_factor"]
        job = job or Job()
        # 2. screen the prompt (safety): a refused prompt stops here with its verdict
        prompt_verdict, ts = None, time.perf_counter()
        if self.guard is not None:
            req, prompt_verdict = self.guard.screen_prompt(req)
        timings["screen_prompt"] = time.perf_counter() - ts
        # 3. encode prompt; the negative prompt replaces the unconditional branch
        use_cfg = req.guidance != 1.0
        prompts = [req.negative_prompt, req.prompt] if use_cfg else [req.prompt]
        states, mask = self.text_encoder.encode(prompts, max_tokens=self.spec.max_tokens)
        ctx = states.repeat_interleave(n, dim=0)                       # (k*n, T, D), uncond first
        ctx_mask = mask.repeat_interleave(n, dim=0)
        timings["encode_text"] = time.perf_counter() - ts - timings["screen_prompt"]
        # 4. sampler and timesteps (image-to-image skips the first 1 - strength of them)
        t1 = time.perf_counter()
        sched = make_sampler(req.scheduler, self.components.scheduler_config)
        sched.set_timesteps(req.steps)
        timesteps = sched.timesteps
        if req.init_image is not None:
            keep = min(int(round(req.steps * req.strength)), req.steps)
            timesteps = timesteps[(req.steps - keep) * sched.order:]
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index((req.steps - keep) * sched.order)
            if len(timesteps) == 0:
                raise RequestError("strength is too low for this many steps: nothing would be repainted")
        # 5. initial latents: image i draws its noise from seed + i alone
        gens = [torch.Generator().manual_seed(req.seed + i) for i in range(n)]
        h = base // 4
        noise = torch.cat([torch.randn((1, self.components.vae_config["latent_channels"], h, h), generator=g) for g in gens])
        init_latents = blend = None
        if req.init_image is not None:
            x = to_latent_input(req.init_image, base)
            init_latents = (self.vae.encode(x).latent_dist.mode() * sf).repeat(n, 1, 1, 1)   # (n, C, h, w)
            latents = sched.add_noise(init_latents, noise, timesteps[:1])
            if req.mask is not None:
                blend = torch.from_numpy(mask_array(req.mask, h))[None, None]                # (1, 1, h, w)
        else:
            latents = noise * sched.init_noise_sigma
        # 6. denoise, with masked blending at every step for inpainting
        total = len(timesteps)
        step_kw = {"generator": gens} if "generator" in inspect.signature(sched.step).parameters else {}
        with self._autocast():
            for i, t in enumerate(timesteps):
                x_in = torch.cat([latents] * 2) if use_cfg else latents
                x_in = sched.scale_model_input(x_in, t)
                pred = self.denoise(x_in, t, ctx, ctx_mask).float()
                if use_cfg:
                    pred_uncond, pred_cond = pred.chunk(2)
                    pred = cfg_combine(pred_uncond, pred_cond, req.guidance)
                latents = sched.step(pred, t, latents, **step_kw).prev_sample
                if blend is not None:
                    known = init_latents if i == total - 1 else sched.add_noise(init_latents, noise, timesteps[i + 1:i + 2])
                    latents = blend * latents + (1 - blend) * known
                if progress:
                    progress(i + 1, total)
                if on_latents:
                    on_latents(i + 1, latents)
        timings["sample"] = time.perf_counter() - t1
        # 7. decode to pixels
        t2 = time.perf_counter()
        pixels = self.decode(latents)                                                    # (n, 3, H, W)
        arr = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        timings["decode"] = time.perf_counter() - t2
        # 8. upsample to the delivered size
        t3 = time.perf_counter()
        images = [self.upsample(Image.fromarray(a), req.size) for a in arr]
        timings["upsample"] = time.perf_counter() - t3
        # 9. screen, watermark, sign and audit every image (safety and provenance)
        seeds, outputs = [req.seed + i for i in range(n)], []
        if self.guard is not None:
            outputs = self.guard.deliver(images, seeds, req, self.spec.name, self.components.model_hash,
                                         prompt_verdict, job, timings)
            images = [o.image for o in outputs if not o.withheld]
            seeds = [o.seed for o in outputs if not o.withheld]
        timings["total"] = time.perf_counter() - t0
        return GenerationResult(images, seeds, req, self.spec.name, self.components.model_hash, timings,
                                outputs, prompt_verdict, job.job_id)

    def upsample(self, image: Image.Image, size: int) -> Image.Image:
        if image.size == (size, size):
            return image
        return image.resize((size, size), Image.LANCZOS)

    @torch.inference_mode()
    def generate_batch(self, requests: list[GenerationRequest], jobs: list[Job],
                       progress: list[ProgressFn | None] | None = None,
                       on_latents: Callable[[int, list[torch.Tensor | None]], None] | None = None,
                       ) -> list[GenerationResult | Exception]:
        """Sample compatible text-to-image requests as one U-Net batch (dynamic batching in the service).

        The requests must share steps, scheduler, size and whether guidance is used; prompt, negative prompt,
        guidance and seed differ per sample (image i of a request still draws its noise from seed + i). Each
        request is screened and delivered with its own job. When `progress[r]` raises, request r leaves the
        batch (its rows finish and are discarded, so the batch keeps its shape) and its result is that
        exception; a refused prompt's result is its `Refused`. `on_latents(step, per-request latents)` sees
        None for requests that have left.
        """
        from conjure.pipelines.product import Refused
        t0 = time.perf_counter()
        progress = progress or [None] * len(requests)
        results: list[GenerationResult | Exception | None] = [None] * len(requests)
        # 1. check inputs: one sampling loop must fit every request
        reqs = [self.check(r) for r in requests]
        if any(r.init_image is not None or r.mask is not None for r in reqs):
            raise ValueError("generate_batch runs text-to-image requests only (no init image or mask)")
        if len({(r.steps, r.scheduler, r.size, r.guidance != 1.0) for r in reqs}) > 1:
            raise ValueError("batched requests must share steps, scheduler, size and the use of guidance")
        # 2. screen each prompt (safety): a refused request leaves the batch with its verdict
        verdicts: list[dict | None] = [None] * len(reqs)
        if self.guard is not None:
            for r, req in enumerate(reqs):
                try:
                    reqs[r], verdicts[r] = self.guard.screen_prompt(req)
                except Refused as e:
                    results[r] = e
        live = [r for r in range(len(reqs)) if results[r] is None]
        if not live:
            return results
        # 3. encode each request's prompts as __call__ does; uncond rows of every sample first, then cond
        use_cfg = reqs[live[0]].guidance != 1.0
        unconds, conds, masks_u, masks_c, scales, rows = [], [], [], [], [], {}
        for r in live:
            req = reqs[r]
            states, mask = self.text_encoder.encode([req.negative_prompt, req.prompt] if use_cfg else [req.prompt],
                                                    max_tokens=self.spec.max_tokens)
            start = sum(len(v) for v in rows.values())
            rows[r] = range(start, start + req.n)
            conds.append(states[-1:].repeat_interleave(req.n, dim=0))                   # (n, T, D)
            masks_c.append(mask[-1:].repeat_interleave(req.n, dim=0))
            unconds.append(states[:1].repeat_interleave(req.n, dim=0))
            masks_u.append(mask[:1].repeat_interleave(req.n, dim=0))
            scales += [req.guidance] * req.n
        ctx = torch.cat((unconds if use_cfg else []) + conds)                             # (k*B, T, D)
        ctx_mask = torch.cat((masks_u if use_cfg else []) + masks_c)
        scale = torch.tensor(scales, dtype=torch.float32)                                # (B,)
        # 4. one sampler for the batch (every request has the same timesteps)
        first = reqs[live[0]]
        sched = make_sampler(first.scheduler, self.components.scheduler_config)
        sched.set_timesteps(first.steps)
        # 5. initial latents: image i of request r draws its noise from seed_r + i alone
        gens = [torch.Generator().manual_seed(reqs[r].seed + i) for r in live for i in range(reqs[r].n)]
        h = self.spec.base_size // 4
        noise = torch.cat([torch.randn((1, self.components.vae_config["latent_channels"], h, h), generator=g) for g in gens])
        latents = noise * sched.init_noise_sigma                                         # (B, C, h, w)
        # 6. denoise all samples together; per-sample guidance; a request whose progress raises leaves
        total = len(sched.timesteps)
        step_kw = {"generator": gens} if "generator" in inspect.signature(sched.step).parameters else {}
        t1 = time.perf_counter()
        with self._autocast():
            for i, t in enumerate(sched.timesteps):
                x_in = sched.scale_model_input(torch.cat([latents] * 2) if use_cfg else latents, t)
                pred = self.denoise(x_in, t, ctx, ctx_mask).float()
                if use_cfg:
                    pred_uncond, pred_cond = pred.chunk(2)
                    pred = cfg_combine(pred_uncond, pred_cond, scale)
                latents = sched.step(pred, t, latents, **step_kw).prev_sample
                for r in [r for r in live if results[r] is None]:
                    try:
                        if progress[r]:
                            progress[r](i + 1, total)
                    except Exception as e:   # cancelled, timed out, lease lost: finish and discard its rows
                        results[r] = e
                if all(results[r] is not None for r in live):
                    return results
                if on_latents:
                    on_latents(i + 1, [latents[rows[r].start:rows[r].stop] if r in rows and results[r] is None
                                       else None for r in range(len(reqs))])
        sample_s = time.perf_counter() - t1
        # 7. decode to pixels, the whole batch at once
        t2 = time.perf_counter()
        pixels = self.decode(latents)                                                    # (B, 3, H, W)
        arr = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        decode_s = time.perf_counter() - t2
        # 8-9. per request: upsample, then screen, watermark, sign (and audit) with its own job
        for r in [r for r in live if results[r] is None]:
            req = reqs[r]
            timings = {"screen_prompt_and_encode": t1 - t0, "sample": sample_s, "decode": decode_s,
                       "batch_images": float(len(gens))}
            t3 = time.perf_counter()
            images = [self.upsample(Image.fromarray(a), req.size) for a in arr[rows[r].start:rows[r].stop]]
            timings["upsample"] = time.perf_counter() - t3
            seeds, outputs = [req.seed + i for i in range(req.n)], []
            if self.guard is not None:
                outputs = self.guard.deliver(images, seeds, req, self.spec.name, self.components.model_hash,
                                             verdicts[r], jobs[r], timings)
                images = [o.image for o in outputs if not o.withheld]
                seeds = [o.seed for o in outputs if not o.withheld]
            timings["total"] = time.perf_counter() - t0
            results[r] = GenerationResult(images, seeds, req, self.spec.name, self.components.model_hash, timings,
                                          outputs, verdicts[r], jobs[r].job_id)
        return results
