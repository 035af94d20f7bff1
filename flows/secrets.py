"""Secrets a run needs but no parameter, file or flag may carry: the PostgreSQL URL and the
privacy key, from this process's environment or (the key) a Prefect ``Secret`` block."""

import os

from pydantic import SecretStr

from nightrec.config import NightrecConfig
from nightrec.errors import ConfigError

# (section, field) -> the variable that holds it
_ENV = {
    ("publish", "postgres_url"): "NIGHTREC_PUBLISH__POSTGRES_URL",
    ("privacy", "key"): "NIGHTREC_PRIVACY__KEY",
    ("privacy", "previous_key"): "NIGHTREC_PRIVACY__PREVIOUS_KEY",
}


def _masked(secret: SecretStr | None) -> bool:
    return secret is not None and set(secret.get_secret_value()) <= {"*"}


def restore_secrets(config: NightrecConfig) -> NightrecConfig:
    """Parameters stored by the API carry secrets masked (or not at all); take them from this
    process's environment, and the privacy key from its Secret block when one is named."""
    for (section, name), variable in _ENV.items():
        part = getattr(config, section)
        value = getattr(part, name)
        if _masked(value) or (value is None and os.environ.get(variable)):
            part = part.model_copy(update={name: SecretStr(os.environ[variable]) if variable in os.environ else None})
            config = config.model_copy(update={section: part})
    return with_key_from_block(config)


def with_key_from_block(config: NightrecConfig) -> NightrecConfig:
    """``privacy.key`` read from the Prefect Secret block ``privacy.key_block`` when the
    environment did not set it."""
    privacy = config.privacy
    if privacy.key is not None or not privacy.key_block:
        return config
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(privacy.key_block).get()
    except ValueError as exc:
        raise ConfigError(f"privacy.key_block: no Prefect Secret block named {privacy.key_block!r} ({exc})") from None
    privacy = privacy.model_validate({**privacy.model_dump(), "key": str(value)})
    return config.model_copy(update={"privacy": privacy})
