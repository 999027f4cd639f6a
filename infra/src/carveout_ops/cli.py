"""The ``carveout`` command: run the system and act on it.

Every command group is a module of its own with a module-level Typer ``app`` (``carveout
grant`` is :mod:`.grant`, ``carveout dlq`` the :mod:`.dlq` package, and so on); this
module only puts them together, in the order ``carveout --help`` lists them.
"""

from __future__ import annotations

import typer

from . import access, demo, dlq, grant, keys, replay, tail, topics, up

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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
