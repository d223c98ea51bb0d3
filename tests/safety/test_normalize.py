"""Normalisation undoes spelling tricks and leaves ordinary words alone."""

import pytest

from conjure.safety.normalize import normalize, rule_forms


@pytest.mark.parametrize("raw, expected", [
    ("N U D E woman", "nude woman"),                 # spaced letters
    ("n.u.d.e", "nude"),
    ("nuuuude", "nude"),                             # repeated letters
    ("n\u200bu\u200cde", "nude"),                    # zero-width characters
    ("\u0455\u0435\u0445\u0443", "sexy"),            # Cyrillic look-alikes
    ("\uff2e\uff41\uff4b\uff45\uff44", "naked"),     # full-width letters
    ("k1ll", "kill"),                                # leetspeak
    ("$uicide", "suicide"),
    ("pr0n", "pron"),
    ("S3X Scene", "sex scene"),                      # case
    ("caf\u00e9  au   lait", "cafe au lait"),         # accents and spacing
])
def test_normalize_undoes_tricks(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("text", ["a 3d render in 4k", "1920s poster", "2nd place", "a 4x4 truck", "20 steps"])
def test_numbers_stay_numbers(text):
    assert normalize(text) == text


def test_leet_one_reads_as_i_and_as_l():
    forms = rule_forms("b1ood")
    assert " blod " in forms                         # squeezed: repeated letters cut to one


def test_non_string_is_a_value_error():
    with pytest.raises(ValueError, match="string"):
        normalize(None)
