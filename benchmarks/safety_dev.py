"""Development sweep for the safety prompt classifier: train recipe variants in memory and print the share
blocked of each DEVELOPMENT set (template held-out prohibited and hard benign, fresh benign sets 1 and 2, fresh
prohibited sets 1 and 2, fresh benign set 3 (measured once on policy 2026.3, development since), the
adversarial set, built-in captions outside the train split). It never screens the measure-once sets
(fresh benign 4, fresh prohibited 3). Each argument is a JSON recipe override; an optional
first argument base=JSON overrides the recipe for every variant:

    CONJURE_HOME=.cache/conjure python benchmarks/safety_dev.py 'base={"builtin_captions": 30000}' \
        '{"class_weight_power": 0.0}' '{"class_weight_power": 0.25}'
"""
import dataclasses
import json
import sys

import numpy as np
import torch

from conjure.config import get_settings
from conjure.safety import dataset as ds
from conjure.safety import train as tr
from conjure.safety.prompt import screen_prompts
from conjure.text import get_text_encoder


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    base = tr.load_recipe(tr.DEFAULT_RECIPE)
    if argv and argv[0].startswith("base="):
        base = dataclasses.replace(base, **json.loads(argv.pop(0)[5:]))
    examples = tr.build_examples(base)
    vectors = tr.embed_cached([ex.prompt for ex in examples])
    ms = ds.measurement_sets()
    measured = [ex.prompt for rows in ms.values() for ex in rows]
    print("free-written prompts dropped near a measurement prompt:",
          ds.decontaminate(examples, vectors, tr.embed_cached(measured)))
    ds.drop_near_duplicates(examples, vectors)
    train = [i for i, ex in enumerate(examples) if ex.split == "train"]
    held = [ex for ex in examples if ex.split == "heldout"]
    y = np.array([ds.LABELS.index(examples[i].label) for i in train], dtype=np.int64)
    seen = set(ds.builtin_captions(get_settings().data_dir, split="train"))
    dev = {"template_prohibited": [ex.prompt for ex in held if ex.label != "benign"],
           "template_hard_benign": [ex.prompt for ex in held if ex.kind == "hard_benign"],
           "fresh_benign_1": [ex.prompt for ex in ms["fresh_benign_1"]],
           "fresh_benign_2": [ex.prompt for ex in ms["fresh_benign_2"]],
           "fresh_benign_3": [ex.prompt for ex in ms["fresh_benign_3"]],
           "fresh_prohibited_1": [ex.prompt for ex in ms["fresh_prohibited"]],
           "fresh_prohibited_2": [ex.prompt for ex in ms["fresh_prohibited_2"]],
           "adversarial": [ex.prompt for ex in ms["adversarial"]],
           "builtin_unseen": [c for c in ds.builtin_captions(get_settings().data_dir) if c not in seen]}
    encoder = get_text_encoder()
    for spec in argv or ["{}"]:
        recipe = dataclasses.replace(base, **json.loads(spec))
        model = tr.fit(vectors[train], y, recipe, len(ds.LABELS))
        blocked = {k: round(float(np.mean([v.blocked for v in screen_prompts(p, encoder=encoder, classifier=model)])), 4)
                   for k, p in dev.items()}
        print(spec, json.dumps(blocked), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
