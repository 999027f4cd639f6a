"""The ``carveout`` command: run the system and act on it.

Every command group is a module of its own with a module-level Typer ``app`` (``carveout
grant`` is :mod:`.grant`, ``carveout dlq`` the :mod:`.dlq` package, and so on); this
module only puts them together, in the order ``carveout --help`` lists them.
"""

from __future__ import annotations

import os

import typer

from . import access, audit, demo, dlq, grant, keys, replay, tail, topics, up

app = typer.Typer(
    help="Carveout: conditional access to restricted AI models.",
    no_args_is_help=True,
    add_completion=False,
)
# Commands of their own first (an app added without a name adds its commands as they are).
app.add_typer(up.app)
app.add_typer(demo.app)
app.add_typer(replay.app)
app.add_typer(tail.app)
# Then the groups: carveout access publish, carveout grant issue, ...
app.add_typer(access.app, name="access")
app.add_typer(grant.app, name="grant")
app.add_typer(topics.app, name="topics")
app.add_typer(dlq.app, name="dlq")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")


@app.callback()
def trust_this_systems_keys() -> None:
    """Commands that read the log (replay, digest) check signatures as the services do:
    with this system's trusted keys, unless CARVEOUT_TRUSTED_KEYS names others."""
    trusted = keys.trusted_keys_file()
    if "CARVEOUT_TRUSTED_KEYS" not in os.environ and trusted.is_file():
        os.environ["CARVEOUT_TRUSTED_KEYS"] = str(trusted.resolve())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
