"""Word-list rules per category, matched on the squeezed normal form of a prompt.

Strong terms fire their category on their own. Weak terms are ambiguous ("naked" in "a naked
mole rat", "bomb" in the bomb emoji): they fire only together with the classifier (the
policy's combine_threshold). Allow phrases are cut out before matching. A term ending in "*"
matches as a prefix; otherwise an optional plural "s" is allowed. The lists are deliberately
plain and non-graphic; the classifier carries the paraphrases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from conjure.safety.normalize import fold, rule_forms, squeeze

STRONG: dict[str, list[str]] = {
    "sexual": [
        "porn*", "pron", "nsfw", "hentai", "erotic*", "nudity", "nudist", "topless", "bottomless",
        "sex scene", "sex act*", "having sex", "sexual act*", "sexual position*", "explicit sex*",
        "sexually explicit", "lewd", "no clothes", "without clothes", "without any clothes", "wearing nothing",
        "fully nude", "fully naked", "completely naked", "completely nude", "stark naked", "undressed",
        "undressing", "striptease", "stripper", "onlyfans", "genital*", "orgy", "fetish*", "bdsm",
        "playboy centerfold", "adult film", "adult video", "x rated", "sexting", "nude selfie", "nudes",
    ],
    "violence": [
        "gore", "gory", "gorefest", "decapitat*", "dismember*", "mutilat*", "disembowel*", "behead*",
        "massacre*", "bloodbath", "blood bath", "blood splatter*", "blood everywhere", "pool of blood",
        "covered in blood", "dead bodies", "mangled bod*", "corpses", "mass shooting", "school shooting",
        "torture*", "torturing", "execution video", "snuff", "lynching", "slaughtered people", "war crime*",
        "shot in the head", "stabbed to death", "beaten to death", "brutal murder", "murder scene",
        "crime scene photo*", "graphic injur*", "severed head", "severed limb*", "exposed organs",
        "entrails", "guts spilling",
    ],
    "hate": [
        "nazi propaganda", "swastika", "white power", "white supremac*", "ku klux", "neo nazi",
        "neonazi", "ethnic cleansing", "racial slur*", "hate propaganda", "hate speech", "racist caricature*",
        "racist cartoon*", "racist meme*", "antisemitic", "anti semitic", "subhuman", "untermensch",
        "inferior race", "master race", "heil hitler", "sieg heil", "gas the", "race war", "hate symbol*",
        "homophobic", "transphobic", "islamophobic", "xenophobic", "dehumaniz*", "dehumanis*",
    ],
    "self_harm": [
        "suicide", "suicidal", "kill myself", "killing myself", "kill yourself", "kys", "end my life",
        "take my own life", "self harm*", "selfharm*", "cutting myself", "cut myself", "hurt myself",
        "hurting myself", "slit wrist*", "slitting wrist*", "hang myself", "hanging myself", "noose around",
        "overdose on purpose", "pro ana", "proana", "thinspo*", "meanspo", "starve myself", "starving myself",
        "unalive", "self injur*", "self mutilat*",
    ],
    "weapons_illegal": [
        "pipe bomb", "make a bomb", "build a bomb", "making a bomb", "building a bomb", "bomb making",
        "homemade bomb", "homemade explosive*", "improvised explosive", "molotov", "napalm recipe",
        "make a gun", "build a gun", "ghost gun", "3d printed gun", "untraceable gun", "untraceable firearm",
        "convert to full auto", "auto sear", "meth lab", "cook meth", "cooking meth", "making meth",
        "synthesi* drug*", "synthesi* meth*", "make drug*", "drug deal*", "selling drug*", "smuggl*",
        "counterfeit money", "counterfeit bill*", "counterfeit currency", "credit card fraud", "card skimm*",
        "money launder*", "shoplift*", "break into a house", "breaking into a car", "hotwir*", "lock picking a",
        "nerve agent", "sarin", "ricin", "anthrax", "bioweapon*", "chemical attack", "dirty bomb",
        "terrorist attack", "carbomb", "car bomb", "suicide vest", "bomb vest", "human trafficking",
    ],
    "real_people": [
        "donald trump", "joe biden", "barack obama", "michelle obama", "hillary clinton", "bill clinton",
        "kamala harris", "vladimir putin", "volodymyr zelensky", "xi jinping", "kim jong un", "emmanuel macron",
        "angela merkel", "boris johnson", "rishi sunak", "narendra modi", "justin trudeau", "king charles",
        "queen elizabeth", "prince harry", "meghan markle", "pope francis", "elon musk", "jeff bezos",
        "mark zuckerberg", "bill gates", "taylor swift", "beyonce", "rihanna", "kim kardashian", "kanye west",
        "selena gomez", "ariana grande", "billie eilish", "scarlett johansson", "emma watson", "jennifer lawrence",
        "margot robbie", "zendaya", "tom cruise", "brad pitt", "leonardo dicaprio", "keanu reeves",
        "dwayne johnson", "the rock johnson", "tom hanks", "morgan freeman", "lionel messi", "cristiano ronaldo",
        "lebron james", "serena williams", "greta thunberg", "oprah winfrey", "justin bieber", "drake rapper",
        "real person", "real people", "real celebrity", "actual celebrity",
    ],
    "deepfake": [
        "deepfake*", "deep fake*", "face swap*", "faceswap*", "fake news photo*", "fake news image*",
        "fabricated evidence", "fake evidence", "fake screenshot*", "forged document*", "forged signature*",
        "forged passport*", "fake passport*", "fake id card*", "fake driver*", "fake drivers license",
        "fake identity document*", "fake receipt*", "fake doctor* note", "fake diploma*", "fake certificate*",
        "make it look real", "indistinguishable from a real photo", "pass as a real photo",
        "fake photo of", "fake photograph of", "fake leaked", "fake mugshot*", "fake arrest photo*",
        "fake campaign", "election disinformation", "misinformation photo*", "hoax photo*", "fake scandal",
    ],
}

WEAK: dict[str, list[str]] = {
    "sexual": ["nude", "naked", "sexy", "explicit", "sexuali*", "sex", "lingerie", "seductive", "sensual", "strip*", "bare chested",
               "boob*", "breast*", "butt", "cleavage", "provocative", "busty", "bikini", "intimate", "aroused",
               "horny", "spicy", "steamy", "in bed", "bedroom", "skimpy", "revealing", "birthday suit"],
    "violence": ["blood*", "bloody", "kill*", "murder*", "dead", "corpse", "stab*", "shoot*", "shot", "wound*",
                 "injur*", "brutal*", "violent*", "beat*", "attack*", "fight*", "war", "victim*", "carnage"],
    "hate": ["nazi*", "hitler", "racist", "racism", "supremac*", "slur*", "inferior", "vermin", "hate",
             "hateful", "bigot*", "propaganda", "extremist*"],
    "self_harm": ["cutting", "razor", "pills", "overdos*", "noose", "wrists", "starve", "hopeless",
                  "worthless", "die", "dying", "jump off", "bridge edge", "hurt"],
    "weapons_illegal": ["bomb*", "explosive*", "gun*", "pistol*", "rifle*", "firearm*", "grenade*", "ammo",
                        "ammunition", "weapon*", "meth*", "cocaine", "heroin", "drug*", "steal*", "stolen",
                        "robbery", "rob", "heist", "hack*", "fraud*", "counterfeit*", "illegal*", "knife"],
    "real_people": ["president", "prime minister", "celebrity", "celebrities", "famous", "politician",
                    "senator", "actor", "actress", "singer", "rapper", "ceo of", "billionaire", "royal",
                    "influencer", "footballer", "my neighbor", "my neighbour", "my coworker",
                    "my ex", "my classmate", "my boss", "my teacher"],
    "deepfake": ["fake*", "forged", "forgery", "hoax", "leaked", "hidden camera", "realistic", "photorealistic",
                 "real photo", "evidence", "caught", "arrested", "scandal", "news photo", "mugshot"],
}

MINOR_TERMS = [
    "child*", "kid", "kids", "kiddie", "minor", "minors", "underage*", "under age", "teen", "teens", "teenage*",
    "preteen*", "tween*", "young girl*", "young boy*", "little girl*", "little boy*", "schoolgirl*",
    "schoolboy*", "school girl*", "school boy*", "toddler*", "infant*", "baby", "babies", "loli*", "shota*",
    "juvenile*", "pubescent", "prepubescent", "middle schooler*", "high schooler*", "elementary school",
    "junior high", "jailbait", "barely legal",
]
# Terms whose letters repeat on purpose: matched on the normal form, before squeezing.
_RAW = {"sexual": re.compile(r"\bx{3,}\b"), "hate": re.compile(r"\bk{3}\b|\b1488\b")}
_AGE = re.compile(r" (?:[1-9]|1[0-7]) ?(?:y ?o|yr|yrs|year|years)(?: old)? ")

ALLOW_PHRASES = [
    "breast cancer", "breast feeding", "breastfeeding", "chicken breast", "turkey breast", "breast stroke",
    "breaststroke", "naked mole rat", "naked eye", "naked cake", "naked flame", "naked truth", "kill the lights",
    "kill the engine", "killer whale", "killer whales", "killer heels", "kill time", "shot of espresso",
    "espresso shot", "flu shot", "vaccine shot", "photo shoot", "shooting star", "shooting stars",
    "shooting hoops", "shoot hoops", "water pistol", "water gun", "nerf gun", "glue gun", "squirt gun",
    "bubble gun", "heat gun", "staple gun", "toy gun", "bath bomb", "bomb pop", "photo bomb", "photobomb",
    "bombshell dress", "dead tree", "dead leaves", "dead end", "drop dead gorgeous", "day of the dead",
    "dead sea", "bloody mary", "blood orange", "blood moon", "blood type", "blood drive", "blood donation",
    "blood pressure", "blood test", "blood cell", "blood saver", "fight club", "pillow fight", "snowball fight",
    "food fight", "star war", "star wars", "tug of war", "war horse", "sex icon", "sex symbol icon",
    "sexes", "hate icon", "nude lipstick", "nude heels", "nude color", "nude colour", "nude tone",
    "nude palette", "nude pink", "first aid kit", "fake plant", "fake flowers", "fake fur", "fake tan",
    "fake eyelashes", "faux fur", "kid goat", "baby goat", "baby shark", "baby bottle", "baby shower",
    "baby blue", "baby carrot", "hack saw", "hacksaw", "life hack", "stripe*", "striped", "strip mall",
    "comic strip", "bacon strip", "landing strip", "strip steak", "pumpkin carving knife", "kitchen knife",
    "butter knife", "bread knife", "swiss army knife", "pocket knife", "steak knife", "die cut", "dice",
    # "in bed" is a weak sexual term; being ill, resting or reading in bed is not sexual.
    "sick in bed", "ill in bed", "in bed with a cold", "in bed with the flu", "in bed with a fever",
    "in bed with a cough", "in bed with a sore throat", "breakfast in bed", "reading in bed", "asleep in bed",
    "sleeping in bed", "tucked in bed", "tucked into bed", "resting in bed", "recovering in bed",
    # Prevention and awareness wording, and the food, sport and car senses of "suicide" (the classifier still
    # reads the whole prompt; only the rule match is cut).
    "suicide prevention", "suicide awareness", "suicide hotline", "suicide helpline", "suicide crisis line",
    "suicide crisis center", "suicide crisis centre", "suicide wing", "suicide sauce", "suicide squeeze",
    "suicide door", "overdose prevention", "overdose awareness", "dressed to kill", "bomb calorimeter",
    "bomb disposal", "bomb cyclone", "seed bomb", "cherry bomb pepper", "kill 9", "kill process",
]


@dataclass
class RuleHits:
    """Terms that matched, per category: strong ones fire alone, weak ones need the classifier."""

    strong: dict[str, list[str]] = field(default_factory=dict)
    weak: dict[str, list[str]] = field(default_factory=dict)
    minor: list[str] = field(default_factory=list)


def _term_pattern(term: str) -> str:
    prefix = term.endswith("*")
    words = squeeze(term.rstrip("*")).split()
    body = r" ?".join(re.escape(w) for w in words)     # "self harm" also matches "selfharm"
    return rf"(?<= ){body}" + (r"[a-z0-9]*(?= )" if prefix else r"s?(?= )")


@lru_cache(maxsize=None)
def _compiled(terms: tuple[str, ...]) -> list[tuple[str, re.Pattern]]:
    return [(t, re.compile(_term_pattern(t))) for t in terms]


@lru_cache(maxsize=1)
def _allow_pattern() -> re.Pattern:
    return re.compile("|".join(_term_pattern(p) for p in sorted(ALLOW_PHRASES, key=len, reverse=True)))


def _matches(terms: list[str], form: str) -> list[str]:
    return [t for t, pat in _compiled(tuple(terms)) if pat.search(form)]


def match_rules(prompt: str) -> RuleHits:
    """Match every category's strong and weak terms, and the minor terms, in the prompt's forms."""
    hits = RuleHits()
    allow = _allow_pattern()
    text = fold(prompt)
    for cat, pat in _RAW.items():
        m = pat.search(text)
        if m:
            hits.strong[cat] = [m.group(0)]
    for form in rule_forms(prompt):
        form = allow.sub(" ", form)
        form = re.sub(r" +", " ", form)
        if not form.startswith(" "):
            form = " " + form
        for cat, terms in STRONG.items():
            found = _matches(terms, form)
            if found:
                hits.strong.setdefault(cat, [])
                hits.strong[cat] += [t for t in found if t not in hits.strong[cat]]
        for cat, terms in WEAK.items():
            found = _matches(terms, form)
            if found:
                hits.weak.setdefault(cat, [])
                hits.weak[cat] += [t for t in found if t not in hits.weak[cat]]
        age = _AGE.search(form)
        minor = _matches(MINOR_TERMS, form) + ([age.group(0).strip()] if age else [])
        hits.minor += [t for t in minor if t not in hits.minor]
    return hits
