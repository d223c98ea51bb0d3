"""The one training loop of the lab: the same data order, batch, prompt dropout, EMA, logging, FLOP count and
checkpoints for every family (after nanoGPT's train.py). A run directory holds config.json, log.jsonl,
checkpoint/ (weights.safetensors + state.pt, loaded with weights_only=True) and, when done, model/."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from conjure.lab.data import load_split, text_for
from conjure.lab.families import Family, build_family
from conjure.training.ema import EMA

BATCH = 128
LOG_EVERY = 20          # steps
CKPT_EVERY = 200        # steps


def flops_per_image(family: Family, stage: str, x: torch.Tensor, text: torch.Tensor, drop: torch.Tensor) -> float:
    """FLOPs of one training step per image, counted by torch's FlopCounterMode on a copy of the family."""
    from torch.utils.flop_counter import FlopCounterMode
    twin = copy.deepcopy(family)
    with FlopCounterMode(display=False) as counter:
        twin.train_step(stage, x, text, drop)
    return counter.get_total_flops() / len(x)


def _save(run_dir: Path, family: Family, state: dict) -> None:
    from safetensors.torch import save_file
    ckpt = run_dir / "checkpoint"
    ckpt.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{k}": v.detach().contiguous() for name, net in family.nets.items()
               for k, v in net.state_dict().items()}
    if family.ema is not None:
        tensors.update({f"ema.{k}": v.detach().contiguous() for k, v in family.ema.state_dict().items()})
    save_file(tensors, str(ckpt / "weights.tmp"))
    torch.save({"opts": {k: o.state_dict() for k, o in family.opts.items()}, "rng": torch.get_rng_state(),
                **state}, ckpt / "state.tmp")
    (ckpt / "weights.tmp").replace(ckpt / "weights.safetensors")     # each file atomically
    (ckpt / "state.tmp").replace(ckpt / "state.pt")


def load_weights(family: Family, path: Path) -> None:
    from safetensors.torch import load_file
    tensors = load_file(str(path))
    for name, net in family.nets.items():
        net.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    if ema:
        family.ema = copy.deepcopy(family.nets[family.sampling_net_name]).eval().requires_grad_(False)
        family.ema.load_state_dict(ema)


def _load(run_dir: Path, family: Family) -> dict:
    ckpt = run_dir / "checkpoint"
    load_weights(family, ckpt / "weights.safetensors")
    state = torch.load(ckpt / "state.pt", weights_only=True)
    for k, o in family.opts.items():
        o.load_state_dict(state["opts"][k])
    torch.set_rng_state(state["rng"])
    return state


def train_family(name: str, run_dir: Path, images: int = 300_000, seed: int = 0, preset: str | None = None,
                 max_minutes: float | None = None, data_limit: int | None = None) -> Path | None:
    """Train (or resume) one family; returns run_dir/model when the budget is done, None when stopped early."""
    # --- setup: config, data, family, resume
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    family = build_family(name, preset)
    config = {"family": name, "spec": asdict(family.spec), "images": images, "seed": seed, "batch": BATCH,
              "stages": {s: family.stage_images(s, images) for s in family.stages},
              "device": "cpu", "threads": torch.get_num_threads()}
    resuming = (run_dir / "checkpoint" / "state.pt").is_file()
    if not resuming:
        (run_dir / "config.json").write_text(json.dumps(config, indent=1))
    data = load_split("train", limit=data_limit)
    state = _load(run_dir, family) if resuming else {"stage_index": 0, "stage_images": 0, "step": 0,
                                                      "seconds": 0.0, "flops": {}, "stage_seconds": {}}
    log = open(run_dir / "log.jsonl", "a")
    t_start = time.time()
    deadline = t_start + 60 * max_minutes if max_minutes is not None else None
    seconds0 = state["seconds"]

    for si in range(state["stage_index"], len(family.stages)):
        stage, budget = family.stages[si], family.stage_images(family.stages[si], images)
        state["stage_index"] = si
        gen = torch.Generator().manual_seed(seed * 1000 + si * 7919 + state["stage_images"])   # resumable order
        probe = data.x[torch.randperm(len(data), generator=gen)[:BATCH]]
        family.begin_stage(stage, probe)
        ema = None
        if stage != "autoencoder" and family.spec.ema_half_life > 0:
            ema = EMA(family.nets[family.sampling_net_name], family.spec.ema_half_life)
            if family.ema is not None:                       # resumed: keep the average so far
                ema.model.load_state_dict(family.ema.state_dict())
            family.ema = ema.model
        bar = tqdm(total=budget, initial=state["stage_images"], unit="img", desc=f"{name} {stage}")
        # --- the loop: a fresh permutation per epoch, a batch per step
        while state["stage_images"] < budget:
            order = torch.randperm(len(data), generator=gen)
            for i in range(0, len(order) - BATCH + 1, BATCH):
                if state["stage_images"] >= budget:
                    break
                idx = order[i:i + BATCH]
                x, y = data.x[idx], data.y[idx]
                text = text_for(y, gen)
                drop = torch.rand(BATCH, generator=gen) < family.spec.prompt_dropout
                if stage not in state["flops"]:
                    state["flops"][stage] = flops_per_image(family, stage, x, text, drop)
                t0 = time.time()
                for net in family.nets.values():
                    net.train(stage != "prior" or net is family.nets[family.sampling_net_name]
                              or name.startswith("gan"))
                parts = family.train_step(stage, x, text, drop)
                if ema is not None:
                    ema.update(family.nets[family.sampling_net_name], state["stage_images"] + BATCH, BATCH)
                dt = time.time() - t0
                state["seconds"] += dt
                state["stage_seconds"][stage] = state["stage_seconds"].get(stage, 0.0) + dt
                state["stage_images"] += BATCH
                state["step"] += 1
                bar.update(BATCH)
                # --- log and checkpoint
                if state["step"] % LOG_EVERY == 0:
                    log.write(json.dumps({"stage": stage, "step": state["step"], "images": state["stage_images"],
                                          "seconds": round(state["seconds"], 2), **parts}) + "\n")
                    log.flush()
                if state["step"] % CKPT_EVERY == 0:
                    _save(run_dir, family, state)
                if deadline is not None and time.time() > deadline:
                    _save(run_dir, family, state)
                    bar.close()
                    print(f"stopped at {state['stage_images']} {stage} images after "
                          f"{(time.time() - t_start) / 60:.1f} min; resume with the same command and --resume")
                    return None
        bar.close()
        if si + 1 < len(family.stages):
            state["stage_images"] = 0
            state["stage_index"] = si + 1
            _save(run_dir, family, state)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:BATCH * 40]
    family.finalize(data.x[idx], text_for(data.y[idx], torch.Generator().manual_seed(seed)))
    _save(run_dir, family, state)
    return export_model(run_dir, family, state, config)


def export_model(run_dir: Path, family: Family, state: dict, config: dict) -> Path:
    """run_dir/model: the sampling weights (EMA where there is one) and a config with the cost of training."""
    out = run_dir / "model"
    out.mkdir(exist_ok=True)
    import shutil
    shutil.copy2(run_dir / "checkpoint" / "weights.safetensors", out / "weights.safetensors")
    # the loop runs whole batches, so each stage sees its budget rounded up to a multiple of the batch
    stage_images = {s: -(-family.stage_images(s, config["images"]) // BATCH) * BATCH for s in family.stages}
    total_flops = sum(state["flops"][s] * stage_images[s] for s in family.stages)
    meta = {**config, "stage_images": stage_images, "train_seconds": round(state["seconds"], 1),
            "stage_seconds": {k: round(v, 1) for k, v in state["stage_seconds"].items()},
            "train_flops_per_image": state["flops"], "train_flops": total_flops,
            "parameters": {k: sum(p.numel() for p in v.parameters()) for k, v in family.nets.items()},
            "net_configs": {k: asdict(v.config) for k, v in family.nets.items()}}
    (out / "config.json").write_text(json.dumps(meta, indent=1))
    return out


def load_trained(model_dir: Path) -> tuple[Family, dict]:
    """A finished run's model folder -> (family with its sampling weights, its config)."""
    meta = json.loads((Path(model_dir) / "config.json").read_text())
    family = build_family(meta["family"], meta["spec"]["preset"])
    for name, cfg in meta.get("net_configs", {}).items():    # the saved architecture, whatever the presets say now
        net = family.nets[name]
        family.nets[name] = type(net)(type(net.config)(**cfg))
    load_weights(family, Path(model_dir) / "weights.safetensors")
    for net in family.nets.values():
        net.eval()
    return family, meta
