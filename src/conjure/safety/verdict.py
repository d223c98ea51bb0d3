"""One Verdict type for every safety decision, prompt or image; JSON-serialisable."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

CHECKS = ("none", "rule", "classifier", "combination", "nsfw", "faces", "ocr")


@dataclass
class Verdict:
    """What a safety check decided and why.

    `action` is allow, flag (deliver and record), blur (deliver blurred) or block (refuse; for an
    image: withhold). `check` names what fired: rule (word lists), classifier (MiniLM embedding
    classifier), combination (a weak rule term together with the classifier, or sexual AND minor
    signals), or for images nsfw, faces, ocr. `scores` holds every category's score.
    """

    allowed: bool
    action: str
    stage: str                                   # "prompt" | "image"
    policy_version: str
    category: str | None = None                  # the category that decided the action; None when allowed
    score: float = 0.0                           # that category's score in [0, 1]
    check: str = "none"
    reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)  # matched terms, normalised text, image check results

    def __post_init__(self):
        assert self.action in ("allow", "flag", "blur", "block"), self.action
        assert self.check in CHECKS, self.check

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        return cls(**d)


class Refused(ValueError):
    """The content policy refused a prompt or a text; `verdict` says which check fired and why. Every
    entry point raises this one type (images, speech) and answers with the verdict."""

    def __init__(self, verdict: Verdict, subject: str = "prompt"):
        self.verdict = verdict
        super().__init__(f"the {subject} was refused by the content policy (version {verdict.policy_version}): "
                         f"category {verdict.category}, {verdict.check} check, score {verdict.score:.2f}: "
                         f"{verdict.reason}. Rephrase the {subject}.")
