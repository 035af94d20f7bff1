"""The users a night is judged on: a fixed hash sample of the validation and test rows.

Ranking every user against the whole catalogue costs as much as a scoring pass, and training
does it after every epoch. ``train.eval_users`` caps it: at most that many users, chosen by a
fixed hash of their index, so every epoch, every model judged on the night (candidate, champion,
served popularity) and every DDP rank see the same users, and a night's numbers are repeatable.
"""

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # odd, so the product is a bijection of 64-bit integers


def eval_sample(users: np.ndarray, limit: int | None) -> np.ndarray:
    """Row positions, in their original order, of at most ``limit`` rows chosen by user hash."""
    users = np.asarray(users)
    if limit is None or len(users) <= limit:
        return np.arange(len(users))
    with np.errstate(over="ignore"):
        key = users.astype(np.uint64) * _GOLDEN  # wraps modulo 2**64: a fixed shuffle
    return np.sort(np.argsort(key, kind="stable")[:limit])
