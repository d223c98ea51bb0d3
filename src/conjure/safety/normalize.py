"""Prompt normalisation against spelling tricks: case, spacing, leetspeak, repeated letters,
Unicode confusables and zero-width characters.

`normalize(text)` gives the readable form the classifier embeds; `rule_forms(text)` gives the
squeezed forms (every run of a repeated letter cut to one, punctuation to spaces) that the word
lists are matched against, with the word lists squeezed the same way.
"""

from __future__ import annotations

import re
import unicodedata

# Invisible characters that split words without showing: zero-width space / joiners, word joiner,
# BOM, soft hyphen, Mongolian vowel separator, and the variation selectors.
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u180e\u034f\ufe00-\ufe0f]")

# Look-alike letters from Cyrillic, Greek and a few symbol blocks that NFKC leaves alone.
_CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ɡ": "g", "ɑ": "a", "ɩ": "i", "ʏ": "y", "ᴀ": "a", "ʙ": "b", "ᴄ": "c",
    "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m",
    "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w",
    "ᴢ": "z", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ѵ": "v", "ӏ": "l", "ı": "i", "ł": "l",
    "ø": "o", "đ": "d", "ո": "n", "ս": "u", "օ": "o", "հ": "h", "ց": "g", "ռ": "n", "ß": "ss", "æ": "ae", "œ": "oe", "×": "x",
})

# Leetspeak, applied only inside tokens that mix letters with these characters. "1" reads as i
# in the primary form and as l in the alternative one ("k1ll" -> kill, "b1ood" -> blood).
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "(": "c"})
_LEET_ALT = str.maketrans({"1": "l", "!": "l"})
_LEET_CHARS = set("0134578 9@$!|+€(".replace(" ", ""))
# Tokens with digits that are ordinary words: 3d, 4k, 1080p, 1920s, 2nd, 10mm, 4x4, mp3 ...
_NUMERIC_WORD = re.compile(r"^(?:\d+(?:st|nd|rd|th|s|d|k|p|px|x\d*|mm|cm|m|km|kg|g|h|fps|mp)?|\d+[a-z]\d+"
                           r"|mp3|mp4|h264|covid19|ps[2-5]|f1|b12|a4|a3)$")
_TOKEN = re.compile(r"\S+")
_SPACED_LETTERS = re.compile(r"\b(?:[a-z][ .\-_*/]){2,}[a-z]\b")   # "n u d e", "n.u.d.e"
_LONG_RUNS = re.compile(r"([a-z])\1{2,}")                           # "nuuuude" -> "nude"
_RUNS = re.compile(r"([a-z])\1+")


def fold(text: str) -> str:
    """NFKC (full-width, ligatures, maths letters), invisibles out, confusables mapped, accents off."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text).casefold().translate(_CONFUSABLES)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text


def _deleet_token(token: str, alt: bool) -> str:
    core = token.strip(".,;:?\"'()[]{}")
    if not core or _NUMERIC_WORD.match(core) or not any(c.isalpha() for c in core):
        return token
    if not any(c in _LEET_CHARS for c in core):
        return token
    if alt:
        core = core.translate(_LEET_ALT)
    return token.replace(token.strip(".,;:?\"'()[]{}"), core.translate(_LEET))


def _deleet(text: str, alt: bool = False) -> str:
    return _TOKEN.sub(lambda m: _deleet_token(m.group(0), alt), text)


def _join_spaced(text: str) -> str:
    return _SPACED_LETTERS.sub(lambda m: re.sub(r"[ .\-_*/]", "", m.group(0)), text)


def normalize(text: str, alt: bool = False) -> str:
    """The readable normal form: folded, de-leeted, spaced-out letters joined, long letter runs cut."""
    if not isinstance(text, str):
        raise ValueError(f"a prompt must be a string, got {type(text).__name__}")
    text = _join_spaced(_deleet(fold(text), alt))
    text = _LONG_RUNS.sub(r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def squeeze(text: str) -> str:
    """The matching form: letters and digits only, single spaces, every repeated letter cut to one."""
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return " " + _RUNS.sub(r"\1", text).strip() + " "


def rule_forms(text: str) -> list[str]:
    """The squeezed forms of a prompt that rules are matched against (one or two)."""
    forms = [squeeze(normalize(text)), squeeze(normalize(text, alt=True))]
    return forms if forms[0] != forms[1] else forms[:1]
