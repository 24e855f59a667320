"""Check that this environment is ready for a sync, and print each check with its fix.

Checks, in order: settings, the Instantly key (present and accepted), the warehouse (reachable), its
tables and view, the source table, the config rows, the `as_of` clock row, both campaigns (exist,
active), inventory headroom under the cap, and leads ready per segment. Nothing is written anywhere.
    python validate_environment.py [--json] [--production]
Exit codes: 0 ready (warnings allowed), 2 bad configuration, 3 a sync holds the DuckDB file (try again),
4 a check failed.
"""

from __future__ import annotations

import sys

from coldsync.cli import RUN_ONLY_SETTINGS, interruptible, settings_parser
from coldsync.report import append_github_summary
from coldsync.settings import cli_overrides, read_sources
from coldsync.validate import run_checks


def main(argv: list[str] | None = None) -> int:
    return interruptible(lambda: _main(argv), "checks stopped; nothing was changed")


def _main(argv: list[str] | None) -> int:
    parser = settings_parser((__doc__ or "").splitlines()[0], exclude=RUN_ONLY_SETTINGS)
    parser.add_argument("--json", action="store_true", help="print the checks as JSON (for machines)")
    parser.add_argument("--production", action="store_true",
                        help="fail unless set up for live runs: an Instantly key and a BigQuery warehouse "
                             "(the scheduled workflow passes this)")
    args = parser.parse_args(argv)
    result = run_checks(read_sources(cli_overrides(args)), production=args.production)
    print(result.to_json() if args.json else result.render_text())
    if not result.ok:  # under GitHub Actions the job summary shows why the run did not start
        append_github_summary(result.render_markdown())
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main())
