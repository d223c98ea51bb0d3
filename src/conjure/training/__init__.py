"""Training: recipes, the diffusion training loop, EMA, run directories and checkpoints."""
