"""``python -m carveout_ops`` is the ``carveout`` command."""

from .cli import main

main()
