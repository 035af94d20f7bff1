"""``nightrec forget``: a person's data out of the data directory and every published table."""

from typing import Annotated

import typer

from flows.app import ConfigOpt, DataDirOpt, app, build_config, console, plain


@app.command()
def forget(
    user_id: Annotated[str, typer.Argument(help="The user's id in the event source.")],
    data_dir: DataDirOpt = None,
    config_file: ConfigOpt = None,
) -> None:
    """Remove one user's events, sequences and published rows, and keep them out of later nights.

    Only the user's pseudonym and the time are recorded (forget-log.jsonl); the next night
    retrains the model from scratch.
    """
    from flows.forget import forget_now, forget_summary
    from flows.secrets import with_key_from_block
    from nightrec.privacy.pseudonyms import pseudonym, require_key

    config = with_key_from_block(build_config(config_file, data_dir=data_dir))
    key = require_key(config.privacy, "nightrec forget")
    report = forget_now(config, pseudonym(user_id, key))
    console.print(plain(f"forgot user {report['request']['pseudonym']}: {forget_summary(report)}"), soft_wrap=True)
