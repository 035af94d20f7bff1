"""The model families and the registry that maps ``model.family`` to each (one module per family).

Every family builds a ``SequenceNetwork``-shaped module from typed config and plugs into the shared
trainer, DataModule, objectives, scoring kernel and evaluator. Adding a family is adding its
module, a line here and its tests.
"""

from typing import Any

from lightning_modules.families.ease import EASE
from lightning_modules.families.item_cf import ItemCF
from lightning_modules.families.lru import LRUNetwork
from lightning_modules.families.neighbourhood import ClosedFormNetwork
from lightning_modules.families.recurrent import RecurrentNetwork
from lightning_modules.families.sasrec import SASRecNetwork
from lightning_modules.families.user_cf import UserCF
from lightning_modules.network import SequenceNetwork
from nightrec.config import FAMILIES as FAMILY_NAMES
from nightrec.errors import TooLargeError

FAMILIES: dict[str, type[SequenceNetwork] | type[ClosedFormNetwork]] = {
    "rnn": RecurrentNetwork,
    "lstm": RecurrentNetwork,
    "gru": RecurrentNetwork,
    "lru": LRUNetwork,
    "sasrec": SASRecNetwork,
    "item_cf": ItemCF,
    "user_cf": UserCF,
    "ease": EASE,
}


def family_class(family: str) -> type[SequenceNetwork]:
    if family not in FAMILIES:
        known = ", ".join(f for f in FAMILY_NAMES if f in FAMILIES)
        raise ValueError(f"unknown model family '{family}' (expected one of {known})")
    return FAMILIES[family]


def too_large(model_config: Any, n_items: int) -> str | None:
    """Why ``model_config.family`` refuses a catalogue of ``n_items`` (None: it does not)."""
    return getattr(family_class(model_config.family), "too_large", lambda *_: None)(model_config, n_items)


def normalise_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """An architecture dict in today's keys: checkpoints before model families named the recurrent cell ``cell``."""
    if "cell" in arch:
        arch = {("family" if k == "cell" else k): v for k, v in arch.items()}
    return arch


def build_network(model_config: Any, n_items: int, max_len: int = 50) -> SequenceNetwork:
    """A network of ``model_config.family`` from the ``model`` section of the run config.

    ``max_len`` is the longest input it will read (families with positions size them by it). A
    family that refuses the catalogue (``too_large``) raises ``TooLargeError`` saying why.
    """
    if model_config.family == "auto":
        raise ValueError("model.family=auto names no single family; lightning_modules.selection trains each candidate")
    if why := too_large(model_config, n_items):
        raise TooLargeError(why)
    return family_class(model_config.family).from_config(model_config, n_items, max_len)


def network_from_arch(arch: dict[str, Any]) -> SequenceNetwork:
    """The untrained network a checkpoint's ``hyper_parameters.arch`` describes."""
    arch = normalise_arch(arch)
    return family_class(arch["family"]).from_arch(arch)
