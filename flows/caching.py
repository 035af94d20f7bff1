"""Cache keys from what a stage actually reads: input paths with a hash of their content, the
config, and the task's source code. A rerun of a completed night therefore skips finished
stages, and a retry after a crash downstream (say, in publishing) never retrains.
"""

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.utilities.hashing import hash_objects

from nightrec.config import NightrecConfig
from nightrec.privacy.pseudonyms import key_id
from nightrec.registry import content_hash

# Sections that never change what a stage computes: where and how it is published or scheduled.
_CONFIG_EXCLUDE = {"publish", "orchestration", "run_date"}


def fingerprint(value: Any) -> Any:
    """A stable, hashable description of one task input."""
    if isinstance(value, Path):
        return {"path": str(value.resolve()), "content": content_hash(value)}
    if isinstance(value, NightrecConfig):
        # secrets dump masked: the key's public id tells a re-keyed night from the last one
        keys = [key_id(value.privacy.key), key_id(value.privacy.previous_key)]
        return [value.model_dump_json(exclude=_CONFIG_EXCLUDE), keys]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [fingerprint(v) for v in value]
    if isinstance(value, dict):
        return {str(k): fingerprint(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


@dataclass
class ContentInputs(CachePolicy):
    """Key on every input (paths by content); ``exclude`` names inputs that do not matter."""

    exclude: list[str] = field(default_factory=list)

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any):
        described = {name: fingerprint(v) for name, v in sorted(inputs.items()) if name not in self.exclude}
        return hash_objects(described, raise_on_failure=True)


CONTENT = ContentInputs() + TASK_SOURCE
