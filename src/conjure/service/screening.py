"""Where safety screening enters the service. A screen takes a job spec and returns a verdict as a dict
({"action": "allow" | "refuse", "category", "reason", "check", ...}) or None when it has nothing to say.

The lead wires `conjure.safety.screen_prompt` in by appending to PROMPT_SCREENS (or replacing
`screen_prompt`); output screening belongs in `conjure.service.worker.run_job`.
"""

from __future__ import annotations

from typing import Callable

PromptScreen = Callable[[dict], "dict | None"]
PROMPT_SCREENS: list[PromptScreen] = []


def screen_prompt(spec: dict) -> tuple[list[dict], dict | None]:
    """All verdicts on the prompt, and the first one that refuses it (None: the job may run)."""
    verdicts = [v for v in (screen(spec) for screen in PROMPT_SCREENS) if v is not None]
    refusal = next((v for v in verdicts if v.get("action") == "refuse"), None)
    return verdicts, refusal
