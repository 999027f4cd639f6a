"""``python -m tests.chaos`` (``make chaos``): randomised faults, then exact counts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from .databases import DEFAULT_ADMIN_URL, answers
from .run import Settings, run, summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Run `carveout up --replicas 2` on PostgreSQL (4 partitions) under gateway "
        "traffic and regulator actions, inject randomised faults (SIGKILL/SIGSTOP of any "
        "replica, embedded broker restart, pg_terminate_backend, duplicated and poison "
        "records), settle, and check every effect and every store's digest against its "
        "replay. Exits 1 on any mismatch.",
    )
    p.add_argument("--faults", type=int, default=100, help="how many faults (default 100)")
    p.add_argument("--seed", type=int, default=None, help="repeat a run (default: random)")
    p.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="mean seconds between faults, for pacing (default 1.0)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=40.0,
        help="accesses per second, both gateways together (default 40)",
    )
    p.add_argument(
        "--postgres",
        default=DEFAULT_ADMIN_URL,
        help=f"admin URL where the run makes its databases (default {DEFAULT_ADMIN_URL})",
    )
    p.add_argument(
        "--var-dir",
        type=Path,
        default=None,
        help="the system's var dir (default: a new temporary directory)",
    )
    p.add_argument("--keep", action="store_true", help="keep the run's databases")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = answers(args.postgres)
    if problem is not None:
        print(f"chaos needs PostgreSQL at {args.postgres}: {problem}", file=sys.stderr)
        return 2
    console = Console(stderr=args.json, width=max(Console().width, 110))
    result = run(
        Settings(
            faults=args.faults,
            seed=args.seed,
            pause_s=args.pause,
            rate_per_s=args.rate,
            admin_url=args.postgres,
            var_dir=args.var_dir,
            keep=args.keep,
        ),
        console,
    )
    if args.json:
        sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n")
    summary(result, console)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
