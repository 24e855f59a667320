"""One sync run in its own process against the BigQuery emulator (sync_once.py cannot reach an emulator:
the official client needs credentials the emulator does not issue). Used by proof.concurrency.

    python -m proof.worker ENDPOINT PROJECT DATASET INSTANTLY_BASE_URL NOW_ISO
prints {"exit_code": n, "outcome": "..."} and exits with the run's exit code.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

from coldsync.instantly.client import InstantlyClient
from coldsync.sync import run_sync
from coldsync.warehouse.bigquery import BigQueryWarehouse
from proof.crash import CRASH_SETTINGS
from proof.engines import proof_settings
from proof.harness import API_KEY
from tests.bq_emulator import make_client


def main(argv: list[str]) -> int:
    endpoint, project, dataset, base_url, now_text = argv
    settings = proof_settings(Path(tempfile.mkdtemp(prefix="coldsync-worker-")), bq_dataset=dataset,
                              **CRASH_SETTINGS)
    warehouse = BigQueryWarehouse(project, dataset, client=make_client(endpoint, project))
    with InstantlyClient(API_KEY, base_url=base_url) as client:
        result = run_sync(settings, warehouse, client, now=dt.datetime.fromisoformat(now_text))
    warehouse.close()
    print(json.dumps({"exit_code": int(result.exit_code), "outcome": result.report.outcome}), flush=True)
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
