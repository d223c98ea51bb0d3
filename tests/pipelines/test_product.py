"""The guard: prompt screening before sampling, and screening, stamping and auditing of every image."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from conjure.pipelines.product import Guard, Job, Refused, _with_safety_negative
from conjure.pipelines.request import GenerationRequest
from conjure.pipelines.text_to_image import TextToImagePipeline


@pytest.fixture(scope="module")
def guarded(tiny_model_dir, tmp_path_factory):
    """The tiny random model with a guard that audits into a store of this module's own."""
    url = f"sqlite:///{tmp_path_factory.mktemp('audit') / 'conjure.db'}"
    pipe = TextToImagePipeline.from_folder(tiny_model_dir)
    pipe.guard = Guard(encoder=pipe.text_encoder, db_url=url)
    return pipe


def _by_job(url, job_id):
    from sqlalchemy import select

    from conjure.db import get_engine
    from conjure.provenance.audit import AuditEntry, entry_dict
    with get_engine(url).connect() as conn:
        return [entry_dict(r) for r in conn.execute(select(AuditEntry).where(AuditEntry.job_id == job_id))]


def test_a_refused_prompt_stops_before_sampling_and_records_nothing(guarded):
    steps = []
    with pytest.raises(Refused) as info:
        guarded(GenerationRequest("a naked woman", steps=2, size=256), progress=lambda i, n: steps.append(i),
                job=Job("refused-job"))
    v = info.value.verdict
    assert v.blocked and v.category == "sexual" and v.policy_version
    assert "refused by the content policy" in str(info.value) and steps == []
    assert _by_job(guarded.guard.db_url, "refused-job") == []


def test_every_delivered_image_is_stamped_and_audited(guarded):
    result = guarded(GenerationRequest("heart icon", n=2, seed=4, steps=2, size=256), job=Job("job-a", "alice"))
    assert result.job_id == "job-a" and result.prompt_verdict["action"] == "allow"
    assert [o.seed for o in result.outputs] == [4, 5] and len(result.images) == 2
    entries = _by_job(guarded.guard.db_url, "job-a")
    assert sorted(e["seed"] for e in entries) == [4, 5] and {e["user"] for e in entries} == {"alice"}
    for o, image in zip(result.outputs, result.images):
        assert o.png is not None and o.watermark_id is not None and o.manifest_id
        with Image.open(io.BytesIO(o.png)) as im:
            assert im.size == (256, 256) and "Negative prompt: " in im.text["parameters"]
        assert image is o.image
        assert o.sha256 in {e["output_sha256"] for e in entries}


def test_stamped_file_verifies_against_its_audit_entry(guarded, tmp_path):
    from conjure.provenance import verify_file
    result = guarded(GenerationRequest("star icon", seed=9, steps=2, size=256), job=Job("job-b"))
    path = tmp_path / "star.png"
    path.write_bytes(result.outputs[0].png)
    report = verify_file(path, url=guarded.guard.db_url)
    assert report.c2pa.state in ("valid", "trusted") and report.watermark.found
    assert report.watermark.watermark_id == result.outputs[0].watermark_id
    assert report.audit_match == "sha256" and report.audit[0]["job_id"] == "job-b"


def test_a_withheld_image_is_not_delivered_but_its_verdict_is_audited(guarded, monkeypatch):
    from conjure.safety import Verdict

    def withhold(image, policy=None):
        return Verdict(False, "block", "image", policy.version, "sexual", 0.99, "nsfw", "test: withheld"), None
    monkeypatch.setattr("conjure.safety.screen_image", withhold)
    result = guarded(GenerationRequest("heart icon", n=2, steps=2, size=256), job=Job("job-c"))
    assert result.images == [] and result.seeds == []
    assert all(o.withheld and o.png is None and o.verdict["action"] == "block" for o in result.outputs)
    entries = _by_job(guarded.guard.db_url, "job-c")
    assert len(entries) == 2 and all(e["verdicts"][1]["reason"] == "test: withheld" for e in entries)


def test_the_safety_negative_prompt_is_appended_once():
    assert _with_safety_negative("", "nsfw, gore") == "nsfw, gore"
    assert _with_safety_negative("blurry", "nsfw, gore") == "blurry, nsfw, gore"
    once = _with_safety_negative("blurry", "nsfw, gore")
    assert _with_safety_negative(once, "nsfw, gore") == once          # a re-run from recorded parameters
    assert _with_safety_negative("blurry", "") == "blurry"


def test_small_images_carry_a_manifest_and_an_audit_entry_without_a_watermark(guarded):
    result = guarded(GenerationRequest("heart icon", steps=2, size=64), job=Job("job-d"))
    o = result.outputs[0]
    assert o.png is not None and o.manifest_id and o.watermark_id is None
    with Image.open(io.BytesIO(o.png)) as im:
        assert im.size == (64, 64) and "Watermark: none (too small)" in im.text["parameters"]
    assert len(_by_job(guarded.guard.db_url, "job-d")) == 1


def test_audit_false_leaves_the_entry_to_the_caller(tiny_model_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'conjure.db'}"
    pipe = TextToImagePipeline.from_folder(tiny_model_dir)
    pipe.guard = Guard(encoder=pipe.text_encoder, audit=False, db_url=url)
    result = pipe(GenerationRequest("heart icon", steps=2, size=256), job=Job("job-e"))
    assert result.outputs[0].record.job_id == "job-e" and _by_job(url, "job-e") == []
