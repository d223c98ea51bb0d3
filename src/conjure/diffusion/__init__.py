"""Diffusion math: training schedule, losses, guidance and the sampler registry."""
