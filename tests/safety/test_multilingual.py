"""The multilingual head: USE vectors, its save/load, the mean with the MiniLM classifier, and the committed
ensemble on a few prompts in other languages."""

import numpy as np
import pytest

from conjure.safety.classifier import MODEL_DIR, load_classifier
from conjure.safety.multilingual import (DEFAULT_WEIGHT, SUBFOLDER, EnsembleClassifier, MultilingualClassifier,
                                         ensemble_weight, has_multilingual, load_ensemble, save_ensemble_weight,
                                         use_vectors)


def test_use_vectors_are_unit_length_and_cross_lingual():
    v = use_vectors(["a bomb exploding in a city", "una bomba explotando en una ciudad", "a cat asleep on a sofa"])
    assert v.shape == (3, 512) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2          # a translation lies far nearer than another subject
    assert use_vectors([]).shape == (0, 512)


def test_multilingual_head_saves_and_loads(tmp_path):
    labels = ("benign", "sexual", "violence")
    head = MultilingualClassifier.new(labels, hidden=16, dropout=0.0)
    head.save(tmp_path)
    back = MultilingualClassifier.load(tmp_path)
    assert isinstance(back, MultilingualClassifier) and back.config.embed_dim == 512
    p1, v = head.scores(["un gato", "ein Hund"])
    p2, _ = back.scores(["un gato", "ein Hund"])
    assert v.shape == (2, 512) and p1.shape == (2, 3)
    assert np.allclose(p1, p2) and np.allclose(p1.sum(axis=1), 1.0, atol=1e-5)


class _Fixed:
    def __init__(self, labels, probs):
        self.labels, self.probs = labels, np.asarray(probs, dtype=np.float32)

    def scores(self, prompts, encoder=None):
        return np.repeat(self.probs[None], len(prompts), axis=0), np.ones((len(prompts), 384), np.float32)


def test_ensemble_is_the_mean_and_keeps_the_main_vectors():
    ens = EnsembleClassifier(_Fixed(("benign", "hate"), [0.2, 0.8]), _Fixed(("benign", "hate"), [0.6, 0.4]))
    probs, vectors = ens.scores(["x", "y"])
    assert np.allclose(probs, [[0.4, 0.6], [0.4, 0.6]]) and vectors.shape == (2, 384)
    assert ens.labels == ("benign", "hate")
    with pytest.raises(ValueError, match="label order"):
        EnsembleClassifier(_Fixed(("benign", "hate"), [1, 0]), _Fixed(("hate", "benign"), [1, 0]))


def test_ensemble_weight_mixes_and_is_saved_beside_the_head(tmp_path):
    ens = EnsembleClassifier(_Fixed(("benign", "hate"), [0.2, 0.8]), _Fixed(("benign", "hate"), [0.6, 0.4]), 0.75)
    assert np.allclose(ens.scores(["x"])[0], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="between 0 and 1"):
        EnsembleClassifier(_Fixed(("benign",), [1]), _Fixed(("benign",), [1]), 1.5)
    labels = ("benign", "hate")
    MultilingualClassifier.new(labels, hidden=8, dropout=0.0).save(tmp_path / SUBFOLDER)
    assert ensemble_weight(tmp_path) == DEFAULT_WEIGHT == 0.5          # no file: the plain mean
    save_ensemble_weight(tmp_path, 0.7)
    assert ensemble_weight(tmp_path) == 0.7
    assert load_ensemble(tmp_path, main=_Fixed(labels, [1, 0])).weight == 0.7
    assert load_ensemble(tmp_path, main=_Fixed(labels, [1, 0]), weight=0.2).weight == 0.2
    (tmp_path / SUBFOLDER / "ensemble.json").write_text("{\"weight\": \"heavy\"}")
    with pytest.raises(ValueError, match="ensemble.json"):
        ensemble_weight(tmp_path)


def test_the_committed_screen_reads_both_classifiers():
    assert has_multilingual(MODEL_DIR) and (MODEL_DIR / SUBFOLDER / "config.json").is_file()
    clf = load_classifier()
    assert isinstance(clf, EnsembleClassifier) and not isinstance(clf.main, MultilingualClassifier)
    probs, vectors = clf.scores(["a red apple on a table"])
    assert probs.shape == (1, len(clf.labels)) and vectors.shape[1] == 384


@pytest.mark.parametrize("prompt", ["Apotheker sortiert Medikamente ins Regal, freundliches Foto",
                                    "affiche de sensibilisation au hameçonnage pour le bureau",
                                    "tecnico di sicurezza informatica in riunione, foto aziendale"])
def test_everyday_prompts_in_other_languages_pass(prompt):
    from conjure.safety import screen_prompt
    v = screen_prompt(prompt)
    assert v.allowed, v
