"""Run a user's own diffusers pipeline folder (Stable Diffusion, SDXL, ...) behind conjure's request type."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from conjure.config import offline_environment
from conjure.diffusion.samplers import DEFAULT_SAMPLER, make_diffusers_scheduler
from conjure.pipelines.components import model_hash
from conjure.pipelines.product import Guard, Job
from conjure.pipelines.request import GenerationRequest, check_request
from conjure.pipelines.text_to_image import GenerationResult, ProgressFn


class DiffusersFolderPipeline:
    """Loads a local folder with diffusers (never the hub) and maps GenerationRequest onto it."""

    def __init__(self, folder: Path, name: str | None = None, guard: Guard | None = None):
        offline_environment()
        from diffusers import DiffusionPipeline
        self.folder = Path(folder)
        self.name = name or self.folder.name
        self.pipe = DiffusionPipeline.from_pretrained(self.folder, local_files_only=True)
        self.pipe.set_progress_bar_config(disable=True)
        unet = getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)
        native = int(unet.config.sample_size) * int(getattr(self.pipe, "vae_scale_factor", 8))
        self.native_size = native
        self.sizes = sorted({s for s in range(64, 2 * native + 1, 64)} | {native})
        self._hash = None
        self.guard = guard                  # safety and provenance; None = raw images, nothing recorded

    @property
    def model_hash(self) -> str:
        if self._hash is None:
            self._hash = model_hash(self.folder)
        return self._hash

    def check(self, req: GenerationRequest) -> GenerationRequest:
        req = replace(req, steps=25 if req.steps is None else req.steps,
                      guidance=7.5 if req.guidance is None else req.guidance,
                      scheduler=req.scheduler or DEFAULT_SAMPLER,
                      size=self.native_size if req.size is None else req.size)
        check_request(req, self.sizes)
        return req

    @torch.inference_mode()
    def __call__(self, req: GenerationRequest, progress: ProgressFn | None = None,
                 job: Job | None = None) -> GenerationResult:
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        # 1. check inputs
        req = self.check(req)
        job = job or Job()
        # 2. screen the prompt (safety): a refused prompt stops here with its verdict
        prompt_verdict = None
        if self.guard is not None:
            req, prompt_verdict = self.guard.screen_prompt(req)
        # 3. the sampler, on the folder's own noise schedule
        self.pipe.scheduler = make_diffusers_scheduler(req.scheduler, self.pipe.scheduler.config)
        gens = [torch.Generator().manual_seed(req.seed + i) for i in range(req.n)]
        kw = dict(prompt=req.prompt, negative_prompt=req.negative_prompt or None, num_inference_steps=req.steps,
                  guidance_scale=req.guidance, generator=gens, num_images_per_prompt=req.n)

        def on_step(pipe, i, t, cb_kwargs):
            if progress:   # diffusers calls back once per network evaluation (twice per step for Heun)
                progress(i + 1, len(pipe.scheduler.timesteps))
            return cb_kwargs
        # 4. run the task: text-to-image, image-to-image or inpainting through diffusers' own pipelines
        if req.init_image is None:
            out = self.pipe(height=req.size, width=req.size, callback_on_step_end=on_step, **kw)
        else:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting
            init = req.init_image.convert("RGB").resize((req.size, req.size), Image.LANCZOS)
            if req.mask is not None:
                p = AutoPipelineForInpainting.from_pipe(self.pipe)
                mask = req.mask.convert("L").resize((req.size, req.size))
                out = p(image=init, mask_image=mask, strength=req.strength, height=req.size, width=req.size, **kw)
            else:
                p = AutoPipelineForImage2Image.from_pipe(self.pipe)
                out = p(image=init, strength=req.strength, **kw)
        images = [im.convert("RGB") for im in out.images]
        # 5. screen, watermark, sign and audit every image (safety and provenance)
        seeds, outputs = [req.seed + i for i in range(req.n)], []
        if self.guard is not None:
            outputs = self.guard.deliver(images, seeds, req, self.name, self.model_hash, prompt_verdict, job, timings)
            images = [o.image for o in outputs if not o.withheld]
            seeds = [o.seed for o in outputs if not o.withheld]
        timings["total"] = time.perf_counter() - t0
        return GenerationResult(images, seeds, req, self.name, self.model_hash, timings, outputs, prompt_verdict,
                                job.job_id)
