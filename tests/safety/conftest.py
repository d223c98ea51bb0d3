"""Shared fixtures for the safety tests: the packaged policy and one MiniLM encoder for the session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def policy():
    from conjure.safety import load_policy
    return load_policy()


@pytest.fixture(scope="session")
def encoder():
    from conjure.text import get_text_encoder
    return get_text_encoder()


@pytest.fixture(scope="session")
def screen(policy, encoder):
    """Screen many prompts in one batch: prompts -> verdicts."""
    from conjure.safety import screen_prompts

    def run(prompts):
        return screen_prompts(list(prompts), policy=policy, encoder=encoder)
    return run
