"""Model folders: loading a trained network from its folder alone, and warm-starting a new one.

A model folder holds ``model.ckpt`` (best weights plus the architecture under
``hyper_parameters.arch``), ``served.ckpt`` (the same refitted for scoring, see ``refit``),
``last.ckpt``, ``config.json``, ``items.parquet`` and ``metrics.json``.
"""

from pathlib import Path
from typing import Any

import polars as pl
import torch

from lightning_modules.attributes import ROW_BUFFERS
from lightning_modules.families import network_from_arch, normalise_arch
from lightning_modules.network import SequenceNetwork
from nightrec.errors import InputError
from nightrec.layout import BEST_CKPT, ITEMS_FILE, SERVED_CKPT
from nightrec.schema import ITEM_IDX

# Architecture settings that leave the weights' shape and meaning alone; a checkpoint must agree
# on every other one to be reused.
NOT_WEIGHTS = ("n_items", "dropout", "hidden_dropout")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint as a dict, with a clear error when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise InputError(f"{path}: not a readable checkpoint: {str(exc).splitlines()[0]}") from None
    if "arch" not in ckpt.get("hyper_parameters", {}):
        raise InputError(f"{path}: not a nightrec checkpoint (no hyper_parameters.arch)")
    return ckpt


def network_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The evaluated weights, ``network.`` in ``state_dict`` (with weight averaging, Lightning
    saves the average there). Checkpoints written before that kept the average under ``ema.``."""
    prefix = "ema." if any(k.startswith("ema.") for k in ckpt["state_dict"]) else "network."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def check_compatible(path: Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Raise an ``InputError`` naming each architecture setting where checkpoint and config differ."""
    saved, wanted = normalise_arch(saved), normalise_arch(wanted)
    keys = ["family", *sorted((saved.keys() | wanted.keys()) - {"family", *NOT_WEIGHTS})]
    diffs = [
        f"{key}={saved.get(key, False)!r} (config asks for {wanted.get(key, False)!r})"
        for key in keys
        if saved.get(key, False) != wanted.get(key, False)
    ]
    if diffs:
        raise InputError(f"{path}: checkpoint from an incompatible config: {'; '.join(diffs)}")


def load_model(model_dir: Path, served: bool = False) -> tuple[SequenceNetwork, pl.DataFrame]:
    """``(network in eval mode on CPU, items vocabulary)`` from a model folder; needs nothing else.

    The validated weights (``model.ckpt``), or with ``served`` the ones that score: ``served.ckpt``,
    refitted on every known transition (``lightning_modules.refit``), where the folder has one.
    """
    model_dir = Path(model_dir)
    weights = model_dir / SERVED_CKPT if served and (model_dir / SERVED_CKPT).is_file() else model_dir / BEST_CKPT
    ckpt = read_checkpoint(weights)
    items_path = model_dir / ITEMS_FILE
    if not items_path.is_file():
        raise InputError(f"{items_path}: the model folder has no vocabulary")
    items = pl.read_parquet(items_path).sort(ITEM_IDX)
    network = network_from_arch(ckpt["hyper_parameters"]["arch"])
    network.load_state_dict(network_state(ckpt))
    if items.height != network.n_items:
        raise InputError(f"{items_path}: {items.height} items but the checkpoint scores {network.n_items}")
    return network.eval(), items


def warm_start(network: SequenceNetwork, items: pl.DataFrame, previous_dir: Path) -> dict[str, int]:
    """Copy a previous model's weights into ``network`` (built for vocabulary ``items``) in place.

    Items known to the previous model keep their trained embedding rows (matched by external id,
    wherever their new ``item_idx`` is); new items keep their fresh initialisation. Every other
    weight is copied as is. Returns ``{"kept_items": ..., "new_items": ...}``.

    With ``item_attributes`` the attribute rows stay tonight's (set on ``network`` before this
    call: an item's attributes may have changed, and new items need theirs), and new items' id
    rows start at zero: their embedding is then exactly the trained projection of their
    attributes, which places them among similar known items from the first step, where a random
    id row as large as a trained one would drown that signal until the item gathers interactions.
    """
    previous_dir = Path(previous_dir)
    ckpt = read_checkpoint(previous_dir / BEST_CKPT)
    check_compatible(previous_dir / BEST_CKPT, ckpt["hyper_parameters"]["arch"], network.arch)
    old_items = pl.read_parquet(previous_dir / ITEMS_FILE).select("item_id", pl.col(ITEM_IDX).alias("old_idx"))
    pairs = items.select("item_id", ITEM_IDX).join(old_items, on="item_id", how="inner")
    new_idx = torch.from_numpy(pairs.get_column(ITEM_IDX).to_numpy().astype("int64"))
    old_idx = torch.from_numpy(pairs.get_column("old_idx").to_numpy().astype("int64"))
    state = network_state(ckpt)
    own = network.state_dict()
    tonight = {f"attributes.{name}" for name in ROW_BUFFERS}
    with torch.no_grad():
        for name, value in state.items():
            if name in tonight:
                continue
            if name.endswith("embedding.weight") or name == "bias":
                if network.attributes is not None and name != "bias":
                    own[name][1:] = 0.0
                own[name][new_idx] = value[old_idx]
            else:
                own[name].copy_(value)
    network.load_state_dict(own)
    return {"kept_items": len(pairs), "new_items": items.height - len(pairs)}
