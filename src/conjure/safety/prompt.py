"""Prompt screening: normalisation, then word-list rules and the MiniLM classifier, per category.

A category fires when one of its strong terms matches (check "rule"), when the classifier's
probability reaches the policy threshold and (if the policy asks, `evidence_cosine`) a training prompt of
the category lies near the prompt ("classifier"), or when a weak term matches and the probability reaches
the lower combine threshold ("combination"). Sexual content involving
minors fires on sexual AND minor signals together and is always blocked. The classifier alone judges only
prompts with at least MIN_CLASSIFIER_LETTERS letters: on "x" or "ok" its probabilities say nothing (the 2026.6
model gave "x" 0.89 and "ok" 0.79 sexual), while rules and combinations still apply to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conjure.safety.normalize import normalize
from conjure.safety.policy import ACTION_RANK, Policy, load_policy
from conjure.safety.rules import RuleHits, match_rules
from conjure.safety.verdict import Verdict

MAX_PROMPT_CHARS = 4000
MIN_CLASSIFIER_LETTERS = 3


@dataclass
class _Fired:
    category: str
    score: float
    check: str
    reason: str


def _check_text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise ValueError(f"{what} is {len(value)} characters long; at most {MAX_PROMPT_CHARS} are accepted")
    return value


def classify(prompts: list[str], encoder=None, classifier=None) -> list[dict[str, float]]:
    """Per prompt: category -> classifier probability, the maximum over the prompt's normal forms."""
    return [p for p, _ in classify_with_evidence(prompts, encoder, classifier)]


def classify_with_evidence(prompts: list[str], encoder=None, classifier=None, evidence: bool = True
                           ) -> list[tuple[dict[str, float], dict[str, float] | None]]:
    """Per prompt: (category -> classifier probability, category -> cosine of the nearest prohibited
    training prompt of that category), each the maximum over the prompt's normal forms. The evidence is
    None when not asked for, or when the classifier folder has no evidence index (a custom classifier, say)."""
    from conjure.safety.classifier import MODEL_DIR, load_classifier, load_evidence
    index = load_evidence(str(MODEL_DIR)) if classifier is None and evidence else None
    classifier = classifier or load_classifier()
    forms = [list(dict.fromkeys([normalize(p), normalize(p, alt=True)])) for p in prompts]
    flat = [f for fs in forms for f in fs]
    # (F, K) probabilities and the (F, D) vectors the classifier read (frozen or fine-tuned MiniLM)
    probs, vectors = classifier.scores(flat, encoder) if flat else (np.zeros((0, 1)), np.zeros((0, 384)))
    near = index.nearest(vectors) if index is not None else None
    out, i = [], 0
    for fs in forms:
        p = probs[i:i + len(fs)].max(axis=0)
        ev = ({c: max(n[c] for n in near[i:i + len(fs)]) for c in near[i]} if near is not None else None)
        i += len(fs)
        out.append(({label: float(v) for label, v in zip(classifier.labels, p) if label != "benign"}, ev))
    return out


def _evidence_ok(cat: str, policy: Policy, evidence: dict[str, float] | None,
                 letters: int = MIN_CLASSIFIER_LETTERS) -> tuple[bool, str]:
    """Whether a classifier-only verdict for cat may stand: the prompt has enough letters to judge, and (if the
    policy asks) a training prompt of cat lies near enough. Returns the answer and the words for the reason."""
    if letters < MIN_CLASSIFIER_LETTERS:
        return False, (f"the prompt has {letters} letter{'s' if letters != 1 else ''}, too few for the classifier "
                       f"alone (it needs {MIN_CLASSIFIER_LETTERS}; word lists still apply)")
    need = policy.categories[cat].evidence_cosine
    if not need or evidence is None or cat not in evidence:
        return True, ""
    have = evidence[cat]
    return have >= need, f"nearest {cat} training prompt at cosine {have:.2f} (the policy asks {need:.2f})"


def _fire_category(cat: str, policy: Policy, hits: RuleHits, probs: dict[str, float],
                   evidence: dict[str, float] | None = None, letters: int = MIN_CLASSIFIER_LETTERS) -> _Fired | None:
    rule = policy.categories[cat]
    p = probs.get(cat, 0.0)
    if cat in hits.strong:
        both = " and the classifier agrees" if p >= rule.threshold else ""
        return _Fired(cat, 1.0, "combination" if both else "rule",
                      f"matched {', '.join(hits.strong[cat])} ({cat}){both}")
    ok, why = _evidence_ok(cat, policy, evidence, letters)
    if p >= rule.threshold and ok:
        return _Fired(cat, p, "classifier", f"classifier {cat} probability {p:.2f} >= {rule.threshold:.2f}"
                                            + (f", {why}" if why else ""))
    if cat in hits.weak and p >= rule.combine_threshold:
        return _Fired(cat, p, "combination", f"ambiguous terms {', '.join(hits.weak[cat])} with classifier "
                                              f"{cat} probability {p:.2f} >= {rule.combine_threshold:.2f}")
    return None


def _fire_minors(policy: Policy, hits: RuleHits, probs: dict[str, float], sexual: _Fired | None,
                 evidence: dict[str, float] | None = None, letters: int = MIN_CLASSIFIER_LETTERS) -> _Fired | None:
    """Sexual AND minor signals: a fired sexual category or strong sexual term, or sexual and minor
    classifier mass at the combine threshold, together with a minor term."""
    rule = policy.categories["sexual_minors"]
    p_minor = probs.get("sexual_minors", 0.0)
    p_sexual = probs.get("sexual", 0.0) + p_minor
    sexual_signal = sexual is not None or "sexual" in hits.strong or (
        "sexual" in hits.weak and p_sexual >= rule.combine_threshold)
    if hits.minor and sexual_signal:
        terms = hits.strong.get("sexual") or hits.weak.get("sexual") or ["classifier"]
        return _Fired("sexual_minors", max(p_sexual, 1.0 if "sexual" in hits.strong else 0.0), "combination",
                      f"sexual signal ({', '.join(terms)}) together with minor terms ({', '.join(hits.minor)})")
    ok, why = _evidence_ok("sexual_minors", policy, evidence, letters)
    if p_minor >= rule.threshold and ok:
        return _Fired("sexual_minors", p_minor, "classifier",
                      f"classifier sexual_minors probability {p_minor:.2f} >= {rule.threshold:.2f}"
                      + (f", {why}" if why else ""))
    return None


def decide(hits: RuleHits, probs: dict[str, float], policy: Policy,
           evidence: dict[str, float] | None = None, letters: int = MIN_CLASSIFIER_LETTERS) -> list[_Fired]:
    """Every category that fires under the policy, strictest action first (`letters`: the prompt's letter
    count; below MIN_CLASSIFIER_LETTERS the classifier alone fires nothing)."""
    fired = [f for cat in policy.categories if cat != "sexual_minors"
             if (f := _fire_category(cat, policy, hits, probs, evidence, letters)) is not None]
    sexual = next((f for f in fired if f.category == "sexual"), None)
    minors = _fire_minors(policy, hits, probs, sexual, evidence, letters)
    if minors is not None:
        fired.append(minors)
    # The strictest action first; sexual content involving minors leads whenever it fires.
    return sorted(fired, key=lambda f: (ACTION_RANK[policy.categories[f.category].action],
                                        f.category == "sexual_minors", f.score), reverse=True)


def screen_prompt(prompt: str, negative_prompt: str = "", policy: Policy | None = None, encoder=None,
                  classifier=None) -> Verdict:
    """Screen a prompt under the policy (the packaged default when None).

    Args:
        prompt: the user's prompt.
        negative_prompt: the user's negative prompt; the verdict's details carry it with the
            policy's safety negative prompt appended (`details["negative_prompt"]`).
        encoder: a loaded `conjure.text.TextEncoder` to reuse (the pipeline's); loaded once if None.
        classifier: a `PromptClassifier` or `TunedClassifier` to use instead of the committed one.
    """
    negative_prompt = _check_text(negative_prompt, "the negative prompt")
    return screen_prompts([prompt], policy, encoder, classifier, negative_prompt)[0]


def screen_prompts(prompts: list[str], policy: Policy | None = None, encoder=None, classifier=None,
                   negative_prompt: str = "") -> list[Verdict]:
    """Screen many prompts at once (one batched encoder pass); same verdicts as screen_prompt."""
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise ValueError("screen_prompts takes a list of prompt strings")
    prompts = [_check_text(p, "the prompt") for p in prompts]
    policy = policy or load_policy()
    todo = [i for i, p in enumerate(prompts) if p.strip()]
    # the nearest-neighbour search only runs when the policy uses it (off in the default policy)
    wants = any(r.evidence_cosine > 0 for r in policy.categories.values())
    found = dict(zip(todo, classify_with_evidence([prompts[i] for i in todo], encoder, classifier, wants)))
    negative = policy.negative_prompt(negative_prompt)
    return [_verdict(p, *(found.get(i) or (None, None)), policy, negative) for i, p in enumerate(prompts)]


def _verdict(prompt: str, probs: dict[str, float] | None, evidence: dict[str, float] | None, policy: Policy,
             negative: str) -> Verdict:
    details = {"normalized": normalize(prompt), "negative_prompt": negative}
    if probs is None:
        return Verdict(True, "allow", "prompt", policy.version, reason="empty prompt", details=details)
    hits = match_rules(prompt)
    details["rules"] = {"strong": hits.strong, "weak": hits.weak, "minor": hits.minor}
    if evidence is not None:
        details["evidence"] = {c: round(v, 4) for c, v in evidence.items()}
    scores = {c: round(probs.get(c, 0.0), 4) for c in policy.categories}
    letters = sum(ch.isalpha() for ch in details["normalized"])
    fired = decide(hits, probs, policy, evidence, letters)
    if not fired:
        top = max(scores, key=scores.get)
        reason = "no prohibited category fired"
        unsupported = [c for c in policy.categories if scores[c] >= policy.categories[c].threshold]
        if unsupported:      # the classifier alone said so, on too few letters or far from its training prompts
            c = max(unsupported, key=scores.get)
            reason += (f"; the classifier's {c} probability {scores[c]:.2f} was set aside: "
                       f"{_evidence_ok(c, policy, evidence, letters)[1]}")
        return Verdict(True, "allow", "prompt", policy.version, score=scores[top], scores=scores,
                       reason=reason, details=details)
    first = fired[0]
    action = policy.categories[first.category].action
    details["fired"] = [{"category": f.category, "check": f.check, "score": round(f.score, 4)} for f in fired]
    return Verdict(action != "block", action, "prompt", policy.version, first.category, round(first.score, 4),
                   first.check, first.reason, scores, details)
