"""pyctl benchmarks against ctr, in the same run on the same machine.

    bash scripts/dev.sh bench [listing|transfer|archive ...] [--runs N]

Results are printed and written to bench/results/<name>.json.
"""

from __future__ import annotations

import argparse

from bench import archive, listing, transfer

SUITES = {"listing": listing.run, "transfer": transfer.run, "archive": archive.run}


def main() -> None:
    parser = argparse.ArgumentParser(description="pyctl vs ctr benchmarks")
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=", ".join(SUITES))
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command")
    args = parser.parse_args()
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite {unknown[0]} (choose from {', '.join(SUITES)})")
    for name in args.suites or SUITES:
        print(f"== {name}", flush=True)
        SUITES[name](args.runs)


if __name__ == "__main__":
    main()
