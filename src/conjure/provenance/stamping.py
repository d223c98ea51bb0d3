"""Stamp an output (watermark -> PNG parameters chunk -> C2PA signature) and verify a file afterwards.

The steps are separate functions so that a pipeline can show them as steps and time them:

    stamped = stamp(image, record)                       # watermark, parameters chunk, C2PA
    path.write_bytes(stamped.png)
    audit.append(record, stamped.sha256, stamped.manifest_id)

`verify_file` reads all three back: the C2PA state, the watermark, and the audit entry (found by the file's
sha256, else by the watermark id, which survives a JPEG re-encode that drops the manifest).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from conjure.provenance import audit, credentials, watermark
from conjure.provenance.metadata import parameters_text
from conjure.provenance.record import GenerationRecord, sha256_hex

MAX_VERIFY_PIXELS = 4096 * 4096
PNG_COMPRESS_LEVEL = 4       # zlib level: 6 (PIL's default) costs more time for a few % of size


@dataclass
class Stamped:
    png: bytes                   # the final file: write these bytes as they are
    sha256: str                  # of `png`: the audit entry's output_sha256
    manifest_id: str | None      # None when signing was turned off
    watermark_id: int | None     # None when the image is below the watermark's minimum size
    timings: dict[str, float] = field(default_factory=dict)   # seconds per step


def record_parameters(record: GenerationRecord, size: int, prompt_mode: str | None = None,
                      watermarked: bool = True) -> str:
    """The A1111 `parameters` text for a record, with prompts in their recordable form."""
    rec = record.recorded(prompt_mode)
    p = rec["params"]
    extra = {"Job": rec["job_id"], "Watermark": f"{rec['watermark_id']:08x}" if watermarked else "none (too small)"}
    if p.get("task", "text_to_image") != "text_to_image":
        extra["Task"] = p["task"]
    return parameters_text(rec["prompt"], rec["negative_prompt"], p.get("steps", ""),
                           p.get("scheduler") or p.get("sampler", ""), p.get("guidance", ""), rec["seed"],
                           p.get("size", size), rec["model"], rec["model_hash"], extra=extra)


def png_bytes(image: Image.Image, parameters: str) -> bytes:
    info = PngInfo()
    info.add_text("parameters", parameters)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def stamp(image: Image.Image, record: GenerationRecord, *, prompt_mode: str | None = None,
          identity=None, sign: bool = True) -> Stamped:
    """Watermark `image` with `record.watermark_id`, write the PNG parameters chunk, sign it with C2PA."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"stamp needs a PIL image, got {type(image).__name__}")
    timings = {}
    # 1. invisible watermark (images under the watermark's minimum size carry the manifest and audit entry only)
    t0 = time.perf_counter()
    marks = watermark.fits(image.width, image.height)
    marked = watermark.embed(image.convert("RGB"), record.watermark_id) if marks else image.convert("RGB")
    timings["watermark"] = time.perf_counter() - t0
    # 2. PNG with the A1111 parameters chunk
    t1 = time.perf_counter()
    png = png_bytes(marked, record_parameters(record, image.width, prompt_mode, watermarked=marks))
    timings["png"] = time.perf_counter() - t1
    # 3. C2PA manifest, signed
    t2 = time.perf_counter()
    manifest_id = None
    if sign:
        png, manifest_id = credentials.sign_png(png, record, identity, prompt_mode)
    timings["c2pa"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    return Stamped(png, sha256_hex(png), manifest_id, record.watermark_id if marks else None, timings)


@dataclass
class FileReport:
    path: str
    sha256: str
    c2pa: credentials.CredentialReport
    watermark: watermark.WatermarkResult
    audit: list[dict]                       # matching entries, newest first
    audit_match: str | None                 # "sha256", "watermark" or None
    parameters: str | None                  # the PNG parameters chunk, if any
    image_error: str | None = None          # why the pixels could not be decoded (the manifest was still read)

    def to_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "c2pa": self.c2pa.to_dict(),
                "watermark": self.watermark.to_dict(), "audit_match": self.audit_match, "audit": self.audit,
                "parameters": self.parameters, "image_error": self.image_error}


def _open_image(data: bytes, path: Path) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_VERIFY_PIXELS:
                raise ValueError(f"'{path}' is {im.width}x{im.height}: at most {MAX_VERIFY_PIXELS} pixels are read")
            im.load()
            return im.copy()
    except ValueError:
        raise
    except Exception as e:   # PIL raises several types for unreadable data
        raise ValueError(f"cannot read '{path}' as an image ({type(e).__name__}: {e}); give a PNG or JPEG file") \
            from e


def verify_file(path: Path | str, *, anchors: str | None = None, url: str | None = None) -> FileReport:
    """C2PA state, watermark and audit entry of one file (raises ValueError for a missing or unreadable file)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"the file '{path}' does not exist")
    data = path.read_bytes()
    digest = sha256_hex(data)
    report = credentials.read_credentials(data, anchors)
    try:
        image, image_error = _open_image(data, path), None
    except ValueError as e:
        if report.state == "absent":
            raise
        image, image_error = None, str(e)   # an edited file may no longer decode; its manifest still says so
    mark = watermark.detect(image) if image is not None else watermark.WatermarkResult(False, None, 0.0)
    entries, match = audit.find(output_sha256=digest, url=url), "sha256"
    if not entries and mark.found:
        entries, match = audit.find(watermark_id=mark.watermark_id, url=url), "watermark"
    info = image.info if image is not None else {}
    parameters = info.get("parameters") if isinstance(info.get("parameters"), str) else None
    return FileReport(str(path), digest, report, mark, entries, match if entries else None, parameters, image_error)
