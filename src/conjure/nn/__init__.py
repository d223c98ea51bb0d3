"""Small building blocks shared by several architectures (those diffusers does not already provide)."""
