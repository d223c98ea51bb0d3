"""The six lab families behind one interface: each owns its networks, optimisers, a training step per stage,
and a sampler that counts its network evaluations. The shared loop (lab/train.py) drives them all.

Stages: one-stage families train on images; latent diffusion and the autoregressive model first train an
autoencoder ("autoencoder" stage, its cost counted), then the prior on its frozen latents or codes ("prior").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from conjure.models.ar import AR_PRESETS, CodeTransformer
from conjure.models.beta_vae import BETA_VAE_PRESETS, BetaVAE
from conjure.models.gan import GAN_PRESETS, Discriminator, Generator
from conjure.models.small_ae import SMALL_AE_PRESETS, SmallAE
from conjure.models.small_unet import SMALL_UNET_PRESETS, SmallUNet


@dataclass
class FamilySpec:
    """What `conjure lab train FAMILY` builds; every field has one meaning for every family."""
    family: str
    preset: str = "base"                 # model size preset ("test" = a tiny one for unit tests)
    lr: float = 5e-4
    prompt_dropout: float = 0.1          # share of training images whose condition is the null vector
    ema_half_life: float = 10_000        # images; 0 = sample with the raw weights
    autoencoder_images: int = 0          # two-stage families: images the autoencoder stage sees
    steps: int = 50                      # default sampling steps (iterative samplers)
    options: dict = field(default_factory=dict)


FAMILIES: dict[str, FamilySpec] = {
    "gan": FamilySpec("gan", lr=2e-4, prompt_dropout=0.0, options={"loss": "hinge"}),
    "gan-unstable": FamilySpec("gan", lr=1e-3, prompt_dropout=0.0, ema_half_life=0,
                               options={"loss": "bce", "spectral": False, "betas": [0.5, 0.999]}),
    "vae": FamilySpec("vae", lr=1e-3),
    "ddpm": FamilySpec("ddpm"),
    "ldm": FamilySpec("ldm", autoencoder_images=50_000),
    "flow": FamilySpec("flow"),
    "ar": FamilySpec("ar", autoencoder_images=50_000, steps=49),
}


def _adam(params, lr: float, betas=(0.9, 0.999)) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=0.0)


class Family:
    """Base: subclasses fill `nets` (saved weights), `opts`, `sampling_net` (the network the EMA tracks)."""
    stages: tuple[str, ...] = ("main",)

    def __init__(self, spec: FamilySpec):
        self.spec = spec
        self.nets: dict[str, nn.Module] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.sampling_net_name = ""
        self.ema: nn.Module | None = None     # set by the loop

    def stage_images(self, stage: str, images: int) -> int:
        return self.spec.autoencoder_images if stage == "autoencoder" else images

    def begin_stage(self, stage: str, x: torch.Tensor) -> None:
        """Called once before a stage's first step (and again on resume), with a batch of training images."""

    def train_step(self, stage: str, x: torch.Tensor, text: torch.Tensor, drop: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def finalize(self, x: torch.Tensor, text: torch.Tensor) -> None:
        """Called once when training ends, with training images and their captions' vectors."""

    def net_for_sampling(self) -> nn.Module:
        return self.ema if self.ema is not None else self.nets[self.sampling_net_name]

    def sample(self, text: torch.Tensor, gen: torch.Generator, steps: int | None = None, sampler: str | None = None,
               guidance: float = 1.0) -> tuple[torch.Tensor, int]:
        """text (B, 384) -> images (B, 1, 28, 28) in [-1, 1] and network evaluations per image."""
        raise NotImplementedError

    @staticmethod
    def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _guided(net, x, t, text, guidance: float) -> tuple[torch.Tensor, int]:
    """Classifier-free guidance (Ho & Salimans 2022): one batched call for the conditional and null branches."""
    if guidance == 1.0:
        return net(x, t, text), 1
    b = len(x)
    drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)])
    out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, text]), drop)
    cond, uncond = out.chunk(2)
    return uncond + guidance * (cond - uncond), 2


# ------------------------------------------------------------------------------ GAN

class GANFamily(Family):
    def __init__(self, spec: FamilySpec):
        super().__init__(spec)
        from dataclasses import replace
        cfg = replace(GAN_PRESETS[spec.preset], spectral=spec.options.get("spectral", True))
        self.nets = {"generator": Generator(cfg), "discriminator": Discriminator(cfg)}
        betas = spec.options.get("betas", [0.0, 0.9])
        self.opts = {k: _adam(v.parameters(), spec.lr, betas) for k, v in self.nets.items()}
        self.sampling_net_name, self.z_dim = "generator", cfg.z_dim

    def train_step(self, stage, x, text, drop):
        g, d = self.nets["generator"], self.nets["discriminator"]
        z = torch.randn(len(x), self.z_dim)
        fake = g(z, text)
        real_logit, fake_logit = d(x, text), d(fake.detach(), text)
        if self.spec.options.get("loss") == "bce":      # the original non-saturating loss (Goodfellow et al. 2014)
            d_loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        else:                                            # hinge loss (Lim & Ye 2017; Miyato et al. 2018)
            d_loss = F.relu(1 - real_logit).mean() + F.relu(1 + fake_logit).mean()
        self._step(self.opts["discriminator"], d_loss)
        g_logit = d(fake, text)
        g_loss = F.softplus(-g_logit).mean() if self.spec.options.get("loss") == "bce" else -g_logit.mean()
        self._step(self.opts["generator"], g_loss)
        return {"d_loss": float(d_loss), "g_loss": float(g_loss), "d_real": float(real_logit.mean()),
                "d_fake": float(fake_logit.mean())}

    @torch.no_grad()
    def finalize(self, x, text):
        """Standing BatchNorm statistics for the sampling generator (as BigGAN does for its EMA generator): its
        running means and variances are re-estimated from its own outputs over many batches, since statistics
        gathered by the raw generator do not belong to the averaged weights."""
        g = self.net_for_sampling()
        bns = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None                      # a cumulative average over the batches below
        g.train()
        gen = torch.Generator().manual_seed(0)
        for b in text.split(128):
            g(torch.randn(len(b), self.z_dim, generator=gen), b)
        for m in bns:
            m.momentum = 0.1
        g.eval()

    @torch.no_grad()
    def sample(self, text, gen, steps=None, sampler=None, guidance=1.0):
        g = self.net_for_sampling().eval()
        return g(torch.randn(len(text), self.z_dim, generator=gen), text), 1


# ------------------------------------------------------------------------------ VAE

class VAEFamily(Family):
    def __init__(self, spec: FamilySpec):
        super().__init__(spec)
        self.nets = {"vae": BetaVAE(BETA_VAE_PRESETS[spec.preset])}
        self.opts = {"vae": _adam(self.nets["vae"].parameters(), spec.lr)}
        self.sampling_net_name = "vae"

    def train_step(self, stage, x, text, drop):
        rec, kl, loss = self.nets["vae"].neg_elbo(x, text, drop)
        self._step(self.opts["vae"], loss.mean() / x[0].numel())
        return {"loss": float(loss.mean()), "rec": float(rec.mean()), "kl": float(kl.mean())}

    @torch.no_grad()
    def sample(self, text, gen, steps=None, sampler=None, guidance=1.0):
        vae = self.net_for_sampling().eval()
        z = torch.randn(len(text), vae.config.latent_dim, generator=gen)
        return vae.decode(z, vae.cond(text)), 1


# ------------------------------------------------------------------------------ diffusion (pixel and latent)

def ddpm_schedule():
    """DDPM's linear schedule (Ho et al. 2020): beta from 1e-4 to 0.02 over 1000 steps, eps prediction."""
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                         prediction_type="epsilon", clip_sample=False)


def diffusion_sampler(name: str, base):
    from diffusers import DDIMScheduler, DDPMScheduler
    if name == "ddim":
        return DDIMScheduler.from_config(base.config, timestep_spacing="trailing")
    if name == "ddpm":
        return DDPMScheduler.from_config(base.config)
    raise ValueError(f"unknown diffusion sampler '{name}'; choose ddim or ddpm")


class DiffusionFamily(Family):
    """eps-prediction DDPM on pixels, or on a KL autoencoder's latents (latent diffusion)."""

    def __init__(self, spec: FamilySpec):
        super().__init__(spec)
        self.latent = spec.family == "ldm"
        self.stages = ("autoencoder", "prior") if self.latent else ("main",)
        test = spec.preset == "test"
        unet = SMALL_UNET_PRESETS["test" if test else ("latent" if self.latent else "pixel")]
        if self.latent and test:
            from dataclasses import replace
            unet = replace(unet, in_channels=SMALL_AE_PRESETS["test-kl"].latent_channels, patch=1)
        self.nets = {"unet": SmallUNet(unet)}
        self.opts = {"unet": _adam(self.nets["unet"].parameters(), spec.lr)}
        if self.latent:
            self.nets["autoencoder"] = SmallAE(SMALL_AE_PRESETS["test-kl" if test else "kl"])
            self.opts["autoencoder"] = _adam(self.nets["autoencoder"].parameters(), 1e-3)
        self.sampling_net_name = "unet"
        self.schedule = ddpm_schedule()
        self.alpha_bar = self.schedule.alphas_cumprod

    def begin_stage(self, stage, x):
        if stage == "prior":     # unit-variance latents, as Stable Diffusion's scale factor does
            ae = self.nets["autoencoder"].eval().requires_grad_(False)
            if float(ae.latent_scale) == 1.0:                 # not yet set (a resumed run keeps its own)
                with torch.no_grad():
                    ae.latent_scale.fill_(1.0 / float(ae.encode(x).std()))

    def to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        if not self.latent:
            return x
        ae = self.nets["autoencoder"]
        return ae.encode(x) * ae.latent_scale

    def train_step(self, stage, x, text, drop):
        if stage == "autoencoder":
            loss, parts = self.nets["autoencoder"].loss(x)
            self._step(self.opts["autoencoder"], loss)
            return parts
        x0 = self.to_model_space(x)
        t = torch.randint(0, len(self.alpha_bar), (len(x0),))
        eps = torch.randn_like(x0)
        a = self.alpha_bar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(self.nets["unet"](x_t, t.float(), text, drop), eps)
        self._step(self.opts["unet"], loss)
        return {"loss": float(loss)}

    @torch.no_grad()
    def sample(self, text, gen, steps=None, sampler=None, guidance=1.0):
        net = self.net_for_sampling().eval()
        sched = diffusion_sampler(sampler or "ddim", self.schedule)
        sched.set_timesteps(steps or self.spec.steps)
        shape = ((len(text), self.nets["autoencoder"].config.latent_channels, 7, 7) if self.latent
                 else (len(text), 1, 28, 28))
        x = torch.randn(shape, generator=gen)
        nfe = 0
        for t in sched.timesteps:
            eps, calls = _guided(net, x, t.float().expand(len(x)), text, guidance)
            nfe += calls
            x = sched.step(eps, t, x, generator=gen).prev_sample
        if self.latent:
            ae = self.nets["autoencoder"]
            x = ae.decode(x / ae.latent_scale)
        return x.clamp(-1, 1), nfe


# ------------------------------------------------------------------------------ flow matching

class FlowFamily(Family):
    """Rectified flow (Liu et al. 2022; Lipman et al. 2022): x_t = (1 - t) noise + t data, the network
    predicts the velocity data - noise; sampling integrates dx/dt from t = 0 to 1 with Euler or Heun."""

    def __init__(self, spec: FamilySpec):
        super().__init__(spec)
        from dataclasses import replace
        cfg = replace(SMALL_UNET_PRESETS["test" if spec.preset == "test" else "pixel"], time_scale=1000.0)
        self.nets = {"unet": SmallUNet(cfg)}
        self.opts = {"unet": _adam(self.nets["unet"].parameters(), spec.lr)}
        self.sampling_net_name = "unet"

    def train_step(self, stage, x, text, drop):
        noise = torch.randn_like(x)
        t = torch.rand(len(x))
        x_t = (1 - t.view(-1, 1, 1, 1)) * noise + t.view(-1, 1, 1, 1) * x
        loss = F.mse_loss(self.nets["unet"](x_t, t, text, drop), x - noise)
        self._step(self.opts["unet"], loss)
        return {"loss": float(loss)}

    @torch.no_grad()
    def sample(self, text, gen, steps=None, sampler=None, guidance=1.0):
        net = self.net_for_sampling().eval()
        n = steps or self.spec.steps
        sampler = sampler or "euler"
        if sampler not in ("euler", "heun"):
            raise ValueError(f"unknown flow sampler '{sampler}'; choose euler or heun")
        x = torch.randn(len(text), 1, 28, 28, generator=gen)
        ts = torch.linspace(0, 1, n + 1)
        nfe = 0
        for i in range(n):
            t0, t1 = float(ts[i]), float(ts[i + 1])
            v0, c = _guided(net, x, torch.full((len(x),), t0), text, guidance)
            nfe += c
            x_next = x + (t1 - t0) * v0
            if sampler == "heun" and i < n - 1:      # Heun's correction, skipped on the last step (as EDM does)
                v1, c = _guided(net, x_next, torch.full((len(x),), t1), text, guidance)
                nfe += c
                x_next = x + (t1 - t0) * (v0 + v1) / 2
            x = x_next
        return x.clamp(-1, 1), nfe


# ------------------------------------------------------------------------------ autoregressive on VQ codes

class ARFamily(Family):
    stages = ("autoencoder", "prior")

    def __init__(self, spec: FamilySpec):
        super().__init__(spec)
        test = spec.preset == "test"
        vq = SmallAE(SMALL_AE_PRESETS["test-vq" if test else "vq"])
        self.nets = {"autoencoder": vq, "transformer": CodeTransformer(AR_PRESETS["test" if test else "base"])}
        assert self.nets["transformer"].config.vocab == vq.config.codebook_size
        self.opts = {"autoencoder": _adam(vq.parameters(), 1e-3),
                     "transformer": _adam(self.nets["transformer"].parameters(), spec.lr)}
        self.sampling_net_name = "transformer"
        self._steps = 0

    def begin_stage(self, stage, x):
        if stage == "prior":
            self.nets["autoencoder"].eval().requires_grad_(False)

    def train_step(self, stage, x, text, drop):
        if stage == "autoencoder":
            vq = self.nets["autoencoder"]
            loss, parts = vq.loss(x)
            self._step(self.opts["autoencoder"], loss)
            self._steps += 1
            if self._steps % 50 == 0:
                parts["dead_codes_restarted"] = vq.restart_dead_codes(x)
            return parts
        codes = self.nets["autoencoder"].encode(x).flatten(1)                     # (B, 49)
        loss = self.nets["transformer"].loss(text, codes, drop)
        self._step(self.opts["transformer"], loss)
        return {"loss": float(loss)}

    @torch.no_grad()
    def sample(self, text, gen, steps=None, sampler=None, guidance=1.0):
        net = self.net_for_sampling().eval()
        codes, nfe = net.generate(text, gen, guidance)
        side = int(net.config.length ** 0.5)
        return self.nets["autoencoder"].decode(codes.view(len(text), side, side)).clamp(-1, 1), nfe


FAMILY_CLASSES = {"gan": GANFamily, "vae": VAEFamily, "ddpm": DiffusionFamily, "ldm": DiffusionFamily,
                  "flow": FlowFamily, "ar": ARFamily}


def build_family(name: str, preset: str | None = None) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family '{name}'; choose from: {', '.join(FAMILIES)}")
    from dataclasses import replace
    spec = FAMILIES[name] if preset is None else replace(FAMILIES[name], preset=preset)
    return FAMILY_CLASSES[spec.family](spec)
