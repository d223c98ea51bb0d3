"""Symbolic music: corpus, tokens, model, generation, rendering and analysis."""
