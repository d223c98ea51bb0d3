"""C2PA content credentials with `c2pa-python`: sign a PNG with a manifest, read one back into a state.

The manifest says what made the image: a `c2pa.created` action with the IPTC digital source type
`trainedAlgorithmicMedia`, and a conjure assertion with the model (name and hash), the generation
parameters, the seed, the job and watermark ids and conjure's version. No thumbnail is embedded.

Reading gives one of four states:
- `trusted`: signature and hashes valid and the signer's chain ends at a configured trust anchor;
- `valid`: signature and hashes valid, signer not trusted (e.g. the development CA);
- `invalid`: something does not verify; `reasons` says what (e.g. pixel data edited);
- `absent`: no manifest (never signed, or stripped by a re-encode).
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field

import c2pa

from conjure import __version__
from conjure.provenance.keys import SigningIdentity, signing_identity, trust_anchors_pem
from conjure.provenance.record import GenerationRecord

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION_LABEL = "org.conjure.generation"
STATES = ("trusted", "valid", "invalid", "absent")
# Never reach the network while signing or reading: no OCSP, no remote manifests, no timestamp authority.
_OFFLINE = {"verify": {"ocsp_fetch": False, "remote_manifest_fetch": False}}
_SIGN_SETTINGS = {**_OFFLINE, "builder": {"thumbnail": {"enabled": False}}}
# c2pa validation codes, in the words `conjure verify` prints first
_CODE_WORDS = {
    "assertion.dataHash.mismatch": "pixel data edited (the asset's bytes do not match the signed hash)",
    "signingCredential.untrusted": "signer not trusted (its chain does not end at a configured trust anchor)",
    "claimSignature.mismatch": "claim signature does not verify (the manifest was edited)",
    "assertion.hashedURI.mismatch": "an assertion was edited after signing",
}

_contexts: dict[tuple, c2pa.Context] = {}
_lock = threading.Lock()


@dataclass
class CredentialReport:
    state: str                                   # one of STATES
    reasons: list[str] = field(default_factory=list)
    manifest_id: str | None = None
    signer: str | None = None                    # the signing certificate's common name and issuer
    generation: dict | None = None               # conjure's assertion, when present

    def to_dict(self) -> dict:
        return {"state": self.state, "reasons": self.reasons, "manifest_id": self.manifest_id,
                "signer": self.signer, "generation": self.generation}


def manifest_definition(record: GenerationRecord, prompt_mode: str | None = None, title: str = "image.png",
                        mime: str = "image/png") -> dict:
    """The manifest for one output; prompts appear only in their `record_prompt` form."""
    rec = record.recorded(prompt_mode)
    agent = {"name": "conjure", "version": __version__}
    generation = {"model": rec["model"], "model_hash": rec["model_hash"], "seed": rec["seed"],
                  "parameters": rec["params"], "prompt": rec["prompt"], "negative_prompt": rec["negative_prompt"],
                  "job_id": rec["job_id"], "watermark_id": rec["watermark_id"], "conjure_version": __version__}
    created = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent,
               "parameters": {"model": rec["model"], "model_hash": rec["model_hash"]}}
    return {"claim_generator_info": [agent], "title": title, "format": mime,
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [created]}},
                           {"label": ASSERTION_LABEL, "data": generation}]}


def _signing_context(identity: SigningIdentity) -> c2pa.Context:
    key = (identity.chain_pem, identity.key_pem, identity.alg)
    ctx = _contexts.get(key)
    if ctx is None:
        info = c2pa.C2paSignerInfo(identity.alg, identity.chain_pem, identity.key_pem, None)
        ctx = _contexts[key] = c2pa.Context.from_dict(_SIGN_SETTINGS, signer=c2pa.Signer.from_info(info))
    return ctx


def sign_png(png: bytes, record: GenerationRecord, identity: SigningIdentity | None = None,
             prompt_mode: str | None = None) -> tuple[bytes, str]:
    """Embed a signed manifest in PNG bytes; returns (signed PNG bytes, manifest id)."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("sign_png needs PNG bytes")
    identity = identity or signing_identity()
    manifest = manifest_definition(record, prompt_mode)
    out = io.BytesIO()
    with _lock:   # one Context (and its signer) per identity, shared by threads
        builder = c2pa.Builder(manifest, _signing_context(identity))
        builder.sign("image/png", io.BytesIO(png), out)
    signed = out.getvalue()
    report = read_credentials(signed)
    if report.state not in ("trusted", "valid"):
        raise RuntimeError(f"a freshly signed image does not verify: {report.reasons}")
    return signed, report.manifest_id


def sign_bytes(data: bytes, mime: str, record: GenerationRecord, identity: SigningIdentity | None = None,
               prompt_mode: str | None = None, title: str = "output") -> tuple[bytes, str]:
    """sign_png's sibling for any format c2pa signs (audio included): (signed bytes, manifest id)."""
    if mime not in c2pa.Builder.get_supported_mime_types():
        raise ValueError(f"c2pa cannot sign {mime}")
    identity = identity or signing_identity()
    out = io.BytesIO()
    with _lock:
        builder = c2pa.Builder(manifest_definition(record, prompt_mode, title, mime), _signing_context(identity))
        builder.sign(mime, io.BytesIO(data), out)
    signed = out.getvalue()
    report = read_credentials(signed, mime=mime)
    if report.state not in ("trusted", "valid"):
        raise RuntimeError(f"a freshly signed {mime} file does not verify: {report.reasons}")
    return signed, report.manifest_id


def _mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"fLaC"):
        return "audio/flac"
    if data.startswith(b"ID3") or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if data[4:8] == b"ftyp" and data[8:11] == b"M4A":
        return "audio/mp4"
    return None


def _reading_context(anchors: str) -> c2pa.Context:
    key = ("read", anchors)
    ctx = _contexts.get(key)
    if ctx is None:
        config = {"verify": {**_OFFLINE["verify"], "verify_trust": True}}
        if anchors:
            config["trust"] = {"user_anchors": anchors}
        ctx = _contexts[key] = c2pa.Context.from_dict(config)
    return ctx


def _reasons(results: dict | None) -> tuple[list[str], list[str]]:
    """(failure codes, readable reasons) of the active manifest."""
    failures = ((results or {}).get("activeManifest") or {}).get("failure") or []
    codes = [f.get("code", "") for f in failures]
    words = [f"{_CODE_WORDS.get(f.get('code'), f.get('explanation', ''))} [{f.get('code')}]" for f in failures]
    return codes, words


def read_credentials(data: bytes, anchors: str | None = None, mime: str | None = None) -> CredentialReport:
    """The C2PA state of image or audio bytes. `anchors`: PEM trust anchors (default: the configured ones);
    `mime`: the format when the bytes do not say it (a signed FLAC starts with an ID3 tag)."""
    anchors = trust_anchors_pem() if anchors is None else anchors
    mime = mime or _mime(data)
    if mime is None:
        return CredentialReport("absent", ["not a PNG, JPEG, WebP, WAV, MP3 or M4A file: no manifest can be read"])
    try:
        with _lock:
            reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None, _reading_context(anchors))
    except c2pa.C2paError as e:   # a manifest store that cannot even be parsed
        return CredentialReport("invalid", [f"the manifest cannot be read: {e}"])
    if reader is None:
        return CredentialReport("absent", ["no C2PA manifest in the file"])
    with reader:
        store = json.loads(reader.json())
    state = (store.get("validation_state") or "Invalid").lower()
    codes, reasons = _reasons(store.get("validation_results"))
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) or {}
    sig = manifest.get("signature_info") or {}
    generation = next((a.get("data") for a in manifest.get("assertions", []) if a.get("label") == ASSERTION_LABEL),
                      None)
    if state not in ("trusted", "valid"):
        state = "invalid"
    if state == "trusted":
        reasons = []
    elif state == "valid" and codes and set(codes) != {"signingCredential.untrusted"}:
        state = "invalid"   # be strict: any failure other than an untrusted signer
    signer = f"{sig.get('common_name', '?')} (issuer: {sig.get('issuer', '?')})" if sig else None
    return CredentialReport(state, reasons, label, signer, generation)
