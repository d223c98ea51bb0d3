"""conjure's own samplers (ddpm, ddim, dpmpp_2m, euler, euler_a, heun) on torch, numpy and the standard library.

Why: the pipeline needed diffusers only for its schedulers, and importing diffusers (torch._dynamo, scipy,
sympy, accelerate) costs seconds on every cold start. This module never imports it. `make_solver(name, config)`
gives the sampler that conjure.diffusion.samplers.make_diffusers_scheduler builds with diffusers 0.42.1 from
the same saved config, with the same interface and the same arithmetic; tests/diffusion/test_solvers.py checks
them against diffusers.
Config options not implemented here raise NotImplementedError instead of sampling differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")

Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class SolverOutput:
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class SolverConfig(dict):
    """The resolved config of one solver; read as `config["key"]` or `config.key`."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


# --------------------------------------------------------------------------------------------- shared helpers

def cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of the "squaredcos_cap_v2" schedule (Nichol & Dhariwal 2021), computed in float64, stored fp32."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    return torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)],
                        dtype=torch.float32)


def make_betas(cfg: SolverConfig) -> torch.Tensor:
    n = cfg.num_train_timesteps
    if cfg.beta_schedule == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, n, dtype=torch.float32)
    if cfg.beta_schedule == "scaled_linear":
        return torch.linspace(cfg.beta_start ** 0.5, cfg.beta_end ** 0.5, n, dtype=torch.float32) ** 2
    return cosine_betas(n)


def spaced_timesteps(spacing: str, num_steps: int, num_train: int, steps_offset: int,
                     dtype: type = np.int64) -> np.ndarray:
    """The descending inference timesteps of diffusers' "linspace" / "leading" / "trailing" spacing.

    With an integer dtype "linspace" is rounded to whole timesteps; with float32 it keeps the fractions
    (as the sigma-based samplers do).
    """
    if spacing == "linspace":
        if np.issubdtype(dtype, np.integer):
            return np.linspace(0, num_train - 1, num_steps).round()[::-1].astype(dtype)
        return np.linspace(0, num_train - 1, num_steps, dtype=dtype)[::-1].copy()
    if spacing == "leading":
        ratio = num_train // num_steps
        return (np.arange(0, num_steps) * ratio).round()[::-1].astype(dtype) + dtype(steps_offset)
    if spacing == "trailing":
        ratio = num_train / num_steps
        return np.round(np.arange(num_train, 0, -ratio)).astype(dtype) - dtype(1)
    raise ValueError(f"timestep_spacing '{spacing}' is not supported; choose one of {', '.join(TIMESTEP_SPACINGS)}")


def draw_noise(shape: Sequence[int], generator: Generators, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn the way diffusers' `randn_tensor` draws it.

    With a list of generators, batch element i comes from generator i alone (a (1, ...) draw each), so an
    image's noise depends only on its own seed.
    """
    if isinstance(generator, (list, tuple)) and len(generator) == 1:
        generator = generator[0]
    if isinstance(generator, (list, tuple)):
        one = (1, *shape[1:])
        parts = [torch.randn(one, generator=generator[i], device=generator[i].device, dtype=dtype)
                 for i in range(shape[0])]
        return torch.cat(parts, dim=0).to(device)
    draw_on = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=draw_on, dtype=dtype).to(device)


def find_index(schedule: torch.Tensor, timestep, missing: int | None = None, second_if_repeated: bool = True) -> int:
    """Position of `timestep` in `schedule`: the second match when it occurs more than once (so that a
    schedule restarted mid-way does not skip a sigma), `missing` (or an error) when it does not occur."""
    if isinstance(timestep, torch.Tensor):
        timestep = timestep.to(schedule.device)
    hits = (schedule == timestep).nonzero()
    if len(hits) == 0:
        if missing is None:
            raise ValueError(f"timestep {timestep} is not one of this solver's timesteps")
        return missing
    return hits[1 if second_if_repeated and len(hits) > 1 else 0].item()


def as_column(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """(k,) -> (k, 1, ..., 1) with `ndim` dimensions, to scale a batch."""
    values = values.flatten()
    return values.reshape(values.shape[0], *([1] * (ndim - 1)))


# ------------------------------------------------------------------------------------------------- base class

class _Solver:
    """What every solver shares: its config (this sampler's defaults overlaid by the model's saved config,
    keys it does not know being ignored) and the training schedule's betas and alphas_cumprod."""

    DEFAULTS: dict[str, Any] = {}      # the corresponding diffusers class's __init__ defaults
    OVERRIDES: dict[str, Any] = {}     # what conjure's sampler registry forces on top of the model's config
    order = 1

    def __init__(self, config: dict):
        cfg = SolverConfig(self.DEFAULTS)
        cfg.update({k: v for k, v in config.items() if k in self.DEFAULTS and not k.startswith("_")})
        cfg.update(self.OVERRIDES)
        self.config = cfg
        self._check_supported()
        self.betas = make_betas(cfg)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.num_inference_steps: int | None = None
        self.timesteps = torch.from_numpy(np.arange(0, cfg.num_train_timesteps)[::-1].copy())
        self._begin_index: int | None = None

    # -- options ------------------------------------------------------------------------------------------
    def _unsupported(self, option: str, value: Any) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__}: {option}={value!r} is not implemented in "
                                   "conjure.diffusion.solvers")

    def _check_supported(self) -> None:
        cfg = self.config
        if cfg.get("trained_betas") is not None:
            raise self._unsupported("trained_betas", "[...]")
        if cfg.beta_schedule not in BETA_SCHEDULES:
            raise self._unsupported("beta_schedule", cfg.beta_schedule)
        if cfg.prediction_type not in PREDICTION_TYPES:
            raise self._unsupported("prediction_type", cfg.prediction_type)
        if cfg.timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"timestep_spacing '{cfg.timestep_spacing}' is not supported; "
                             f"choose one of {', '.join(TIMESTEP_SPACINGS)}")
        for option in ("rescale_betas_zero_snr", "thresholding", "use_karras_sigmas", "use_exponential_sigmas",
                       "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas"):
            if cfg.get(option):
                raise self._unsupported(option, cfg[option])

    # -- interface ----------------------------------------------------------------------------------------
    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Where sampling starts in `timesteps` (image-to-image); only the sigma-based solvers use it."""
        self._begin_index = begin_index

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def _check_steps(self, num_inference_steps: int) -> None:
        if num_inference_steps > self.config.num_train_timesteps:
            raise ValueError(f"num_inference_steps ({num_inference_steps}) cannot be larger than "
                             f"num_train_timesteps ({self.config.num_train_timesteps})")

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        if self.config.get("clip_sample"):
            r = self.config.clip_sample_range
            return x0.clamp(-r, r)
        return x0

    def __len__(self) -> int:
        return self.config.num_train_timesteps


class _AlphaSolver(_Solver):
    """DDPM and DDIM: steps and noising are written with alphas_cumprod at integer timesteps."""

    init_noise_sigma = 1.0

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod.to(device=original_samples.device, dtype=original_samples.dtype)
        abar_t = abar[torch.as_tensor(timesteps).to(original_samples.device)]
        ndim = original_samples.ndim
        return as_column(abar_t ** 0.5, ndim) * original_samples + as_column((1 - abar_t) ** 0.5, ndim) * noise

    def _set_integer_timesteps(self, num_inference_steps: int) -> None:
        self._check_steps(num_inference_steps)
        self.num_inference_steps = num_inference_steps
        cfg = self.config
        self.timesteps = torch.from_numpy(spaced_timesteps(cfg.timestep_spacing, num_inference_steps,
                                                           cfg.num_train_timesteps, cfg.steps_offset))

    def _x0(self, model_output: torch.Tensor, sample: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
        """The predicted clean sample x_0 from the model's output at a timestep with alpha-bar `abar_t`."""
        kind, beta_t = self.config.prediction_type, 1 - abar_t
        if kind == "epsilon":
            return (sample - beta_t ** 0.5 * model_output) / abar_t ** 0.5
        if kind == "v_prediction":
            return (abar_t ** 0.5) * sample - (beta_t ** 0.5) * model_output
        return model_output


# --------------------------------------------------------------------------------------------------- samplers

class DDPMSolver(_AlphaSolver):
    """Ancestral sampling of Ho et al. 2020 on the inference timesteps."""

    DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, variance_type="fixed_small", clip_sample=True, prediction_type="epsilon",
                    thresholding=False, dynamic_thresholding_ratio=0.995, clip_sample_range=1.0,
                    sample_max_value=1.0, timestep_spacing="leading", steps_offset=0, rescale_betas_zero_snr=False)
    VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large")

    def _check_supported(self) -> None:
        super()._check_supported()
        if self.config.variance_type not in self.VARIANCE_TYPES:
            raise self._unsupported("variance_type", self.config.variance_type)

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        self._set_integer_timesteps(num_inference_steps)

    def previous_timestep(self, timestep) -> torch.Tensor | int:
        if not self.num_inference_steps:
            return timestep - 1
        i = find_index(self.timesteps, timestep, second_if_repeated=False)
        return torch.tensor(-1) if i == len(self.timesteps) - 1 else self.timesteps[i + 1]

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: Generators = None, return_dict: bool = True) -> SolverOutput | tuple:
        t, prev_t = timestep, self.previous_timestep(timestep)
        abar_t = self.alphas_cumprod[t]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        beta_prod_t, beta_prod_prev = 1 - abar_t, 1 - abar_prev
        alpha_t = abar_t / abar_prev          # alpha and beta of this (possibly multi-timestep) jump
        beta_t = 1 - alpha_t

        x0 = self._clip(self._x0(model_output, sample, abar_t))
        # posterior mean of q(x_prev | x_t, x0), eq. 7 of the DDPM paper
        x0_coeff = (abar_prev ** 0.5 * beta_t) / beta_prod_t
        xt_coeff = alpha_t ** 0.5 * beta_prod_prev / beta_prod_t
        prev_sample = x0_coeff * x0 + xt_coeff * sample

        if t > 0:
            noise = draw_noise(model_output.shape, generator, model_output.dtype, model_output.device)
            variance = torch.clamp((1 - abar_prev) / (1 - abar_t) * beta_t, min=1e-20)
            kind = self.config.variance_type
            if kind == "fixed_small":
                std = variance ** 0.5
            elif kind == "fixed_small_log":
                std = torch.exp(0.5 * torch.log(variance))
            else:   # fixed_large
                std = beta_t ** 0.5
            prev_sample = prev_sample + std * noise
        if not return_dict:
            return prev_sample, x0
        return SolverOutput(prev_sample, x0)


class DDIMSolver(_AlphaSolver):
    """Deterministic DDIM (eta = 0) of Song et al. 2020; the last step lands on alpha-bar of timestep 0."""

    DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, clip_sample=True, set_alpha_to_one=True, steps_offset=0,
                    prediction_type="epsilon", thresholding=False, dynamic_thresholding_ratio=0.995,
                    clip_sample_range=1.0, sample_max_value=1.0, timestep_spacing="leading",
                    rescale_betas_zero_snr=False)
    OVERRIDES = {"set_alpha_to_one": False}

    def __init__(self, config: dict):
        super().__init__(config)
        self.final_alpha_cumprod = torch.tensor(1.0) if self.config.set_alpha_to_one else self.alphas_cumprod[0]

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        self._set_integer_timesteps(num_inference_steps)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: Generators = None, return_dict: bool = True) -> SolverOutput | tuple:
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps before step")
        # diffusers' DDIM steps back a fixed stride, whatever the spacing of the timesteps
        prev_t = timestep - self.config.num_train_timesteps // self.num_inference_steps
        abar_t = self.alphas_cumprod[timestep]
        abar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - abar_t

        kind = self.config.prediction_type
        if kind == "epsilon":
            x0 = (sample - beta_prod_t ** 0.5 * model_output) / abar_t ** 0.5
            eps = model_output
        elif kind == "v_prediction":
            x0 = (abar_t ** 0.5) * sample - (beta_prod_t ** 0.5) * model_output
            eps = (abar_t ** 0.5) * model_output + (beta_prod_t ** 0.5) * sample
        else:
            x0 = model_output
            eps = (sample - abar_t ** 0.5 * x0) / beta_prod_t ** 0.5
        x0 = self._clip(x0)
        prev_sample = abar_prev ** 0.5 * x0 + (1 - abar_prev) ** 0.5 * eps
        if not return_dict:
            return prev_sample, x0
        return SolverOutput(prev_sample, x0)


class _IndexedSolver(_Solver):
    """Solvers that walk a sigma table by step index (diffusers' `step_index` / `begin_index` bookkeeping):
    the index is found from the first timestep seen, or is the begin index when one was set."""

    _unknown_timestep_is_last = False   # True: a timestep not in the schedule means the last step (else an error)

    def __init__(self, config: dict):
        super().__init__(config)
        self._step_index: int | None = None
        self.train_sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5   # fp32, per timestep

    @property
    def step_index(self) -> int | None:
        return self._step_index

    def _reset_index(self) -> None:
        self._step_index = None
        self._begin_index = None

    def index_for_timestep(self, timestep, schedule_timesteps: torch.Tensor | None = None) -> int:
        schedule = self.timesteps if schedule_timesteps is None else schedule_timesteps
        missing = len(self.timesteps) - 1 if self._unknown_timestep_is_last else None
        return find_index(schedule, timestep, missing=missing)

    def _init_step_index(self, timestep) -> None:
        if self._begin_index is None:
            self._step_index = self.index_for_timestep(timestep)
        else:
            self._step_index = self._begin_index

    def _noise_sigmas(self, original_samples: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The sigma (one per entry of `timesteps`, shaped to broadcast) at which add_noise noises."""
        sigmas = self.sigmas.to(device=original_samples.device, dtype=original_samples.dtype)
        timesteps = torch.as_tensor(timesteps).to(original_samples.device)
        if self._begin_index is None:
            schedule = self.timesteps.to(original_samples.device)
            indices = [self.index_for_timestep(t, schedule) for t in timesteps]
        elif self._step_index is not None:      # called mid-sampling (inpainting): the current step
            indices = [self._step_index] * timesteps.shape[0]
        else:
            indices = [self._begin_index] * timesteps.shape[0]
        return as_column(sigmas[indices], original_samples.ndim)

    def _interp_sigmas(self, timesteps: np.ndarray) -> np.ndarray:
        """Sigmas at (possibly fractional) timesteps, linearly interpolated in float64 as diffusers does."""
        table = self.train_sigmas.numpy()
        return np.interp(timesteps, np.arange(0, len(table)), table)


class DPMSolverPP2M(_IndexedSolver):
    """DPM-Solver++(2M) (Lu et al. 2022): multistep second order in log-SNR, data prediction."""

    DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, solver_order=2, prediction_type="epsilon", thresholding=False,
                    dynamic_thresholding_ratio=0.995, sample_max_value=1.0, algorithm_type="dpmsolver++",
                    solver_type="midpoint", lower_order_final=True, euler_at_final=False, use_karras_sigmas=False,
                    use_exponential_sigmas=False, use_beta_sigmas=False, use_lu_lambdas=False,
                    use_flow_sigmas=False, flow_shift=1.0, final_sigmas_type="zero",
                    lambda_min_clipped=-float("inf"), variance_type=None, timestep_spacing="linspace",
                    steps_offset=0, rescale_betas_zero_snr=False, use_dynamic_shifting=False,
                    time_shift_type="exponential")
    OVERRIDES = {"algorithm_type": "dpmsolver++", "solver_order": 2}
    _unknown_timestep_is_last = True
    init_noise_sigma = 1.0

    def __init__(self, config: dict):
        super().__init__(config)
        if self.config.solver_type in ("logrho", "bh1", "bh2"):   # other solvers' names; diffusers maps them
            self.config["solver_type"] = "midpoint"
        abar = self.alphas_cumprod
        self.lambda_t = torch.log(torch.sqrt(abar)) - torch.log(torch.sqrt(1 - abar))   # log-SNR / 2
        self.sigmas = self.train_sigmas
        self.model_outputs: list[torch.Tensor | None] = [None, None]
        self.lower_order_nums = 0

    def _check_supported(self) -> None:
        super()._check_supported()
        cfg = self.config
        if cfg.variance_type in ("learned", "learned_range"):
            raise self._unsupported("variance_type", cfg.variance_type)
        if cfg.solver_type not in ("midpoint", "heun", "logrho", "bh1", "bh2"):
            raise self._unsupported("solver_type", cfg.solver_type)
        if cfg.final_sigmas_type not in ("zero", "sigma_min"):
            raise ValueError(f"final_sigmas_type must be 'zero' or 'sigma_min', not {cfg.final_sigmas_type!r}")

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        cfg, n = self.config, num_inference_steps
        # timesteps whose log-SNR is below lambda_min_clipped are never visited
        clipped = torch.searchsorted(torch.flip(self.lambda_t, [0]), cfg.lambda_min_clipped)
        last = int(cfg.num_train_timesteps - clipped)
        if cfg.timestep_spacing == "linspace":
            ts = np.linspace(0, last - 1, n + 1).round()[::-1][:-1].astype(np.int64)
        elif cfg.timestep_spacing == "leading":
            ratio = last // (n + 1)
            ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + cfg.steps_offset
        else:   # trailing
            ts = np.arange(last, 0, -cfg.num_train_timesteps / n).round().astype(np.int64) - 1
        sigmas = self._interp_sigmas(ts)
        last_sigma = self.train_sigmas[0].item() if cfg.final_sigmas_type == "sigma_min" else 0.0
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [last_sigma]]).astype(np.float32))
        self.timesteps = torch.from_numpy(ts.copy()).to(dtype=torch.int64)
        self.num_inference_steps = len(ts)
        self.model_outputs = [None, None]
        self.lower_order_nums = 0
        self._reset_index()

    @staticmethod
    def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VE sigma -> (alpha_t, sigma_t) of the VP process: x_t = alpha_t x0 + sigma_t eps."""
        alpha_t = 1 / ((sigma ** 2 + 1) ** 0.5)
        return alpha_t, sigma * alpha_t

    def _x0(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        kind = self.config.prediction_type
        if kind == "sample":
            return model_output
        alpha_t, sigma_t = self._alpha_sigma(self.sigmas[self._step_index])
        if kind == "epsilon":
            return (sample - sigma_t * model_output) / alpha_t
        return alpha_t * sample - sigma_t * model_output

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: Generators = None, return_dict: bool = True) -> SolverOutput | tuple:
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps before step")
        if self._step_index is None:
            self._init_step_index(timestep)
        cfg, i, n = self.config, self._step_index, len(self.timesteps)
        first_order_final = i == n - 1 and (cfg.euler_at_final or (cfg.lower_order_final and n < 15)
                                            or cfg.final_sigmas_type == "zero")
        x0 = self._x0(model_output, sample)
        self.model_outputs = [self.model_outputs[1], x0]
        sample = sample.to(torch.float32)

        alpha_t, sigma_t = self._alpha_sigma(self.sigmas[i + 1])
        alpha_s0, sigma_s0 = self._alpha_sigma(self.sigmas[i])
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
        h = lambda_t - lambda_s0
        decay = alpha_t * (torch.exp(-h) - 1.0)
        if self.lower_order_nums < 1 or first_order_final:      # DPM-Solver++ 1 (DDIM in log-SNR)
            prev_sample = (sigma_t / sigma_s0) * sample - decay * x0
        else:                                                     # 2M: linear extrapolation of x0
            alpha_s1, sigma_s1 = self._alpha_sigma(self.sigmas[i - 1])
            lambda_s1 = torch.log(alpha_s1) - torch.log(sigma_s1)
            m0, m1 = self.model_outputs[1], self.model_outputs[0]
            r0 = (lambda_s0 - lambda_s1) / h
            d0, d1 = m0, (1.0 / r0) * (m0 - m1)
            if cfg.solver_type == "midpoint":
                prev_sample = (sigma_t / sigma_s0) * sample - decay * d0 - 0.5 * decay * d1
            else:   # heun
                prev_sample = ((sigma_t / sigma_s0) * sample - decay * d0
                               + (alpha_t * ((torch.exp(-h) - 1.0) / h + 1.0)) * d1)
        if self.lower_order_nums < 2:
            self.lower_order_nums += 1
        prev_sample = prev_sample.to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return (prev_sample,)
        return SolverOutput(prev_sample)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        alpha_t, sigma_t = self._alpha_sigma(self._noise_sigmas(original_samples, timesteps))
        return alpha_t * original_samples + sigma_t * noise


class _KarrasSolver(_IndexedSolver):
    """Euler, Euler ancestral and Heun: the ODE/SDE in sigma (Karras et al. 2022) on a sigma table; the
    model sees x / sqrt(sigma^2 + 1)."""

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        max_sigma = self.sigmas.max()
        if self.config.timestep_spacing in ("linspace", "trailing"):
            return max_sigma
        return (max_sigma ** 2 + 1) ** 0.5

    def _float_timesteps(self, num_inference_steps: int) -> np.ndarray:
        cfg = self.config
        return spaced_timesteps(cfg.timestep_spacing, num_inference_steps, cfg.num_train_timesteps,
                                cfg.steps_offset, dtype=np.float32)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self._step_index]
        return sample / ((sigma ** 2 + 1) ** 0.5)

    @staticmethod
    def _x0(kind: str, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if kind == "epsilon":
            return sample - sigma * model_output
        if kind == "v_prediction":
            return model_output * (-sigma / (sigma ** 2 + 1) ** 0.5) + (sample / (sigma ** 2 + 1))
        return model_output

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        return original_samples + noise * self._noise_sigmas(original_samples, timesteps)


class EulerSolver(_KarrasSolver):
    """Euler's method on the probability-flow ODE (no churn)."""

    DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, prediction_type="epsilon", interpolation_type="linear",
                    use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False, sigma_min=None,
                    sigma_max=None, timestep_spacing="linspace", timestep_type="discrete", steps_offset=0,
                    rescale_betas_zero_snr=False, final_sigmas_type="zero")

    def __init__(self, config: dict):
        if config.get("prediction_type") == "original_sample":   # diffusers' older name for "sample"
            config = {**config, "prediction_type": "sample"}
        super().__init__(config)
        self.sigmas = torch.cat([self.train_sigmas.flip(0), torch.zeros(1)])

    def _check_supported(self) -> None:
        super()._check_supported()
        cfg = self.config
        if cfg.interpolation_type != "linear":
            raise self._unsupported("interpolation_type", cfg.interpolation_type)
        if cfg.timestep_type == "continuous" and cfg.prediction_type == "v_prediction":
            raise self._unsupported("timestep_type", cfg.timestep_type)
        if cfg.final_sigmas_type not in ("zero", "sigma_min"):
            raise ValueError(f"final_sigmas_type must be 'zero' or 'sigma_min', not {cfg.final_sigmas_type!r}")

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        self.num_inference_steps = num_inference_steps
        ts = self._float_timesteps(num_inference_steps)
        last_sigma = self.train_sigmas[0].item() if self.config.final_sigmas_type == "sigma_min" else 0.0
        sigmas = np.concatenate([self._interp_sigmas(ts), [last_sigma]]).astype(np.float32)
        self.sigmas = torch.from_numpy(sigmas)
        self.timesteps = torch.from_numpy(ts.astype(np.float32))
        self._reset_index()

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: Generators = None, return_dict: bool = True) -> SolverOutput | tuple:
        if self._step_index is None:
            self._init_step_index(timestep)
        sample = sample.to(torch.float32)
        sigma = self.sigmas[self._step_index]
        x0 = self._x0(self.config.prediction_type, model_output, sample, sigma)
        derivative = (sample - x0) / sigma
        prev_sample = (sample + derivative * (self.sigmas[self._step_index + 1] - sigma)).to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return prev_sample, x0
        return SolverOutput(prev_sample, x0)


class EulerAncestralSolver(_KarrasSolver):
    """Euler ancestral: an Euler step down to sigma_down, then fresh noise of size sigma_up."""

    DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, prediction_type="epsilon", timestep_spacing="linspace", steps_offset=0,
                    rescale_betas_zero_snr=False)

    def __init__(self, config: dict):
        super().__init__(config)
        table = self.train_sigmas.numpy()
        self.sigmas = torch.from_numpy(np.concatenate([table[::-1], [0.0]]).astype(np.float32))

    def _check_supported(self) -> None:
        super()._check_supported()
        if self.config.prediction_type == "sample":   # diffusers does not implement it either
            raise self._unsupported("prediction_type", "sample")

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        self.num_inference_steps = num_inference_steps
        ts = self._float_timesteps(num_inference_steps)
        self.sigmas = torch.from_numpy(np.concatenate([self._interp_sigmas(ts), [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(ts)
        self._reset_index()

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: Generators = None, return_dict: bool = True) -> SolverOutput | tuple:
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self._step_index]
        sample = sample.to(torch.float32)
        x0 = self._x0(self.config.prediction_type, model_output, sample, sigma)
        sigma_from, sigma_to = sigma, self.sigmas[self._step_index + 1]
        sigma_up = (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5
        sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
        derivative = (sample - x0) / sigma
        prev_sample = sample + derivative * (sigma_down - sigma)
        noise = draw_noise(model_output.shape, generator, model_output.dtype, model_output.device)
        prev_sample = (prev_sample + noise * sigma_up).to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return prev_sample, x0
        return SolverOutput(prev_sample, x0)


class HeunSolver(_KarrasSolver):
    """Heun's second-order method (Karras et al. 2022, Alg. 1): every timestep but the first is visited twice,
    an Euler predictor then a trapezoidal corrector; the last step (to sigma 0) is a plain Euler step."""

    DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                    trained_betas=None, prediction_type="epsilon", use_karras_sigmas=False,
                    use_exponential_sigmas=False, use_beta_sigmas=False, clip_sample=False, clip_sample_range=1.0,
                    timestep_spacing="linspace", steps_offset=0)
    order = 2

    def __init__(self, config: dict):
        super().__init__(config)
        self.set_timesteps(self.config.num_train_timesteps)

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        self.num_inference_steps = num_inference_steps
        ts = self._float_timesteps(num_inference_steps)
        sigmas = torch.from_numpy(np.concatenate([self._interp_sigmas(ts), [0.0]]).astype(np.float32))
        # [s0, s1, s1, s2, s2, ..., s_last, s_last, 0] and [t0, t1, t1, ..., t_last, t_last]
        self.sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
        ts = torch.from_numpy(ts)
        self.timesteps = torch.cat([ts[:1], ts[1:].repeat_interleave(2)]).to(torch.float32)
        self.prev_derivative: torch.Tensor | None = None
        self.dt: torch.Tensor | None = None
        self.sample: torch.Tensor | None = None
        self._reset_index()

    @property
    def state_in_first_order(self) -> bool:
        return self.dt is None

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: Generators = None, return_dict: bool = True) -> SolverOutput | tuple:
        """`generator` is accepted for a uniform interface; Heun draws no noise."""
        if self._step_index is None:
            self._init_step_index(timestep)
        i, predictor = self._step_index, self.state_in_first_order
        sigma, sigma_next = (self.sigmas[i], self.sigmas[i + 1]) if predictor else (self.sigmas[i - 1], self.sigmas[i])
        sigma_hat = sigma * 1   # no churn
        x0 = self._x0(self.config.prediction_type, model_output, sample, sigma_hat if predictor else sigma_next)
        x0 = self._clip(x0)
        if predictor:
            derivative = (sample - x0) / sigma_hat
            dt = sigma_next - sigma_hat
            self.prev_derivative, self.dt, self.sample = derivative, dt, sample
        else:
            derivative = (self.prev_derivative + (sample - x0) / sigma_next) / 2
            dt, sample = self.dt, self.sample
            self.prev_derivative = self.dt = self.sample = None
        prev_sample = sample + derivative * dt
        self._step_index += 1
        if not return_dict:
            return prev_sample, x0
        return SolverOutput(prev_sample, x0)


# ---------------------------------------------------------------------------------------------------- factory

SOLVERS: dict[str, type[_Solver]] = {
    "ddpm": DDPMSolver,
    "ddim": DDIMSolver,
    "dpmpp_2m": DPMSolverPP2M,
    "euler": EulerSolver,
    "euler_a": EulerAncestralSolver,
    "heun": HeunSolver,
}


def make_solver(name: str, config: dict) -> _Solver:
    """A fresh sampler `name` on the noise schedule of a model's saved scheduler config (keys starting with
    "_" ignored), equal to what conjure.diffusion.samplers.make_diffusers_scheduler builds with diffusers."""
    if name not in SOLVERS:
        raise ValueError(f"unknown scheduler '{name}'; choose from: {', '.join(SOLVERS)}")
    cfg = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    # DPM-Solver on a cosine schedule saturates near t = T unless lambda is clipped (diffusers' advice)
    if name == "dpmpp_2m" and cfg.get("beta_schedule") == "squaredcos_cap_v2":
        cfg["lambda_min_clipped"] = -5.1
    return SOLVERS[name](cfg)
