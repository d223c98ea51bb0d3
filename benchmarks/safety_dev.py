"""Development sweep for the safety prompt classifier: train recipe variants in memory and print the share
blocked of each DEVELOPMENT set: template held-out prohibited and hard benign, fresh benign sets 1-10, fresh
prohibited sets 1-9 (each measured once on the model of its time, development since), the adversarial set, and
built-in captions outside the train split; for a prohibited set also its lowest per-category share ("..._min").
It never reads a set kept for a final measurement. Each argument is a JSON recipe override (`{"finetune_layers":
1}` fine-tunes MiniLM's top layer) or a saved model folder to measure as it is; an optional first argument
base=JSON overrides the recipe for every variant:

    CONJURE_HOME=.cache/conjure python benchmarks/safety_dev.py '{"finetune_layers": 0}' '{"finetune_layers": 1}'
    CONJURE_HOME=.cache/conjure python benchmarks/safety_dev.py models/safety-prompt
    CONJURE_HOME=.cache/conjure python benchmarks/safety_dev.py models/safety-prompt@0.6   # the USE head's share
    CONJURE_HOME=.cache/conjure python benchmarks/safety_dev.py models/safety-prompt 'policy={}' \
        'policy={"combine_threshold": 0.25}'        # each policy override applied to every category
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from conjure.config import get_settings
from conjure.safety import dataset as ds
from conjure.safety import train as tr
from conjure.safety.classifier import PromptClassifier
from conjure.safety.multilingual import has_multilingual, load_ensemble
from conjure.safety.policy import load_policy
from conjure.safety.prompt import screen_prompts
from conjure.text import get_text_encoder


def dev_sets(held: list[ds.Example]) -> dict[str, list[ds.Example]]:
    ms = ds.measurement_sets()
    seen = set(ds.builtin_captions(get_settings().data_dir, split="train"))
    unseen = [ds.Example(c, "benign", "builtin", "builtin", "dev")
              for c in ds.builtin_captions(get_settings().data_dir) if c not in seen]
    return {"template_prohibited": [ex for ex in held if ex.label != "benign"],
            "template_hard_benign": [ex for ex in held if ex.kind == "hard_benign"],
            **{f"fresh_benign_{i}": ms[f"fresh_benign_{i}"] for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)},
            "fresh_prohibited_1": ms["fresh_prohibited"],
            "fresh_prohibited_2": ms["fresh_prohibited_2"],
            "fresh_prohibited_3": ms["fresh_prohibited_3"],
            "fresh_prohibited_4": ms["fresh_prohibited_4"],
            "fresh_prohibited_5": ms["fresh_prohibited_5"],
            "fresh_prohibited_6": ms["fresh_prohibited_6"],
            "fresh_prohibited_7": ms["fresh_prohibited_7"],
            "fresh_prohibited_8": ms["fresh_prohibited_8"],
            "fresh_prohibited_9": ms["fresh_prohibited_9"],
            "adversarial": ms["adversarial"],
            "builtin_unseen": unseen}


class _Memo:
    """A classifier whose scores are remembered per prompt, so that several policies screen the same prompts
    without scoring them again."""

    def __init__(self, model):
        self.model, self.labels, self.seen = model, model.labels, {}

    def scores(self, prompts: list[str], encoder=None):
        todo = [p for p in dict.fromkeys(prompts) if p not in self.seen]
        if todo:
            probs, vectors = self.model.scores(todo, encoder)
            self.seen.update({p: (probs[i], vectors[i]) for i, p in enumerate(todo)})
        return (np.stack([self.seen[p][0] for p in prompts]), np.stack([self.seen[p][1] for p in prompts]))


def with_overrides(policy, overrides: dict):
    """The policy with the same field overrides (threshold, combine_threshold, ...) in every category."""
    return dataclasses.replace(policy, categories={c: dataclasses.replace(r, **overrides)
                                                   for c, r in policy.categories.items()})


def blocked_shares(model, sets: dict[str, list[ds.Example]], encoder, policy=None) -> dict[str, float]:
    out = {}
    for name, rows in sets.items():
        blocked = np.array([v.blocked for v in screen_prompts([ex.prompt for ex in rows], policy=policy,
                                                               encoder=encoder, classifier=model)])
        out[name] = round(float(blocked.mean()), 4)
        if "prohibited" in name or name == "adversarial":
            labels = np.array([ex.label for ex in rows])
            out[name + "_min"] = round(min(float(blocked[labels == c].mean()) for c in set(labels)), 4)
    return out


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    base = tr.load_recipe(tr.DEFAULT_RECIPE)
    if argv and argv[0].startswith("base="):
        base = dataclasses.replace(base, **json.loads(argv.pop(0)[5:]))
    policies = [json.loads(a[7:]) for a in argv if a.startswith("policy=")] or [{}]
    argv = [a for a in argv if not a.startswith("policy=")]
    examples = tr.build_examples(base)
    vectors = tr.embed_cached([ex.prompt for ex in examples])
    measured = [ex.prompt for rows in ds.measurement_sets().values() for ex in rows]
    print("free-written prompts dropped near a measurement prompt:",
          ds.decontaminate(examples, vectors, tr.embed_cached(measured)))
    ds.drop_near_duplicates(examples, vectors)
    sets = dev_sets([ex for ex in examples if ex.split == "heldout"])
    encoder = get_text_encoder()
    for spec in argv or ["{}"]:
        t0 = time.time()
        if spec.lstrip().startswith("{"):
            model = tr.train_model(examples, vectors, dataclasses.replace(base, **json.loads(spec)))
        else:                                              # FOLDER or FOLDER@W (W: the multilingual head's share)
            folder, _, weight = spec.partition("@")
            model = PromptClassifier.load(Path(folder))    # with a multilingual head beside it: their mean
            if has_multilingual(Path(folder)):
                model = load_ensemble(Path(folder), model, float(weight) if weight else None)
        wall = round(time.time() - t0)
        model = _Memo(model)
        for overrides in policies:
            t0 = time.time()
            shares = blocked_shares(model, sets, encoder, with_overrides(load_policy(), overrides))
            label = spec + (f" policy={json.dumps(overrides)}" if overrides else "")
            print(label, f"(trained or loaded in {wall} s, screened in {time.time() - t0:.0f} s)", json.dumps(shares),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
