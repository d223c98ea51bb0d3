"""Text encoders and prompt handling."""

from conjure.text.encoder import EMBED_DIM, ENCODER_ID, MAX_TOKENS, TextEncoder, get_text_encoder

__all__ = ["EMBED_DIM", "ENCODER_ID", "MAX_TOKENS", "TextEncoder", "get_text_encoder"]
