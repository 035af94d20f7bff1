"""The ``privacy`` section of the run config (``nightrec.config`` holds the rest)."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MIN_KEY_LENGTH = 16


class PrivacyConfig(BaseModel):
    """Pseudonymised user ids, what the published table is keyed by, and how long raw copies live.

    ``key`` is the HMAC-SHA256 secret behind every pseudonym. It comes only from the environment
    (``NIGHTREC_PRIVACY__KEY``) or a Prefect ``Secret`` block named by ``key_block``; a config
    file or a flag that sets it is refused, so the key never sits beside the data it protects.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    pseudonymize: bool = Field(
        False,
        description=(
            "Replace user_id by HMAC-SHA256(privacy.key, user_id) at ingest, so every later file, report, "
            "log and model sees pseudonyms only. Off by default because it needs a secret that nightrec "
            "cannot invent safely: a key generated into the data directory would sit beside the data it "
            "pseudonymises (anyone who reads one reads the other) and a lost key orphans every published list."
        ),
    )
    key: SecretStr | None = Field(
        None, description="The HMAC key (at least 16 characters): NIGHTREC_PRIVACY__KEY or key_block only."
    )
    key_block: str | None = Field(None, description="Name of a Prefect Secret block holding the key.")
    previous_key: SecretStr | None = Field(
        None,
        description="After a key rotation, the old key (NIGHTREC_PRIVACY__PREVIOUS_KEY only): forget "
        "requests recorded under it still exclude their users at ingest.",
    )
    publish_external_ids: bool = Field(
        False, description="Publish the source's user ids instead of pseudonyms (the published table only)."
    )
    raw_retention_days: int = Field(
        30, ge=1, description="Days a night's raw copies (runs/<date>/events, clean, quarantine) are kept."
    )

    @field_validator("key", "previous_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_KEY_LENGTH} characters")
        return value
