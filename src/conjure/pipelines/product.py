"""The steps every generated image goes through before anyone sees it, shared by every pipeline.

A pipeline with a `guard` screens the prompt before it samples (a refused prompt stops there, with its
verdict) and hands its images to `Guard.deliver`, which for each image: screens it (blur or withhold per
the policy), watermarks it, writes the A1111 parameters chunk, signs a C2PA manifest and appends an
audit entry. `load_pipeline` attaches a guard by default; a pipeline built without one (training sample
grids, unit tests of the sampler) returns raw images and records nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace

from PIL import Image

from conjure.pipelines.request import GenerationRequest
from conjure.provenance.record import new_job_id
from conjure.safety.verdict import Refused

__all__ = ["Guard", "Job", "Output", "Refused"]


@dataclass
class Job:
    """Who a generation is for: the service passes its job id and user; the CLI gets a fresh id."""

    job_id: str = field(default_factory=new_job_id)
    user: str = ""


@dataclass
class Output:
    """One delivered (or withheld) image with its provenance."""

    seed: int
    image: Image.Image | None        # as delivered (blurred when the policy says blur); None when withheld
    png: bytes | None                # the stamped file (watermark, parameters chunk, C2PA); None when withheld
    verdict: dict                    # the image screening verdict
    sha256: str                      # of `png` (of the raw pixels when withheld): the audit entry's output_sha256
    watermark_id: int | None
    manifest_id: str | None
    record: object = None            # the provenance GenerationRecord (for an audit entry written later)

    @property
    def withheld(self) -> bool:
        return self.png is None


def _with_safety_negative(user_negative: str, safety_negative: str) -> str:
    """Append the policy's safety negative prompt once: a request re-run from its recorded parameters
    (which already carry it) gets the same negative prompt, hence the same images."""
    user_negative = (user_negative or "").strip()
    if not safety_negative or user_negative.endswith(safety_negative):
        return user_negative
    return f"{user_negative.rstrip(',')}, {safety_negative}" if user_negative else safety_negative


class Guard:
    """Safety and provenance for a pipeline (attach as `pipe.guard`)."""

    def __init__(self, policy=None, encoder=None, sign: bool = True, audit: bool = True, db_url: str | None = None):
        """`audit=False` leaves the audit entry to the caller (the service writes it once its job commits)."""
        from conjure.safety import load_policy
        self.policy = policy or load_policy()
        self.encoder = encoder          # the pipeline's MiniLM, reused by the prompt classifier
        self.sign = sign
        self.audit = audit
        self.db_url = db_url

    def screen_prompt(self, req: GenerationRequest) -> tuple[GenerationRequest, dict]:
        """The request with the safety negative prompt appended, and the prompt verdict; raises Refused."""
        from conjure.safety import screen_prompt
        verdict = screen_prompt(req.prompt, "", self.policy, encoder=self.encoder)
        if verdict.blocked:
            raise Refused(verdict)
        negative = _with_safety_negative(req.negative_prompt, self.policy.safety_negative_prompt)
        return replace(req, negative_prompt=negative), verdict.to_dict()

    def deliver(self, images: list[Image.Image], seeds: list[int], req: GenerationRequest, model: str,
                model_hash: str, prompt_verdict: dict, job: Job, timings: dict[str, float]) -> list[Output]:
        """Screen, watermark, stamp, sign and audit each image; adds its stage times to `timings`."""
        from conjure.provenance import GenerationRecord, audit, stamp
        from conjure.safety import screen_image
        params = {k: v for k, v in req.params().items() if k not in ("prompt", "negative_prompt", "seed", "n")}
        outputs = []
        for stage in ("screen_image", "stamp", "audit"):
            timings.setdefault(stage, 0.0)
        for image, seed in zip(images, seeds):
            t0 = time.perf_counter()
            verdict, shown = screen_image(image, self.policy)
            t1 = time.perf_counter()
            record = GenerationRecord(req.prompt, model, model_hash, seed, params, req.negative_prompt,
                                      job.job_id, job.user, [prompt_verdict, verdict.to_dict()],
                                      self.policy.version)
            if shown is None:
                png, digest = None, hashlib.sha256(image.tobytes()).hexdigest()
                mark = manifest = None
            else:
                stamped = stamp(shown, record, sign=self.sign)
                png, digest, mark, manifest = stamped.png, stamped.sha256, stamped.watermark_id, stamped.manifest_id
            t2 = time.perf_counter()
            if self.audit:
                audit.append(record, digest, manifest or "", url=self.db_url)
            t3 = time.perf_counter()
            timings["screen_image"] += t1 - t0
            timings["stamp"] += t2 - t1
            timings["audit"] += t3 - t2
            outputs.append(Output(seed, shown, png, verdict.to_dict(), digest, mark, manifest, record))
        return outputs
