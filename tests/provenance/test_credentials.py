"""C2PA: sign, read back as trusted / valid / invalid / absent, and the manifest's content."""

from __future__ import annotations

import io

import pytest

from conjure.provenance.credentials import TRAINED_ALGORITHMIC_MEDIA, read_credentials, sign_png
from conjure.provenance.keys import make_dev_ca, signing_identity
from tests.provenance.helpers import record, synthetic_output


@pytest.fixture(scope="module")
def signed(settings):
    buf = io.BytesIO()
    synthetic_output(0).save(buf, "PNG")
    rec = record(seed=3)
    data, manifest_id = sign_png(buf.getvalue(), rec, signing_identity(settings), prompt_mode="full")
    return data, manifest_id, rec


def test_valid_then_trusted_with_the_ca_as_anchor(signed, settings):
    data, manifest_id, _ = signed
    report = read_credentials(data, anchors="")
    assert report.state == "valid" and report.manifest_id == manifest_id
    assert any("not trusted" in r for r in report.reasons)
    ca = (make_dev_ca(settings.home / "keys") / "ca.pem").read_text()
    assert read_credentials(data, anchors=ca).state == "trusted"
    other = (make_dev_ca(settings.home / "other-ca") / "ca.pem").read_text()
    assert read_credentials(data, anchors=other).state == "valid"


def test_manifest_content(signed):
    data, _, rec = signed
    import c2pa
    import json
    store = json.loads(c2pa.Reader("image/png", io.BytesIO(data)).json())
    manifest = store["manifests"][store["active_manifest"]]
    actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))["data"]["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert "thumbnail" not in json.dumps(manifest)
    gen = read_credentials(data, anchors="").generation
    assert gen["model"] == "test-tiny" and gen["model_hash"] == "0123abcd" and gen["seed"] == 3
    assert gen["parameters"]["steps"] == 10 and gen["watermark_id"] == rec.watermark_id
    assert gen["prompt"] == "a red apple" and gen["conjure_version"]


def test_every_single_byte_edit_of_pixel_data_is_invalid(signed):
    data = signed[0]
    start = data.find(b"IDAT") + 4
    end = start + int.from_bytes(data[start - 8:start - 4], "big")
    for offset in range(start, end, max(1, (end - start) // 40)):
        edited = bytearray(data)
        edited[offset] ^= 0x01
        report = read_credentials(bytes(edited), anchors="")
        assert report.state == "invalid", offset
        assert any("pixel data edited" in r for r in report.reasons)


def test_absent_when_reencoded_or_not_an_image(signed):
    from PIL import Image
    buf = io.BytesIO()
    Image.open(io.BytesIO(signed[0])).save(buf, "PNG")
    assert read_credentials(buf.getvalue(), anchors="").state == "absent"
    assert read_credentials(b"plain text", anchors="").state == "absent"


def test_sign_refuses_non_png(settings):
    with pytest.raises(ValueError, match="PNG"):
        sign_png(b"\xff\xd8jpeg", record(), signing_identity(settings))
