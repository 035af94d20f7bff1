"""Every file name under ``<data_dir>``: a night's working files (``runs/<date>/``) and the model
versions (``models/<version>/``). Stages, flows, models and tests import these names; none spells
a file name of its own.

```
<data_dir>/
  nightrec.duckdb                       the published table (see nightrec.publish)
  .nightrec.lock                        held by the run using the directory (see nightrec.lock)
  forget-log.jsonl                      forget requests: pseudonym, key id and time (nightrec.privacy)
  recommendations/run_date=<date>/      its Parquet partitions
  recommendations_refresh/run_date=<date>/
                                        refresh-<UTC time>.parquet: the day's intra-day refreshes
  runs/<date>/
    events.parquet                      ingest: the source in the event contract
    clean.parquet, quarantine.parquet   validate
    validation.json
    behavior/                           report.html, behavior.json, churn_candidates.parquet, figures/
    sequence_stats.json
    sequences/                          items, users, train, valid, test, full (.parquet)
    scores.parquet                      score: the serving model's top-K per known user
    recommendations.parquet             fallback: tonight's table, model lists and popularity
    fallback.parquet                    the list a brand-new user gets
    refresh/                            intra-day refreshes of this night's table (nightrec.refresh)
      state.json                        the watermark: events at or before it were read already
      <stamp>/                          one refresh: events.parquet (accepted), quarantine.parquet,
                                        sequences/ (the touched users), recommendations.parquet
  gx/                                   the GX project: great_expectations.yml, expectations/ (the
                                        suites), checkpoints/, uncommitted/data_docs/local_site/
  models/
    champion -> <version>               the serving model
    retrain-requested.json              set by `nightrec forget`: the next night retrains from scratch
    <version>/                          model.ckpt (validated), served.ckpt (refitted, scores),
                                        last.ckpt, config.json, items.parquet,
                                        metrics.json, curve.png, version.json
```
"""

from datetime import date
from pathlib import Path

RUNS_DIR = "runs"
MODELS_DIR = "models"
DUCKDB_FILE = "nightrec.duckdb"
LOCK_FILE = ".nightrec.lock"  # one run at a time per data directory (nightrec.lock)
FORGET_LOG = "forget-log.jsonl"  # who was forgotten, by pseudonym (nightrec.privacy.forget_log)
RETRAIN_REQUEST = "retrain-requested.json"  # models/: the next night retrains from scratch
GX_DIR = "gx"  # the GX project (expectations.project); GX itself names it so

# runs/<date>/
EVENTS_FILE = "events.parquet"
CLEAN_FILE = "clean.parquet"
QUARANTINE_FILE = "quarantine.parquet"
# rows of metadata.items_file set aside (no item_id, or a repeated one), with their reason
ITEMS_QUARANTINE_FILE = "items_quarantine.parquet"
USERS_QUARANTINE_FILE = "users_quarantine.parquet"  # the same for popularity.users_file
VALIDATION_FILE = "validation.json"
BEHAVIOR_DIR = "behavior"
SEQUENCES_DIR = "sequences"
SEQUENCE_STATS_FILE = "sequence_stats.json"
SCORES_FILE = "scores.parquet"
RECOMMENDATIONS_FILE = "recommendations.parquet"
FALLBACK_FILE = "fallback.parquet"
REFRESH_DIR = "refresh"  # runs/<date>/refresh/: the day's intra-day refreshes
SHARDS_DIR = "shards"  # runs/<date>/shards/<stage>/part-NNNNN.parquet: per-user parts (orchestration.shards)
REFRESH_STATE_FILE = "state.json"

# runs/<date>/behavior/
BEHAVIOR_JSON = "behavior.json"
REPORT_HTML = "report.html"
CHURN_FILE = "churn_candidates.parquet"
FIGURES_DIR = "figures"

# runs/<date>/sequences/ (items.parquet also travels with every model)
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
TRAIN_FILE = "train.parquet"
VALID_FILE = "valid.parquet"
TEST_FILE = "test.parquet"
FULL_FILE = "full.parquet"
SPLIT_FILES = {"train": TRAIN_FILE, "valid": VALID_FILE, "test": TEST_FILE, "full": FULL_FILE}

# models/
CHAMPION = "champion"
PARTIAL_PREFIX = ".partial-"
# models/<version>/
BEST_CKPT = "model.ckpt"
SERVED_CKPT = "served.ckpt"  # the weights that score: model.ckpt refitted on every known transition
LAST_CKPT = "last.ckpt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CURVE_FILE = "curve.png"
VERSION_FILE = "version.json"
RUN_CONFIG_FILE = "run-config.json"


def runs_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RUNS_DIR


def run_dir(data_dir: Path, run_date: date) -> Path:
    """``<data_dir>/runs/<date>/``: one night's working files."""
    return runs_dir(data_dir) / run_date.isoformat()


def models_dir(data_dir: Path) -> Path:
    """``<data_dir>/models/``: every model version and the ``champion`` link."""
    return Path(data_dir) / MODELS_DIR


def latest_earlier_run(runs_root: Path, run_date: date, relative: str) -> Path | None:
    """The newest ``runs/<d>/<relative>`` that exists with ``d`` strictly before ``run_date``."""
    found = []
    for path in Path(runs_root).glob(f"*/{relative}"):
        try:
            day = date.fromisoformat(path.relative_to(runs_root).parts[0])
        except ValueError:
            continue
        if day < run_date:
            found.append((day, path))
    return max(found)[1] if found else None
