"""What the synthetic generator makes: the size and shape of the log, the catalogue, the faults."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class FaultSpec:
    """How many rows of each fault to inject; every count is exact in the output."""

    null_user_id: int = 25
    null_item_id: int = 25
    null_event_type: int = 25
    null_timestamp: int = 25
    unknown_event_type: int = 40
    future_timestamp: int = 30
    duplicate: int = 50
    bot_burst: int = 300


@dataclass(frozen=True)
class SyntheticSpec:
    """A synthetic log: ``items`` items have events; ``catalogue_only`` of that count more are only
    in the item table. ``new_items`` (a share of ``items``) have events only in the last
    ``new_item_days`` days. Shares of ``items`` are rounded to whole items."""

    users: int = 1000
    items: int = 500
    days: int = 7
    seed: int = 0
    end_date: date = field(default_factory=lambda: datetime.now(UTC).date() - timedelta(days=1))
    zipf_exponent: float = 1.1
    successors: int = 3
    follow_probability: float = 0.75
    mean_session_length: float = 5.0
    mean_dwell_seconds: float = 45.0
    click_rate: float = 0.3
    cart_rate: float = 0.25
    purchase_rate: float = 0.4
    categories: int = 16
    brands_per_category: int = 4
    title_words: int = 3
    same_category: float = 0.9  # an item's successor is drawn from its own category this often
    preferred_categories: int = 3
    category_preference: float = 0.8  # a session's first item and its jumps come from a preferred category
    new_items: float = 0.03
    new_item_days: int = 2
    catalogue_only: float = 0.01

    @property
    def new_item_count(self) -> int:
        return round(self.new_items * self.items)

    @property
    def catalogue_only_count(self) -> int:
        return round(self.catalogue_only * self.items)
