"""Provenance: every output carries an invisible watermark, an A1111 parameters chunk and a signed C2PA
manifest, and is written to a hash-chained audit log.

Public API (what the pipelines, the CLI and the service use):

    record = GenerationRecord(prompt, model, model_hash, seed, params, job_id=..., user=..., verdicts=...)
    stamped = stamp(image, record)                     # -> Stamped(png, sha256, manifest_id, watermark_id)
    audit.append(record, stamped.sha256, stamped.manifest_id)
    report = verify_file(path)                         # C2PA state, watermark, audit entry
    audit.verify()                                     # the whole chain
    recordable_prompt(prompt)                          # what of a prompt may be recorded (record_prompt)

Submodules are imported lazily so that `import conjure.provenance` stays cheap (no c2pa or OpenCV load).
"""

from __future__ import annotations

from conjure.provenance.record import GenerationRecord, new_job_id, new_watermark_id, recordable_prompt

__all__ = ["GenerationRecord", "Stamped", "audit", "new_job_id", "new_watermark_id", "recordable_prompt",
           "stamp", "verify_file"]


def __getattr__(name: str):
    if name in ("stamp", "verify_file", "Stamped", "FileReport"):
        from conjure.provenance import stamping
        return getattr(stamping, name)
    if name in ("audit", "watermark", "credentials", "keys"):
        import importlib
        return importlib.import_module(f"conjure.provenance.{name}")
    raise AttributeError(f"module 'conjure.provenance' has no attribute {name!r}")
