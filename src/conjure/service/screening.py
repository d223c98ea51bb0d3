"""Where safety screening enters the service. A screen takes a job spec and returns a verdict as a dict
({"action": "allow" | "flag" | "block", "category", "reason", "check", ...}) or None when it has nothing to
say. The policy's prompt screen runs at submit time, so a refused prompt is answered at once and never
queued; output screening, watermark, C2PA and audit run in the worker's pipeline (`worker.run_job`).
"""

from __future__ import annotations

from typing import Callable

PromptScreen = Callable[[dict], "dict | None"]
REFUSING_ACTIONS = ("block", "refuse")


def policy_screen(spec: dict) -> dict | None:
    """conjure's content policy on the prompt (MiniLM loads once per process, on the first request)."""
    from conjure.safety import screen_prompt as screen
    return screen(spec["prompt"]).to_dict()


PROMPT_SCREENS: list[PromptScreen] = [policy_screen]


def warm_screens() -> None:
    """Load the screens' models before the first request: concurrent first requests would otherwise import
    transformers from several threads at once, which fails ("cannot import name 'AutoModel'")."""
    screen_prompt({"prompt": "a red apple"})


def screen_prompt(spec: dict) -> tuple[list[dict], dict | None]:
    """All verdicts on the prompt, and the first one that refuses it (None: the job may run)."""
    verdicts = [v for v in (screen(spec) for screen in PROMPT_SCREENS) if v is not None]
    refusal = next((v for v in verdicts if v.get("action") in REFUSING_ACTIONS), None)
    return verdicts, refusal
