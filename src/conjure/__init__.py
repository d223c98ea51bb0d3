"""conjure: a self-hosted generative media platform."""

__version__ = "0.1.0"
