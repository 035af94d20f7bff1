"""The synthetic catalogue: each item's category, brand and title words, its popularity and
successors, and which items are new or have no events yet.

Categories carry a signal content-based models can use: an item's successors mostly share its
category (so sessions stay within one), and a title's words come mostly from its category's
vocabulary, after the brand's name. Items with events come first (index = the number in the id),
the catalogue-only ones after them.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl

from nightrec.ingest.synthetic_spec import SyntheticSpec
from nightrec.schema import ITEM_ID

CATEGORY, BRAND, TITLE = "category", "brand", "title"
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "running": ("trail", "running", "shoe", "sneaker", "cushioned", "marathon", "racing", "sock"),
    "hiking": ("hiking", "boot", "backpack", "waterproof", "trekking", "pole", "jacket", "summit"),
    "cycling": ("bike", "helmet", "saddle", "pedal", "cycling", "jersey", "gravel", "tyre"),
    "camping": ("tent", "sleeping", "bag", "stove", "lantern", "camping", "hammock", "cooler"),
    "fitness": ("yoga", "mat", "dumbbell", "kettlebell", "resistance", "band", "fitness", "bench"),
    "kitchen": ("chef", "knife", "skillet", "nonstick", "pan", "cutting", "board", "saucepan"),
    "coffee": ("espresso", "coffee", "grinder", "burr", "kettle", "pourover", "mug", "beans"),
    "audio": ("wireless", "headphones", "earbuds", "speaker", "bluetooth", "noise", "cancelling", "soundbar"),
    "gaming": ("gaming", "controller", "keyboard", "mouse", "headset", "console", "mechanical", "rgb"),
    "office": ("desk", "chair", "ergonomic", "stand", "notebook", "pen", "organizer", "stapler"),
    "garden": ("garden", "hose", "pruning", "shears", "planter", "seeds", "watering", "trowel"),
    "pets": ("dog", "cat", "leash", "collar", "litter", "treats", "chew", "kennel"),
    "baby": ("baby", "stroller", "diaper", "bottle", "crib", "swaddle", "teether", "bib"),
    "beauty": ("moisturizer", "serum", "face", "cream", "shampoo", "conditioner", "lipstick", "sunscreen"),
    "lighting": ("led", "lamp", "bulb", "dimmable", "ceiling", "light", "strip", "lantern"),
    "tools": ("cordless", "drill", "screwdriver", "wrench", "socket", "set", "hammer", "toolbox"),
}
GENERAL_WORDS = ("pro", "classic", "mini", "plus", "eco", "deluxe", "compact", "premium")
GENERAL_WORD_RATE = 0.1  # "mostly" from the category's vocabulary: some words say nothing about it
BRAND_SYLLABLES = ("ka", "lo", "mi", "ro", "ven", "tor", "zu", "bel", "dax", "nor", "pix", "sol")
CATALOGUE_STREAM = 7  # the catalogue's random stream, apart from the events' (seed) and the faults' (seed + 1)


def item_id(index: pl.Expr) -> pl.Expr:
    """``i00042`` from the item's index."""
    return pl.format("i{}", index.cast(pl.String).str.zfill(5))


@dataclass(frozen=True)
class ItemSampler:
    """Draws items with events by popularity, from the whole catalogue or from a given category."""

    cdf: np.ndarray  # cumulative popularity, item order
    order: np.ndarray  # item indices sorted by category
    category_cdf: np.ndarray  # per position of ``order``: category + cumulative share within it
    category_share: np.ndarray  # each category's share of the popularity

    @classmethod
    def build(cls, popularity: np.ndarray, category: np.ndarray, categories: int) -> "ItemSampler":
        """``category`` must name every category in ``range(categories)`` at least once."""
        order = np.argsort(category, kind="stable")
        cats = category[order]
        cum = np.cumsum(popularity[order])
        starts = np.searchsorted(cats, np.arange(categories))
        before = np.where(starts > 0, cum[starts - 1], 0.0)
        within = cum - before[cats]
        totals = within[np.searchsorted(cats, np.arange(categories), side="right") - 1]
        # each category spans (c, c + 1] exactly, so one search finds an item of the drawn category
        return cls(np.cumsum(popularity), order, cats + within / totals[cats], totals / totals.sum())

    def anywhere(self, rng: np.random.Generator, size: int) -> np.ndarray:
        picks = np.searchsorted(self.cdf, rng.random(size) * self.cdf[-1], side="right")
        return np.minimum(picks, self.cdf.size - 1)

    def within(self, rng: np.random.Generator, categories: np.ndarray) -> np.ndarray:
        return self.order[np.searchsorted(self.category_cdf, categories + rng.random(categories.size), side="right")]


@dataclass(frozen=True)
class Catalogue:
    """The item side of a synthetic log; per-item arrays over the items with events, except
    ``category``, ``brand`` and ``words``, which also cover the catalogue-only items after them."""

    categories: int
    category: np.ndarray
    brand: np.ndarray
    words: np.ndarray  # (items, title words)
    sampler: ItemSampler
    successors: np.ndarray  # (items with events, spec.successors)
    new: np.ndarray  # bool: events only in the last days
    stand_in: np.ndarray  # what a session showed before a new item's launch (itself for the others)


def _popularity(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def _successors(rng: np.random.Generator, spec: SyntheticSpec, sampler: ItemSampler, category: np.ndarray):
    shape = (spec.items, spec.successors)
    own = sampler.within(rng, np.repeat(category, spec.successors)).reshape(shape)
    anywhere = sampler.anywhere(rng, spec.items * spec.successors).reshape(shape)
    return np.where(rng.random(shape) < spec.same_category, own, anywhere)


def _new_items(rng: np.random.Generator, count: int, popularity: np.ndarray) -> np.ndarray:
    # new products come from the more popular half, so a launch a day or two old has been seen
    candidates = np.flatnonzero(popularity >= np.median(popularity))
    new = np.zeros(popularity.size, dtype=bool)
    new[rng.choice(candidates, size=min(count, candidates.size), replace=False)] = True
    return new


def _stand_ins(popularity: np.ndarray, category: np.ndarray, new: np.ndarray, categories: int) -> np.ndarray:
    """Each new item's stand-in: the most popular older item of its category (of all, if it has none)."""
    old_popularity = np.where(new, -1.0, popularity)
    order = np.lexsort((-old_popularity, category))
    best = order[np.searchsorted(category[order], np.arange(categories))]
    best = np.where(new[best], np.argmax(old_popularity), best)
    stand_in = np.arange(popularity.size)
    stand_in[new] = best[category[new]]
    return stand_in


def _brand_name(index: int) -> str:
    syllables, rest = [], index + len(BRAND_SYLLABLES)  # base-12 digits: two syllables at least, all distinct
    while rest:
        rest, digit = divmod(rest, len(BRAND_SYLLABLES))
        syllables.append(BRAND_SYLLABLES[digit])
    return "".join(syllables).capitalize()


def _title_words(rng: np.random.Generator, spec: SyntheticSpec, category: np.ndarray) -> np.ndarray:
    vocabulary = np.array(list(CATEGORY_WORDS.values()))
    k = min(spec.title_words, vocabulary.shape[1])
    picks = rng.random((category.size, vocabulary.shape[1])).argsort(axis=1)[:, :k]  # k distinct words
    words = vocabulary[category[:, None], picks]
    general = np.array(GENERAL_WORDS)[rng.integers(0, len(GENERAL_WORDS), size=words.shape)]
    return np.where(rng.random(words.shape) < GENERAL_WORD_RATE, general, words)


def build_catalogue(spec: SyntheticSpec) -> Catalogue:
    """The catalogue of ``spec``, deterministic by ``spec.seed``."""
    categories = min(spec.categories, spec.items)
    if categories > len(CATEGORY_WORDS):
        raise ValueError(f"at most {len(CATEGORY_WORDS)} categories (asked for {spec.categories})")
    rng = np.random.default_rng([spec.seed, CATALOGUE_STREAM])
    # every category holds items with events, so a draw within any category finds one
    with_events = rng.permutation(np.arange(spec.items) % categories)
    category = np.concatenate([with_events, rng.integers(0, categories, size=spec.catalogue_only_count)])
    popularity = _popularity(rng, spec.items, spec.zipf_exponent)
    sampler = ItemSampler.build(popularity, with_events, categories)
    new = _new_items(rng, spec.new_item_count, popularity)
    brands = np.array([_brand_name(i) for i in range(categories * spec.brands_per_category)])
    return Catalogue(
        categories=categories,
        category=category,
        brand=brands[category * spec.brands_per_category + rng.integers(0, spec.brands_per_category, category.size)],
        words=_title_words(rng, spec, category),
        sampler=sampler,
        successors=_successors(rng, spec, sampler, with_events),
        new=new,
        stand_in=_stand_ins(popularity, with_events, new, categories),
    )


def item_table(catalogue: Catalogue) -> pl.DataFrame:
    """``item_id``, ``category``, ``brand`` and ``title``: a list of words, the brand's first."""
    words = {f"w{j}": catalogue.words[:, j] for j in range(catalogue.words.shape[1])}
    frame = pl.DataFrame(
        {"i": np.arange(catalogue.category.size), CATEGORY: np.array(list(CATEGORY_WORDS))[catalogue.category]}
        | {BRAND: catalogue.brand}
        | words
    )
    title = pl.concat_list(pl.col(BRAND).str.to_lowercase(), *words)
    return frame.select(item_id(pl.col("i")).alias(ITEM_ID), CATEGORY, BRAND, title.alias(TITLE))


def generate_items(spec: SyntheticSpec) -> pl.DataFrame:
    """The item table of ``spec``: every item with events, then the catalogue-only ones."""
    return item_table(build_catalogue(spec))
