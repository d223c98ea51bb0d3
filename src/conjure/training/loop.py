"""The latent-diffusion training loop (accelerate: CPU with bf16 autocast, one GPU or several).

A run directory holds: config.json (the resolved recipe), log.jsonl, samples/*.png, and
checkpoint/ with the inference weights (unet/, unet_ema/ as diffusers folders) and the training
state (state.pt: optimizer, step, RNG; loaded with weights_only=True) as separate files.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from conjure.diffusion.losses import diffusion_loss
from conjure.diffusion.schedule import q_sample, training_scheduler
from conjure.models.unet import UNET_PRESETS, build_unet
from conjure.models.vae import TinyVAE
from conjure.pipelines.components import Components, ModelSpec, save_components
from conjure.training.cache import build_cache
from conjure.training.ema import EMA
from conjure.training.recipe import Recipe


def new_run_dir(runs_dir: Path, name: str) -> Path:
    """A fresh directory per run; an existing one is never reused or overwritten."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        d = runs_dir / (f"{name}-{stamp}" + (f"-{i}" if i else ""))
        try:
            d.mkdir(parents=True)
            return d
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {runs_dir}")


def read_prompts(path: Path) -> list[str]:
    return [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def record_resumed_config(run_dir: Path, config: dict, images_seen: int) -> None:
    """A resume whose recipe differs from the run's current one (a longer budget, a new lr schedule) keeps
    config.json as the run began and writes the new recipe as config.IMAGES.json, from that many images on."""
    if config != current_config(run_dir):
        (run_dir / f"config.{images_seen:09d}.json").write_text(json.dumps(config, indent=1))


def current_config(run_dir: Path) -> dict:
    """The recipe the run follows now: its latest config.IMAGES.json, else config.json."""
    later = sorted(run_dir.glob("config.*.json"))
    return json.loads((later[-1] if later else run_dir / "config.json").read_text())


def _on_cpu(module: torch.nn.Module) -> torch.nn.Module:
    """The module itself when it lives on the CPU, else a CPU copy (for saving from a GPU run)."""
    return module if next(module.parameters()).device.type == "cpu" else copy.deepcopy(module).to("cpu")


def train(recipe: Recipe, run_dir: Path, cache_dir: Path, max_minutes: float | None = None,
          init_from: Path | None = None, sample_grids: bool = True) -> Path:
    """Train (or resume, when run_dir has a checkpoint). `init_from` warm-starts a new run from a finished
    model folder (its U-Net, and its images-seen count from metrics.json), with a fresh optimiser.
    On a GPU the cached latents and token states, and the EMA copy, live on the GPU (index draws and noise
    still come from the CPU generator, so a run draws the same items on any device). `sample_grids=False`
    skips the sample grids (which need the text encoder package, absent on a bare GPU machine)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    # --- setup: device, seed, resolved config
    acc = Accelerator(mixed_precision=recipe.mixed_precision, cpu=not torch.cuda.is_available())
    set_seed(recipe.seed)
    ckpt = run_dir / "checkpoint"
    resuming = (ckpt / "state.pt").is_file()
    if not resuming:
        (run_dir / "config.json").write_text(json.dumps(recipe.to_dict(), indent=1))

    # --- data: cached latents and token states, so that a step costs only the U-Net
    vae = TinyVAE.from_pretrained(recipe.vae).eval()
    cache = build_cache(cache_dir, vae, Path(recipe.vae) / "diffusion_pytorch_model.safetensors", recipe.sources,
                        recipe.image_size, recipe.max_tokens)
    on_gpu = acc.device.type == "cuda"
    if on_gpu:
        cache.latents, cache.states, cache.masks = (t.to(acc.device) for t in (cache.latents, cache.states,
                                                                                cache.masks))
    n_items = cache.latents.shape[0]
    n_caps = torch.tensor([len(c) for c in cache.item_captions])
    cap_table = torch.zeros(n_items, int(n_caps.max()), dtype=torch.long)
    for i, ids in enumerate(cache.item_captions):
        cap_table[i, :len(ids)] = torch.tensor(ids)

    # --- model, schedule, optimiser, EMA
    unet = build_unet(UNET_PRESETS[recipe.unet_preset])
    sched = training_scheduler(prediction_type=recipe.prediction_type)
    alpha_bar = sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    step, images_seen = 0, 0
    gen = torch.Generator().manual_seed(recipe.seed)
    if resuming:
        from diffusers import UNet2DConditionModel
        unet = UNet2DConditionModel.from_pretrained(ckpt / "unet")
        opt = torch.optim.AdamW(unet.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        state = torch.load(ckpt / "state.pt", weights_only=True)
        opt.load_state_dict(state["opt"])
        step, images_seen = int(state["step"]), int(state["images_seen"])
        record_resumed_config(run_dir, recipe.to_dict(), images_seen)
        gen.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
    elif init_from is not None:
        from diffusers import UNet2DConditionModel
        unet = UNet2DConditionModel.from_pretrained(Path(init_from) / "unet", torch_dtype=torch.float32)
        opt = torch.optim.AdamW(unet.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        metrics = Path(init_from) / "metrics.json"
        images_seen = json.loads(metrics.read_text())["images_seen"] if metrics.is_file() else 0
        step = images_seen // recipe.batch
        gen.manual_seed(recipe.seed + step)   # new noise, not a replay of the first run's draws
    ema = EMA(unet, recipe.ema_half_life_images)
    if resuming:
        ema.model.load_state_dict(type(unet).from_pretrained(ckpt / "unet_ema").state_dict())
    ema.model.to(acc.device)
    unet, opt = acc.prepare(unet, opt)
    prompts = read_prompts(recipe.sample_prompts)
    spec = ModelSpec(name=recipe.name, base_size=recipe.image_size, max_tokens=recipe.max_tokens)

    def save() -> None:
        raw = _on_cpu(acc.unwrap_model(unet))
        ema_cpu = _on_cpu(ema.model)
        ckpt.mkdir(exist_ok=True)
        raw.save_pretrained(ckpt / "unet")
        ema_cpu.save_pretrained(ckpt / "unet_ema")
        save_components(Components(ema_cpu, vae, dict(sched.config), spec), run_dir / "model")
        tmp = ckpt / "state.pt.tmp"
        torch.save({"opt": opt.state_dict(), "step": step, "images_seen": images_seen, "rng": gen.get_state(),
                    "torch_rng": torch.get_rng_state()}, tmp)
        tmp.replace(ckpt / "state.pt")   # atomic: a killed run leaves the previous state intact

    # --- loop (SIGTERM/SIGINT finish the current step, save a checkpoint and stop)
    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    B = recipe.batch
    t_start = time.time()
    log = open(run_dir / "log.jsonl", "a")
    bar = tqdm(total=recipe.images, initial=images_seen, unit="img", unit_scale=True, desc=recipe.name)
    while images_seen < recipe.images:
        lr = recipe.lr_at(images_seen)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n_items, (B,), generator=gen)
        pick = (torch.rand(B, generator=gen) * n_caps[idx]).long()
        cap = cap_table[idx, pick]
        cap = torch.where(torch.rand(B, generator=gen) < recipe.prompt_dropout, torch.zeros_like(cap), cap)
        if on_gpu:
            idx, cap = idx.to(acc.device), cap.to(acc.device)
        x_0 = cache.latents[idx].float().to(acc.device)                          # (B, C, h, w)
        ctx = cache.states[cap].float().to(acc.device)                           # (B, T, 384)
        ctx_mask = cache.masks[cap].to(acc.device)                               # (B, T)
        eps = torch.randn(x_0.shape, generator=gen).to(acc.device)
        t = torch.randint(0, sched.config.num_train_timesteps, (B,), generator=gen).to(acc.device)
        x_t = q_sample(x_0, eps, t, alpha_bar.to(acc.device))
        with acc.autocast():
            pred = unet(x_t, t, encoder_hidden_states=ctx, encoder_attention_mask=ctx_mask).sample
        loss = diffusion_loss(pred, x_0, eps, t, alpha_bar.to(acc.device), recipe.prediction_type)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        images_seen += B
        ema.update(acc.unwrap_model(unet), images_seen, B)
        bar.update(B)
        elapsed = time.time() - t_start
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % 20 == 0:
            log.write(json.dumps({"step": step, "images_seen": images_seen, "loss": loss.item(), "lr": lr,
                                  "elapsed_s": round(elapsed, 1)}) + "\n")
            log.flush()
        out_of_time = (max_minutes is not None and elapsed > max_minutes * 60) or stop["requested"]
        crossed = lambda every: images_seen // every != (images_seen - B) // every   # noqa: E731
        if crossed(recipe.save_every_images) or images_seen >= recipe.images or out_of_time:
            save()
        if sample_grids and (crossed(recipe.sample_every_images) or images_seen >= recipe.images or out_of_time):
            write_sample_grid(run_dir / "samples" / f"{images_seen:09d}.png", run_dir / "model", prompts)
        if out_of_time:
            break
    bar.close()
    log.close()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return run_dir / "model"


def write_sample_grid(path: Path, model_dir: Path, prompts: list[str], seed: int = 0) -> Path:
    """One image per fixed prompt with the EMA weights: 20 DPM++ 2M steps, guidance 5, 64x64."""
    from conjure.data.show import save_contact_sheet
    from conjure.pipelines.request import GenerationRequest
    from conjure.pipelines.text_to_image import TextToImagePipeline
    pipe = TextToImagePipeline.from_folder(model_dir)
    images = [pipe(GenerationRequest(p, seed=seed, size=pipe.spec.base_size)).images[0] for p in prompts]
    return save_contact_sheet(path, [np.asarray(i) for i in images], prompts, cols=8)
