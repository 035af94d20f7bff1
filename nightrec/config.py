"""One typed config for a run: the same model for the schedule, the Prefect UI form and the CLI.

Precedence, lowest to highest: defaults < config file (YAML or TOML) < environment variables
(``NIGHTREC_<KEY>``, nested keys joined by ``__``: ``NIGHTREC_MODEL__CELL=lstm``) < CLI flags.
"""

import json
import os
import re
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from nightrec.errors import ConfigError
from nightrec.layout import DUCKDB_FILE, run_dir
from nightrec.privacy.settings import PrivacyConfig
from nightrec.schema import ADD_TO_CART, CLICK, DEFAULT_EVENT_TYPES, PURCHASE, VIEW
from nightrec.timestamps import EARLIEST, LATEST, in_range

ENV_PREFIX = "NIGHTREC_"
ENV_CONFIG_FILE = "NIGHTREC_CONFIG"
# Variables for the test suite (e.g. NIGHTREC_TEST_POSTGRES_URL) are not config keys.
ENV_TEST_PREFIX = "NIGHTREC_TEST_"


def _split_csv(value: Any) -> Any:
    """A list setting may come as ``"a, b"`` (an environment variable or a flag)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], BeforeValidator(_split_csv)]


def _split_floats(value: Any) -> Any:
    """A list of numbers may come as one number or ``"0.5, 0.8"``."""
    if isinstance(value, int | float):
        return [value]
    return _split_csv(value)


# loss=auto switches to sampled softmax above this many items (benchmarks/bench_objectives.py).
SAMPLED_SOFTMAX_ABOVE = 5000
# Settings that hold a secret: masked in every message, and privacy.key is refused outside the
# environment and the Prefect Secret block.
SECRET_KEYS = {("publish", "postgres_url"), ("privacy", "key"), ("privacy", "previous_key")}
# The same as a pydantic ``exclude``: what a config written to a file or a parameter leaves out.
SECRETS = {"publish": {"postgres_url"}, "privacy": {"key", "previous_key"}}
SQL_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# Model families (``lightning_modules.families`` maps each to its module): recurrent (rnn, lstm,
# gru, lru), self-attention (sasrec) and closed-form collaborative filtering (item_cf, user_cf, ease).
FAMILIES = ("rnn", "lstm", "gru", "lru", "sasrec", "item_cf", "user_cf", "ease")
CLOSED_FORM_FAMILIES = ("item_cf", "user_cf", "ease")
Family = Literal["rnn", "lstm", "gru", "lru", "sasrec", "item_cf", "user_cf", "ease"]


class ModelConfig(_Section):
    """The next-item model (its family and sizes) and its training objective."""

    family: Family | Literal["auto"] = Field(
        "auto",
        description="Model family, or auto: train every family in `candidates` within the night's budget "
        "and serve the best on validation NDCG@10.",
    )
    candidates: Annotated[list[Family], BeforeValidator(_split_csv)] = Field(
        default_factory=lambda: ["item_cf", "lstm"],
        min_length=1,
        description="family=auto: the families tried, in this order, sharing the training budget.",
    )
    embedding_dim: int = Field(64, ge=1)
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="Dropout on the input item embeddings.")
    hidden_dropout: float = Field(0.3, ge=0.0, lt=1.0, description="Dropout on the recurrent output.")
    tie_weights: bool = Field(True, description="Score with the input item embeddings (else a separate table).")
    projection: bool | None = Field(
        True, description="Linear map from hidden state to item space; None: only where the sizes differ."
    )
    item_bias: bool = Field(False, description="Learn a per-item score offset (one extra state dimension).")
    history_bias: bool = Field(
        True, description="Learn one score offset for items already in the input history (repeat vs explore)."
    )
    item_attributes: bool = Field(
        False,
        description="Item embedding = id embedding + a learned linear projection of the item's hashed "
        "attribute vector; needs metadata.items_file. Closed-form families ignore it.",
    )
    attribute_features: int = Field(
        1024, ge=1, description="item_attributes: the width attribute tokens are hashed into."
    )
    loss: Literal["auto", "ce", "sampled_softmax"] = Field(
        "auto",
        description="Training objective: full softmax CE over every item, sampled softmax with logQ "
        "correction, or auto: CE up to sampled_softmax_above items, sampled softmax beyond.",
    )
    sampled_softmax_above: int = Field(
        SAMPLED_SOFTMAX_ABOVE, ge=1, description="loss=auto: catalogues larger than this train with sampled softmax."
    )
    label_smoothing: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Label smoothing of the loss: over the catalogue (ce) or the candidates (sampled).",
    )
    num_negatives: int = Field(1024, ge=1, description="Popularity-sampled negatives per batch (sampled_softmax).")
    teacher: Literal["none", "item_cf"] = Field(
        "none",
        description="Neural families: also learn item_cf's soft next items for every training prefix "
        "(knowledge distillation); each user's teacher is fitted on the other users.",
    )
    teacher_weight: float = Field(0.5, ge=0, lt=1, description="teacher: the soft targets' share of the loss.")
    teacher_top_k: int = Field(20, ge=1, description="teacher: soft targets kept per training position.")
    num_heads: int = Field(2, ge=1, description="sasrec: attention heads (hidden_size must divide by it).")
    neighbors: int = Field(200, ge=1, description="item_cf/user_cf: neighbours kept per item or per user.")
    shrinkage: float = Field(10.0, ge=0, description="item_cf/user_cf: similarity shrinkage (support / (support + s)).")
    recency_decay: float = Field(
        0.8, gt=0, le=1, description="item_cf/user_cf/ease: a history item k steps before the last weighs decay**k."
    )
    similarity_alpha: Annotated[list[Annotated[float, Field(ge=0, le=1)]], BeforeValidator(_split_floats)] = Field(
        default_factory=lambda: [0.5, 0.65, 0.8],
        min_length=1,
        description="item_cf: asymmetric cosine, co-readers / (|U_i|^a |U_j|^(1-a)) of a history item i and a "
        "candidate j (0.5 is the cosine; higher favours popular candidates). Several values: each is fitted and "
        "the best on validation NDCG@10 is kept, every retrain.",
    )
    sequential_weight: float = Field(
        2.0,
        ge=0,
        description="item_cf: weight of the order similarity (how often j followed i) beside the co-reader one; 0: off.",
    )
    sequential_window: int = Field(
        10, ge=1, description="item_cf: j follows i when it comes at most this many steps after."
    )
    sequential_decay: float = Field(
        0.8, gt=0, le=1, description="item_cf: a follower `gap` steps after counts decay**(gap - 1)."
    )
    ease_l2: float = Field(250.0, gt=0, description="ease: L2 regularisation of the item x item regression.")
    item_cf_max_items: int = Field(
        100_000,
        ge=1,
        description="item_cf: larger catalogues are refused (its fit compares every pair of items); "
        "family=auto then skips it.",
    )
    ease_max_items: int = Field(
        30_000, ge=1, description="ease: larger catalogues are refused (its dense item x item matrix is n^2 floats)."
    )

    @model_validator(mode="before")
    @classmethod
    def _cell_is_family(cls, data: Any) -> Any:
        # `model.cell` (rnn/lstm/gru) named the family before there were others; old configs keep working.
        if isinstance(data, dict) and "cell" in data:
            data = dict(data)
            cell = data.pop("cell")
            data.setdefault("family", cell)
        return data

    def objective(self, n_items: int) -> tuple[str, str]:
        """``(loss, why)``: the objective training uses for a catalogue of ``n_items``."""
        if self.loss != "auto":
            return self.loss, f"model.loss={self.loss}"
        if n_items > self.sampled_softmax_above:
            return "sampled_softmax", f"auto: {n_items:,} items > {self.sampled_softmax_above:,}"
        return "ce", f"auto: {n_items:,} items <= {self.sampled_softmax_above:,}"


class SequenceConfig(_Section):
    """Turning clean events into per-user item sequences (``nightrec.sequences.build``)."""

    max_len: int = Field(50, ge=2, description="History length kept for evaluation and scoring inputs.")
    session_timeout_minutes: float = Field(30.0, gt=0, description="A longer gap starts a new session.")
    min_item_count: int = Field(1, ge=1, description="Items seen fewer times are mapped out (new items only).")
    split: Literal["leave_last_out", "temporal"] = "leave_last_out"
    temporal_cutoff: datetime | None = Field(
        None, description="Temporal split: the test cut-off T (UTC); default the latest event minus one window."
    )
    temporal_window_days: float = Field(
        1.0, gt=0, description="Temporal split: validation covers [T - window, T); training is before T - window."
    )
    collapse_repeats: bool = Field(True, description="Drop an event whose item repeats the user's previous item.")
    dedupe: bool = Field(True, description="Drop exact duplicate events (same user, item, type and time).")
    event_types: CsvList | None = Field(None, description="Build sequences from these event types only.")
    event_weights: dict[str, float] | None = Field(
        None, description="Per-type weight of each training position, written as train.parquet 'weights'."
    )

    @field_validator("temporal_cutoff")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A naive cut-off means UTC, like every timestamp in the event contract.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class TrainConfig(_Section):
    """Optimisation and hardware; accelerator/devices/num_nodes/strategy/precision are passed to Lightning.

    ``precision="auto"`` means ``bf16-mixed`` on a GPU and ``32-true`` on CPU; ``devices="auto"``
    takes every visible GPU (with DDP when there are several) or one CPU process.
    """

    epochs: int = Field(100, ge=1, description="Upper bound; early stopping usually ends sooner.")
    max_minutes: float | None = Field(
        20.0,
        gt=0,
        description="Training time budget (Lightning max_time): training stops there and the best "
        "checkpoint so far is published. None: no budget (orchestration.train_timeout_minutes still kills).",
    )
    warm_start_max_minutes: float | None = Field(
        6.0,
        gt=0,
        description="Time budget of a warm-started night, in place of max_minutes: it starts near its "
        "optimum, so a few epochs do. None: max_minutes.",
    )
    eval_users: int | None = Field(
        20_000,
        ge=1,
        description="Validation and test rank at most this many users, a fixed hash sample (the same every "
        "epoch and for every model judged on the night). None: every user.",
    )
    patience: int = Field(20, ge=1, description="Epochs without a better validation NDCG@10 before stopping.")
    warm_start_patience: int = Field(
        3, ge=1, description="Patience of a warm-started night: it starts near its optimum and needs few epochs."
    )
    batch_size: int = Field(64, ge=1, description="Training windows per batch (at full window length).")
    bucket_by_length: bool = Field(
        True,
        description="Batch windows of similar length, batch_size x window length positions per batch, "
        "each cut to its longest window: cost follows real positions, not padding.",
    )
    eval_batch_size: int = Field(1024, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)
    lr_schedule: Literal["none", "cosine"] = "none"
    ema_decay: float | None = Field(
        0.99, gt=0, lt=1, description="Evaluate and publish a moving average of the weights (e.g. 0.99)."
    )
    refit: bool = Field(
        True,
        description="Before scoring, refit the served model on every known transition (each user's validation "
        "and test targets too) with what is left of the training budget; the gate, the reported metrics and the "
        "next warm start keep the validated weights.",
    )
    refit_epochs: int = Field(1, ge=1, description="Epochs of a neural family's refit (fine-tune).")
    refit_lr_scale: float = Field(0.1, gt=0, le=1, description="A neural refit's learning rate as a share of train.lr.")
    window_len: int | None = Field(
        None, ge=1, description="Items of context in a training window; None: sequences.max_len."
    )
    window_stride: int | None = Field(
        None, ge=1, description="Step between training windows; None: window_len (each target trained once)."
    )
    reversed_copies: bool = Field(
        False,
        description="Also train on every training sequence read backwards: short histories then teach "
        "which items go together in either order.",
    )
    seed: int = 42
    accelerator: Literal["cpu", "gpu", "cuda", "auto"] = "auto"
    devices: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    num_nodes: int = Field(
        1,
        ge=1,
        description="Machines training together (Lightning num_nodes); above 1 the trainer is launched by "
        "torchrun on each of them (infra/k8s-train-job.yaml), with train.devices processes per machine.",
    )
    strategy: str = "auto"
    precision: str = "auto"
    num_threads: int | None = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)


class PopularityConfig(_Section):
    """The popularity fallback and who gets it: a trailing window with exponential time decay."""

    window_days: int = Field(14, ge=1)
    half_life_days: float = Field(7.0, gt=0)
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {VIEW: 1.0, CLICK: 2.0, ADD_TO_CART: 4.0, PURCHASE: 8.0}
    )
    min_history: int = Field(1, ge=1, description="Users with fewer events get the fallback, not the model.")
    users_file: Path | None = Field(
        None, description="Optional user table (Parquet or CSV with user_id): these users get a list too."
    )
    segment_column: str | None = Field(
        None, description="A categorical column of the user table (e.g. country) for per-segment popularity."
    )
    min_segment_users: int = Field(20, ge=1, description="Segments with fewer users fall back to the global list.")


class MetadataConfig(_Section):
    """Optional item attributes (``nightrec.metadata``): content-based lists, new items, hybrid embeddings.

    The item table is Parquet, CSV or a RecBole ``.item`` file with ``item_id`` and attribute
    columns. Numeric columns become quantile buckets, list columns (Parquet lists, RecBole
    ``token_seq``, or CSV text split on ``list_separator``) one token per element, text columns
    words; every other column is categorical. The user table is ``popularity.users_file``.
    """

    items_file: Path | None = Field(
        None, description="Item table (Parquet, CSV or RecBole .item) with item_id and attribute columns."
    )
    item_columns: CsvList | None = Field(None, description="Attribute columns used; None: every column but item_id.")
    text_columns: CsvList = Field(default_factory=list, description="Columns of free text, split into words.")
    list_columns: CsvList = Field(
        default_factory=list, description="CSV/Parquet text columns holding lists, split on list_separator."
    )
    list_separator: str = Field("|", min_length=1)
    numeric_bins: int = Field(10, ge=2, description="Quantile buckets a numeric attribute is cut into.")
    recency_decay: float = Field(
        0.8, gt=0, le=1, description="Content profile: a history item k steps before the last weighs decay**k."
    )
    content_weight: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="A cold user's content list ranks by the popularity of their segment (log-scaled, best item 1) "
        "plus this x the cosine of the item with their profile. auto: chosen each night on the night's own users "
        "(up to 2,000 with three or more items: their first two as a cold history, the third the target).",
    )


class RecommendConfig(_Section):
    """What tonight's lists mix in beyond the model: new items (the exploration knob)."""

    new_item_slots: int = Field(
        0,
        ge=0,
        description="Reserve up to N positions at the end of each list for items first seen in the last "
        "new_item_days days, chosen by the content score for the user (needs metadata.items_file); 0: off.",
    )
    new_item_days: float = Field(
        7.0, gt=0, description="An item whose first event is this recent (or that has none yet) is new."
    )


class ValidationConfig(_Section):
    """The checks applied before anything trains on the events (``expectations/``).

    Row-level rules quarantine every offending row and warn; a rule turns into an error when
    its share of rows exceeds ``max_bad_ratio`` (or its entry in ``rule_max_ratio``). Night-level
    checks never quarantine; their severity is in ``severity`` (``error`` or ``warn``).
    """

    clock_skew_minutes: int = Field(10, ge=0, description="Tolerated clock skew past the run's end.")
    retention_days: int | None = Field(3650, ge=1, description="Events older than this are quarantined.")
    max_bad_ratio: float = Field(
        0.05, ge=0.0, le=1.0, description="Share of rows a rule may flag before it is an error."
    )
    rule_max_ratio: dict[str, float] = Field(
        default_factory=lambda: {"duplicate": 0.10, "bot_user": 0.20},
        description="Per-rule overrides of max_bad_ratio.",
    )
    bot_events_per_minute: int = Field(60, ge=1, description="A user above this in any minute is a bot.")
    bot_events_per_day: int = Field(5000, ge=1, description="A user above this in any day is a bot.")
    min_user_events: int = Field(2, ge=1, description="Tonight's users with fewer events in all are cold.")
    min_item_events: int = Field(5, ge=1, description="Tonight's items with fewer events in all are rare.")
    max_cold_user_ratio: float = Field(0.8, ge=0.0, le=1.0)
    max_rare_item_ratio: float = Field(0.8, ge=0.0, le=1.0)
    min_density: float = Field(1e-7, ge=0.0, description="Events / (users x items) over the clean input.")
    volume_nights: int = Field(7, ge=1, description="Nights in the trailing median of the row count.")
    volume_min_history: int = Field(3, ge=1, description="Nights needed before the volume check judges.")
    volume_min_ratio: float = Field(0.2, ge=0.0, description="Tonight / trailing median below this: collapse.")
    volume_max_ratio: float = Field(5.0, gt=0.0, description="Tonight / trailing median above this: explosion.")
    severity: dict[str, Literal["error", "warn"]] = Field(
        default_factory=dict, description="Severity overrides for night-level checks, by expectation name."
    )


class PublishConfig(_Section):
    """Where the nightly table goes; Parquet and DuckDB under the data directory by default."""

    parquet: bool = True
    duckdb: bool = True
    postgres_url: SecretStr | None = None
    postgres_schema: str = "public"
    postgres_table: str = "recommendations"
    retention_days: int = Field(30, ge=1, description="How many run dates are kept; older ones are deleted.")

    @field_validator("postgres_schema", "postgres_table")
    @classmethod
    def _sql_identifier(cls, value: str) -> str:
        # Names are spliced into DDL; only plain identifiers are allowed, never quoting tricks.
        if not SQL_IDENTIFIER.fullmatch(value):
            raise ValueError("must be a plain SQL identifier: a letter or _, then letters, digits or _ (max 63)")
        return value


class OrchestrationConfig(_Section):
    """The schedule, retraining and model promotion (Prefect deployments read this)."""

    cron: str = Field("0 2 * * *", description="When the nightly deployment runs, in `timezone`.")
    timezone: str = Field("UTC", description="IANA time zone of the nightly schedule, e.g. Europe/Berlin.")
    late_run_max_age_hours: float = Field(24.0, gt=0, description="Scheduled runs later than this are cancelled.")
    retrain_every_days: int = Field(1, ge=1, description="Warm-start a new model every N nights; reuse it between.")
    promotion_tolerance: float = Field(0.0, ge=0, description="Allowed drop in validation NDCG@10 vs the champion.")
    train_timeout_minutes: float = Field(180.0, gt=0)
    refresh_enabled: bool = Field(
        False, description="Whether the `refresh` deployment's interval schedule is active (`nightrec serve`)."
    )
    refresh_every_minutes: float = Field(
        30.0, gt=0, description="Interval of the `refresh` deployment: re-score the users active since the last run."
    )
    artifact_retention_runs: int = Field(
        30,
        ge=1,
        description="Prefect artifacts (report, figures, metrics, progress) of the last N runs of each flow on the "
        "server are kept; a run that publishes deletes those of older runs.",
    )
    shards: int = Field(
        1,
        ge=1,
        description="Parts the night's events are split into by a stable hash of user_id; validation rules, "
        "scoring and the table's staging files run once per part (1: one process, no parts).",
    )
    executor: Literal["local", "dask"] = Field(
        "local",
        description="Where the per-shard tasks run: `local` (threads of the flow's process) or `dask` (a Dask "
        "cluster through prefect-dask's DaskTaskRunner).",
    )
    dask_address: str | None = Field(
        None,
        description="Scheduler of an existing Dask cluster (e.g. tcp://dask-scheduler:8786); unset: a temporary "
        "local cluster of `dask_workers` processes for the run.",
    )
    dask_workers: int = Field(2, ge=1, description="Worker processes of the temporary local Dask cluster.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class DriftBands(_Section):
    """How far the last day may move from the trailing baseline before the report flags drift.

    Volumes and conversion are relative changes against the trailing mean (0.3 = ±30%); the item
    popularity band is a Jensen-Shannon distance (base 2, 0 = identical, 1 = disjoint).
    """

    events: float = Field(0.5, gt=0)
    active_users: float = Field(0.3, gt=0)
    conversion: float = Field(0.3, gt=0)
    popularity_js: float = Field(0.15, gt=0, le=1)


class BehaviorConfig(_Section):
    """The behaviour report: funnel, sessions, activity, long tail, transitions and drift."""

    funnel_steps: CsvList | None = Field(None, description="Funnel order; defaults to event_types.")
    session_timeout_minutes: float | None = Field(
        None, gt=0, description="Inactivity gap for events without session_id; defaults to sequences'."
    )
    churn_inactive_days: int = Field(14, ge=1, description="Users silent this long are churn candidates.")
    top_transitions: int = Field(20, ge=1)
    baseline_days: int = Field(28, ge=1, description="Trailing days the last day is compared with.")
    min_history_days: int = Field(3, ge=1, description="Fewer prior days than this: no drift verdict.")
    drift_bands: DriftBands = Field(default_factory=DriftBands)


class NightrecConfig(_Section):
    """Everything one nightly run needs."""

    data_dir: Path = Path("nightrec-data")
    events: str | None = Field(None, description="Input events: a file, a folder or a glob.")
    format: str = Field("auto", description="Input format; 'auto' detects it from the file names.")
    run_date: date | None = Field(None, description="Defaults to the day after the latest event.")
    k: int = Field(20, ge=1, le=1000)
    event_types: CsvList = Field(default_factory=lambda: list(DEFAULT_EVENT_TYPES), min_length=1)
    sequences: SequenceConfig = Field(default_factory=SequenceConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    popularity: PopularityConfig = Field(default_factory=PopularityConfig)
    metadata: MetadataConfig = Field(default_factory=MetadataConfig)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    behavior: BehaviorConfig = Field(default_factory=BehaviorConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    @model_validator(mode="after")
    def _new_item_slots_below_k(self) -> "NightrecConfig":
        if self.recommend.new_item_slots >= self.k:
            raise ValueError(f"recommend.new_item_slots ({self.recommend.new_item_slots}) must be below k ({self.k})")
        return self

    @field_validator("run_date")
    @classmethod
    def _run_date_in_range(cls, value: date | None) -> date | None:
        if value is not None and not in_range(value):
            raise ValueError(f"{value} is outside the supported {EARLIEST:%Y-%m-%d}..{LATEST:%Y-%m-%d}")
        return value

    def metadata_problem(self) -> str | None:
        """What needs ``metadata.items_file`` and lacks it (None: nothing). Checked before a run
        starts (``flows.preflight``), not when the config is read: ``nightrec recommend`` and the
        other commands read the same environment without the run's ``--items-file``."""
        families = self.model.candidates if self.model.family == "auto" else [self.model.family]
        neural = any(f not in CLOSED_FORM_FAMILIES for f in families)
        if self.metadata.items_file is not None:
            return None
        if self.model.item_attributes and neural:
            return "model.item_attributes needs metadata.items_file: set the item attribute table or turn it off"
        if self.recommend.new_item_slots:
            return "recommend.new_item_slots chooses new items by their attributes: set metadata.items_file"
        return None

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / DUCKDB_FILE

    def run_dir(self, run_date: date) -> Path:
        return run_dir(self.data_dir, run_date)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML config file into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Collect ``NIGHTREC_*`` variables into a nested dict (``A__B`` -> ``{"a": {"b": ...}}``)."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_FILE or name.startswith(ENV_TEST_PREFIX):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if keys[0] not in NightrecConfig.model_fields:
            # the environment is shared: NIGHTREC_HOME and the like belong to someone else
            continue
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return out


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# pydantic names the member of a union that failed in the error's location ("float",
# "literal['auto']", "constrained-int"): not a key a user can set.
_UNION_TAG = re.compile(r"(int|float|str|bool|constrained-\w+|literal\[.*\]|function-\w+\[.*\])")


def _describe(error: ValidationError) -> str:
    lines = []
    for err in error.errors():
        if not err["loc"]:  # a rule across settings names them in its message
            lines.append(err["msg"].removeprefix("Value error, "))
            continue
        loc = [part for part in err["loc"] if not _UNION_TAG.fullmatch(str(part))]
        key = ".".join(str(part) for part in loc)
        env = ENV_PREFIX + "__".join(str(part) for part in loc).upper()
        secret = tuple(str(part) for part in err["loc"][:2]) in SECRET_KEYS
        got = "" if isinstance(err["input"], dict) else f" (got {'**********' if secret else repr(err['input'])})"
        lines.append(f"{key}: {err['msg']}{got} [flag, file key '{key}' or {env}]")
    return "invalid configuration: " + "; ".join(lines)


def _refuse_key(data: dict[str, Any], where: str) -> None:
    privacy = data.get("privacy")
    for name in ("key", "previous_key"):
        if isinstance(privacy, dict) and privacy.get(name) is not None:
            raise ConfigError(
                f"{where} may not set privacy.{name}: set NIGHTREC_PRIVACY__{name.upper()} "
                "(or name a Prefect Secret block in privacy.key_block)"
            )


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> NightrecConfig:
    """Build the run config from a file, the environment and explicit overrides (CLI flags).

    ``None`` values in ``overrides`` mean "flag not given" and are ignored.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_CONFIG_FILE)
    data = read_config_file(path) if path else {}
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    _refuse_key(data, f"{path}: a config file")
    _refuse_key(flags, "a flag")
    data = _merge(data, env_overrides(environ))
    data = _merge(data, flags)
    try:
        return NightrecConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
