"""What the BigQuery emulator (bqemulator 1.4.0) does with the exact features our warehouse layer uses.

Every test goes through the official google-cloud-bigquery client against a local emulator process.
Where the emulator differs from BigQuery the test pins the difference and the workaround, so an
emulator upgrade that changes behaviour shows up here first. Findings: docs/BIGQUERY_EMULATOR.md.
"""

# SQL here is built with f-strings only to insert generated dataset/table names (never data).
# ruff: noqa: S608

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from tests.bq_emulator import EMULATOR_RETRY, EmulatorHandle, emulator_available, start_emulator

AVAILABLE, WHY = emulator_available()
pytestmark = [
    pytest.mark.bigquery,
    pytest.mark.skipif(not AVAILABLE, reason=f"BigQuery emulator not installed: {WHY}"),
]

UTC = dt.UTC
TS = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
NO_RETRY = bigquery.DEFAULT_RETRY.with_predicate(lambda _exc: False)
BIG = Decimal("12345678901234567890.123456789")  # 20 integer digits, 9 decimals: needs NUMERIC(38, 9)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    handle = start_emulator()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def client(emulator: EmulatorHandle) -> bigquery.Client:
    return emulator.client()


@pytest.fixture
def ds(client: bigquery.Client) -> str:
    """A fresh dataset (in US) per test, so tests never see each other's tables."""
    dataset = bigquery.Dataset(f"{client.project}.cap_{uuid.uuid4().hex[:10]}")
    dataset.location = "US"
    client.create_dataset(dataset)
    return str(dataset.dataset_id)


def run(
    client: bigquery.Client,
    sql: str,
    params: Sequence[bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter] = (),
    **config: Any,
) -> tuple[bigquery.QueryJob, list[dict[str, Any]]]:
    """Run one query job and return it with its rows; fails fast instead of retrying 5xx for minutes."""
    job_config = bigquery.QueryJobConfig(query_parameters=list(params), **config)
    job = client.query(sql, job_config=job_config, retry=EMULATOR_RETRY, job_retry=None)
    rows = [dict(row) for row in job.result(timeout=120, retry=EMULATOR_RETRY)]
    return job, rows


def field_names(client: bigquery.Client, table_id: str) -> list[str]:
    return [f.name for f in client.get_table(table_id).schema]


def rows_param(
    name: str, fields: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> bigquery.ArrayQueryParameter:
    """ARRAY<STRUCT<...>> parameter: `fields` are (name, type); any value may be None."""
    structs = [
        bigquery.StructQueryParameter(
            None,
            *(
                bigquery.ScalarQueryParameter(fname, ftype, value)
                for (fname, ftype), value in zip(fields, row, strict=True)
            ),
        )
        for row in rows
    ]
    return bigquery.ArrayQueryParameter(name, "STRUCT", structs)


# 1 -------------------------------------------------------------------------------------------------
def test_api_dataset_and_partitioned_clustered_table(client: bigquery.Client) -> None:
    """Datasets (exists_ok, location) and API-schema tables with DAY partitioning and clustering are accepted, kept."""
    dataset = bigquery.Dataset(f"{client.project}.api_{uuid.uuid4().hex[:8]}")
    dataset.location = "US"
    client.create_dataset(dataset, exists_ok=True)
    client.create_dataset(dataset, exists_ok=True)  # idempotent
    assert client.get_dataset(dataset.reference).location == "US"

    schema = [
        bigquery.SchemaField("id", "INT64", mode="REQUIRED"),
        bigquery.SchemaField("email", "STRING"),
        bigquery.SchemaField("amount", "NUMERIC"),
        bigquery.SchemaField("ts", "TIMESTAMP"),
        bigquery.SchemaField("day", "DATE"),
        bigquery.SchemaField("active", "BOOL"),
    ]
    table = bigquery.Table(f"{client.project}.{dataset.dataset_id}.leads", schema=schema)
    table.time_partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field="ts")
    table.clustering_fields = ["email"]
    try:
        client.create_table(table, exists_ok=True)
    except gexc.BadRequest:  # the degrade path the warehouse would take; not needed on 1.4.0
        table.time_partitioning = None
        table.clustering_fields = None
        client.create_table(table, exists_ok=True)
    client.create_table(table, exists_ok=True)  # idempotent

    got = client.get_table(table.reference)
    assert [(f.name, f.field_type, f.mode) for f in got.schema] == [
        ("id", "INT64", "REQUIRED"),
        ("email", "STRING", "NULLABLE"),
        ("amount", "NUMERIC", "NULLABLE"),
        ("ts", "TIMESTAMP", "NULLABLE"),
        ("day", "DATE", "NULLABLE"),
        ("active", "BOOL", "NULLABLE"),
    ]
    assert got.time_partitioning is not None and got.time_partitioning.type_ == "DAY"
    assert got.time_partitioning.field == "ts"
    assert got.clustering_fields == ["email"]

    # An API-schema NUMERIC column holds BigQuery's full NUMERIC(38, 9).
    job, _ = run(
        client,
        f"INSERT INTO {dataset.dataset_id}.leads (id, email, amount, ts, day, active) "
        "VALUES (1, 'a@x.test', @n, @ts, @d, TRUE)",
        [
            bigquery.ScalarQueryParameter("n", "NUMERIC", BIG),
            bigquery.ScalarQueryParameter("ts", "TIMESTAMP", TS),
            bigquery.ScalarQueryParameter("d", "DATE", dt.date(2024, 5, 6)),
        ],
    )
    assert job.num_dml_affected_rows == 1
    _, rows = run(client, f"SELECT * FROM {dataset.dataset_id}.leads")
    assert rows == [{"id": 1, "email": "a@x.test", "amount": BIG, "ts": TS, "day": dt.date(2024, 5, 6), "active": True}]


# 2 -------------------------------------------------------------------------------------------------
def test_ddl_create_if_not_exists_partition_cluster(client: bigquery.Client, ds: str) -> None:
    """DDL CREATE TABLE IF NOT EXISTS ... PARTITION BY DATE(ts) CLUSTER BY runs; plain NUMERIC becomes DECIMAL(18,3)."""
    ddl = (
        f"CREATE TABLE IF NOT EXISTS {ds}.t (id INT64, email STRING, exact NUMERIC(38, 9), plain NUMERIC, "
        "ts TIMESTAMP, day DATE, active BOOL) PARTITION BY DATE(ts) CLUSTER BY email"
    )
    run(client, ddl)
    run(client, ddl)  # IF NOT EXISTS: no error the second time
    table = client.get_table(f"{client.project}.{ds}.t")
    assert [f.name for f in table.schema] == ["id", "email", "exact", "plain", "ts", "day", "active"]
    # Accepted but not recorded: the emulator keeps no partitioning/clustering metadata for DDL tables.
    assert table.time_partitioning is None and table.clustering_fields is None

    run(
        client,
        f"INSERT INTO {ds}.t (id, exact, plain) VALUES (1, @v, @v)",
        [bigquery.ScalarQueryParameter("v", "NUMERIC", Decimal("1.123456789"))],
    )
    _, rows = run(client, f"SELECT exact, plain FROM {ds}.t")
    # Workaround: write NUMERIC(38, 9) in DDL (same type in BigQuery); bare NUMERIC is DuckDB's DECIMAL(18,3).
    assert rows == [{"exact": Decimal("1.123456789"), "plain": Decimal("1.123")}]
    with pytest.raises(gexc.BadRequest, match="out of range"):
        run(
            client,
            f"INSERT INTO {ds}.t (id, plain) VALUES (2, @v)",
            [bigquery.ScalarQueryParameter("v", "NUMERIC", BIG)],
        )


def test_alter_table_add_column_needs_catalog_update(client: bigquery.Client, ds: str) -> None:
    """ALTER TABLE ADD COLUMN IF NOT EXISTS alters storage but not get_table/INFORMATION_SCHEMA until update_table."""
    table_id = f"{client.project}.{ds}.t"
    client.create_table(bigquery.Table(table_id, schema=[bigquery.SchemaField("id", "INT64")]))
    alter = f"ALTER TABLE {ds}.t ADD COLUMN IF NOT EXISTS note STRING"
    run(client, alter)
    run(client, alter)  # idempotent
    job, _ = run(client, f"INSERT INTO {ds}.t (id, note) VALUES (1, 'n')")  # storage has the column
    assert job.num_dml_affected_rows == 1
    assert field_names(client, table_id) == ["id"]  # ...but the catalog does not (BigQuery would show it)
    _, cols = run(client, f"SELECT column_name FROM {ds}.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 't'")
    assert [c["column_name"] for c in cols] == ["id"]

    # Workaround that is also correct (a no-op) on BigQuery: after the ALTER, add any column the
    # catalog lacks with update_table. update_table alone would NOT add the column to storage.
    table = client.get_table(table_id)
    if "note" not in [f.name for f in table.schema]:
        table.schema = [*table.schema, bigquery.SchemaField("note", "STRING")]
        client.update_table(table, ["schema"])
    assert field_names(client, table_id) == ["id", "note"]
    _, cols = run(
        client,
        f"SELECT column_name FROM {ds}.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 't' ORDER BY ordinal_position",
    )
    assert [c["column_name"] for c in cols] == ["id", "note"]
    load = client.load_table_from_json([{"id": 2, "note": "loaded"}], table_id)
    load.result(timeout=60)
    _, rows = run(client, f"SELECT id, note FROM {ds}.t ORDER BY id")
    assert rows == [{"id": 1, "note": "n"}, {"id": 2, "note": "loaded"}]


def test_ddl_if_not_exists_resyncs_api_table_metadata(client: bigquery.Client, ds: str) -> None:
    """CREATE TABLE IF NOT EXISTS over an API-made table rewrites its catalog entry from storage: partitioning lost."""
    table = bigquery.Table(
        f"{client.project}.{ds}.t",
        schema=[bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("ts", "TIMESTAMP")],
    )
    table.time_partitioning = bigquery.TimePartitioning(field="ts")
    client.create_table(table)
    run(client, f"CREATE TABLE IF NOT EXISTS {ds}.t (id INT64, ts TIMESTAMP)")
    got = client.get_table(table.reference)
    # BigQuery leaves an existing table untouched; the emulator re-derives it. Pick ONE creation path
    # per table (all API or all DDL); harmless for correctness, only metadata differs.
    assert got.time_partitioning is None
    assert [(f.name, f.field_type) for f in got.schema] == [("id", "INTEGER"), ("ts", "TIMESTAMP")]


# 3 -------------------------------------------------------------------------------------------------
VIEW_SQL = """
CREATE OR REPLACE VIEW {ds}.v AS
SELECT
  c.id,
  LOWER(TRIM(c.email)) AS email_norm,
  REGEXP_CONTAINS(LOWER(TRIM(c.email)), r'^[^@\\s]+@[^@\\s]+\\.[a-z]{{2,}}$') AS is_valid,
  SPLIT(LOWER(TRIM(c.email)), '@')[SAFE_OFFSET(1)] AS domain,
  REGEXP_EXTRACT(LOWER(TRIM(c.email)), r'@([^@]+)$') AS domain_re,
  SAFE_CAST(c.amount AS NUMERIC(38, 9)) AS amount_exact,
  SAFE_CAST(c.amount AS NUMERIC) AS amount_plain,
  TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), c.updated_at, DAY) AS age_days,
  CASE WHEN c.status = 'active' THEN 'A' WHEN c.status = 'paused' THEN 'P' ELSE 'X' END AS status_code,
  COALESCE((SELECT value_int FROM {ds}.config WHERE key = 'max_rows'), 1000000) AS max_rows,
  COALESCE((SELECT value_int FROM {ds}.config WHERE key = 'missing'), 1000000) AS default_rows,
  b.email IS NOT NULL AS bounced
FROM {ds}.contacts AS c
LEFT JOIN {ds}.bounces AS b ON b.email = LOWER(TRIM(c.email))
WHERE c.updated_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)
  AND NOT EXISTS (SELECT 1 FROM {ds}.suppressed AS s WHERE s.email = LOWER(TRIM(c.email)))
QUALIFY ROW_NUMBER() OVER (PARTITION BY LOWER(TRIM(c.email)) ORDER BY c.updated_at DESC) = 1
"""


def test_view_with_the_functions_we_use(client: bigquery.Client, ds: str) -> None:
    """A view using LOWER/TRIM, REGEXP_*, SPLIT[SAFE_OFFSET], SAFE_CAST, QUALIFY, joins and scalar subqueries works."""
    run(
        client,
        f"CREATE TABLE {ds}.contacts (id INT64, email STRING, amount STRING, updated_at TIMESTAMP, status STRING)",
    )
    run(client, f"CREATE TABLE {ds}.config (key STRING, value_int INT64)")
    run(client, f"CREATE TABLE {ds}.bounces (email STRING)")
    run(client, f"CREATE TABLE {ds}.suppressed (email STRING)")
    run(
        client,
        f"""INSERT INTO {ds}.contacts VALUES
      (1, '  Alice@Example.COM ', '12345678901234.123456789',
       TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY), 'active'),
      (2, 'alice@example.com', '3', TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 2 DAY), 'active'),
      (3, 'bob@test.example', '7', TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 40 DAY), 'active'),
      (4, 'not-an-email', 'abc', TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 3 DAY), 'paused'),
      (5, 'carol@bounce.example', NULL, TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 3 DAY), 'gone'),
      (6, 'dave@quiet.example', '1', TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 3 DAY), 'active')""",
    )
    run(client, f"INSERT INTO {ds}.config VALUES ('max_rows', 3)")
    run(client, f"INSERT INTO {ds}.bounces VALUES ('carol@bounce.example')")
    run(client, f"INSERT INTO {ds}.suppressed VALUES ('dave@quiet.example')")

    run(client, VIEW_SQL.format(ds=ds))
    run(client, VIEW_SQL.format(ds=ds))  # OR REPLACE
    assert client.get_table(f"{client.project}.{ds}.v").table_type == "VIEW"

    _, rows = run(client, f"SELECT * FROM {ds}.v ORDER BY id")
    common = {"max_rows": 3, "default_rows": 1000000}
    assert rows == [
        {
            "id": 1,
            "email_norm": "alice@example.com",
            "is_valid": True,
            "domain": "example.com",
            "domain_re": "example.com",
            "amount_exact": Decimal("12345678901234.123456789"),
            "amount_plain": Decimal("12345678901234.123"),
            "age_days": 1,
            "status_code": "A",
            "bounced": False,
            **common,
        },
        {
            "id": 4,
            "email_norm": "not-an-email",
            "is_valid": False,
            "domain": None,
            "domain_re": None,
            "amount_exact": None,
            "amount_plain": None,
            "age_days": 3,
            "status_code": "P",
            "bounced": False,
            **common,
        },
        {
            "id": 5,
            "email_norm": "carol@bounce.example",
            "is_valid": True,
            "domain": "bounce.example",
            "domain_re": "bounce.example",
            "amount_exact": None,
            "amount_plain": None,
            "age_days": 3,
            "status_code": "X",
            "bounced": True,
            **common,
        },
    ]

    # The QUALIFY-free equivalent gives the same dedup (use it if a target ever rejects QUALIFY).
    _, rows = run(
        client,
        f"""SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY LOWER(TRIM(email)) ORDER BY updated_at DESC) AS rn
        FROM {ds}.contacts) WHERE rn = 1 ORDER BY id""",
    )
    assert [r["id"] for r in rows] == [1, 3, 4, 5, 6]


# 4 -------------------------------------------------------------------------------------------------
def test_query_parameters_scalar_array_and_struct_merge(client: bigquery.Client, ds: str) -> None:
    """Scalar, ARRAY<STRING> (IN UNNEST) and ARRAY<STRUCT> parameters work, incl. MERGE with NULL fields, timestamps."""
    _, rows = run(
        client,
        "SELECT @s AS s, @i AS i, @t AS t, @n AS n, @b AS b, @null_s AS null_s",
        [
            bigquery.ScalarQueryParameter("s", "STRING", "x@y.z"),
            bigquery.ScalarQueryParameter("i", "INT64", 42),
            bigquery.ScalarQueryParameter("t", "TIMESTAMP", TS),
            bigquery.ScalarQueryParameter("n", "NUMERIC", BIG),
            bigquery.ScalarQueryParameter("b", "BOOL", True),
            bigquery.ScalarQueryParameter("null_s", "STRING", None),
        ],
    )
    assert rows == [{"s": "x@y.z", "i": 42, "t": TS, "n": BIG, "b": True, "null_s": None}]

    client.create_table(
        bigquery.Table(
            f"{client.project}.{ds}.m",
            schema=[
                bigquery.SchemaField("email", "STRING"),
                bigquery.SchemaField("name", "STRING"),
                bigquery.SchemaField("score", "INT64"),
                bigquery.SchemaField("amount", "NUMERIC"),
                bigquery.SchemaField("seen_at", "TIMESTAMP"),
            ],
        )
    )
    run(client, f"INSERT INTO {ds}.m (email, name, score) VALUES ('a@x.test', 'A', 1), ('b@x.test', 'B', 2)")

    emails = bigquery.ArrayQueryParameter("emails", "STRING", ["a@x.test", "zzz@x.test"])
    _, rows = run(client, f"SELECT email FROM {ds}.m WHERE email IN UNNEST(@emails)", [emails])
    assert rows == [{"email": "a@x.test"}]
    _, rows = run(
        client,
        f"SELECT email FROM {ds}.m WHERE email IN UNNEST(@emails)",
        [bigquery.ArrayQueryParameter("emails", "STRING", [])],
    )
    assert rows == []

    fields = [
        ("email", "STRING"),
        ("name", "STRING"),
        ("score", "INT64"),
        ("amount", "NUMERIC"),
        ("seen_at", "TIMESTAMP"),
    ]
    batch = rows_param(
        "rows",
        fields,
        [
            ("a@x.test", "A2", None, BIG, TS),  # update, NULL score
            ("c@x.test", None, 3, None, TS),  # insert, NULL name and amount
            ("d@x.test", "D", 4, Decimal("0.5"), None),  # insert, NULL timestamp
        ],
    )
    merge = f"""MERGE {ds}.m T
USING (SELECT r.email, r.name, r.score, r.amount, r.seen_at FROM UNNEST(@rows) AS r) S
ON T.email = S.email
WHEN MATCHED THEN UPDATE SET name = S.name, score = S.score, amount = S.amount, seen_at = S.seen_at
WHEN NOT MATCHED THEN INSERT (email, name, score, amount, seen_at)
  VALUES (S.email, S.name, S.score, S.amount, S.seen_at)"""
    job, _ = run(client, merge, [batch])
    assert job.num_dml_affected_rows == 3
    _, rows = run(client, f"SELECT * FROM {ds}.m ORDER BY email")
    assert rows == [
        {"email": "a@x.test", "name": "A2", "score": None, "amount": BIG, "seen_at": TS},
        {"email": "b@x.test", "name": "B", "score": 2, "amount": None, "seen_at": None},
        {"email": "c@x.test", "name": None, "score": 3, "amount": None, "seen_at": TS},
        {"email": "d@x.test", "name": "D", "score": 4, "amount": Decimal("0.5"), "seen_at": None},
    ]
    # Known quirk: `SELECT * FROM UNNEST(@rows)` as the MERGE source loses the field names.
    with pytest.raises(gexc.BadRequest, match="does not have a column"):
        run(
            client, merge.replace("SELECT r.email, r.name, r.score, r.amount, r.seen_at FROM", "SELECT * FROM"), [batch]
        )


# 5 -------------------------------------------------------------------------------------------------
def test_labels_bytes_cap_and_dry_run(client: bigquery.Client, ds: str) -> None:
    """Job labels and maximum_bytes_billed are accepted (not enforced); dry_run validates SQL but reports 0 bytes."""
    run(client, f"CREATE TABLE {ds}.t AS SELECT 1 AS id, 'a' AS email")
    labels = {"app": "coldsync", "phase": "drain"}
    job, rows = run(client, f"SELECT COUNT(*) AS n FROM {ds}.t", labels=labels, maximum_bytes_billed=1)
    assert rows == [{"n": 1}]  # a 1-byte cap is not enforced
    assert job.labels == labels and job.maximum_bytes_billed == 1
    assert client.get_job(job.job_id).labels == {}  # labels are echoed, not stored
    assert not job.total_bytes_processed  # always 0

    dry = client.query(
        f"SELECT * FROM {ds}.t",
        job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False),
        retry=EMULATOR_RETRY,
        job_retry=None,
    )
    assert dry.state == "DONE" and dry.dry_run
    assert dry.total_bytes_processed == 0  # BigQuery would report an estimate; do not rely on it
    assert [f.name for f in dry.schema or []] == ["id", "email"]
    with pytest.raises(gexc.BadRequest):  # a dry run still rejects broken SQL: usable as a SQL check
        client.query(
            f"SELECT nope FROM {ds}.t",
            job_config=bigquery.QueryJobConfig(dry_run=True),
            retry=EMULATOR_RETRY,
            job_retry=None,
        )


# 6 -------------------------------------------------------------------------------------------------
def test_script_with_transaction(client: bigquery.Client, ds: str) -> None:
    """BEGIN TRANSACTION ... COMMIT TRANSACTION scripts commit; a failing statement or ROLLBACK undoes the script."""
    run(client, f"CREATE TABLE {ds}.t (email STRING, score INT64)")
    job, _ = run(
        client,
        f"""BEGIN TRANSACTION;
INSERT INTO {ds}.t (email, score) VALUES ('tx1@x.test', 1);
UPDATE {ds}.t SET score = 99 WHERE email = 'tx1@x.test';
COMMIT TRANSACTION;""",
    )
    assert job.statement_type == "SCRIPT"
    assert job.num_dml_affected_rows is None  # no per-statement counts for scripts (BigQuery: child jobs)

    with pytest.raises(gexc.BadRequest, match="boom"):
        run(
            client,
            f"""BEGIN TRANSACTION;
INSERT INTO {ds}.t (email, score) VALUES ('tx2@x.test', 2);
SELECT ERROR('boom');
COMMIT TRANSACTION;""",
        )
    run(client, f"BEGIN TRANSACTION; INSERT INTO {ds}.t (email, score) VALUES ('tx3@x.test', 3); ROLLBACK TRANSACTION;")
    _, rows = run(client, f"SELECT email, score FROM {ds}.t ORDER BY email")
    assert rows == [{"email": "tx1@x.test", "score": 99}]

    job, rows = run(client, f"DECLARE n INT64 DEFAULT 0; SET n = (SELECT COUNT(*) FROM {ds}.t); SELECT n AS total;")
    assert rows == [{"total": 1}]  # DECLARE/SET and a final SELECT's rows come back


def test_exception_handler_is_not_usable(client: bigquery.Client, ds: str) -> None:
    """BEGIN...EXCEPTION WHEN ERROR THEN ROLLBACK; RAISE; END answers HTTP 500 and keeps the insert: avoid it."""
    run(client, f"CREATE TABLE {ds}.t (email STRING)")
    script = f"""BEGIN
  BEGIN TRANSACTION;
  INSERT INTO {ds}.t (email) VALUES ('kept@x.test');
  SELECT ERROR('boom');
  COMMIT TRANSACTION;
EXCEPTION WHEN ERROR THEN
  ROLLBACK TRANSACTION;
  RAISE;
END;"""
    with pytest.raises(gexc.InternalServerError):
        client.query(script, retry=NO_RETRY, job_retry=None)  # no retry: each retry would insert again
    _, rows = run(client, f"SELECT COUNT(*) AS n FROM {ds}.t")
    assert rows == [{"n": 1}]  # BigQuery would have rolled back to 0


# 7 -------------------------------------------------------------------------------------------------
def test_information_schema_and_get_table(client: bigquery.Client, ds: str) -> None:
    """INFORMATION_SCHEMA.TABLES/COLUMNS and get_table().schema list existing tables and columns."""
    client.create_table(
        bigquery.Table(
            f"{client.project}.{ds}.api_t",
            schema=[
                bigquery.SchemaField("id", "INT64"),
                bigquery.SchemaField("amount", "NUMERIC"),
                bigquery.SchemaField("ok", "BOOL"),
            ],
        )
    )
    run(client, f"CREATE TABLE {ds}.ddl_t (id INT64, amount NUMERIC(38, 9), ok BOOL, ts TIMESTAMP)")
    run(client, f"CREATE VIEW {ds}.v AS SELECT id FROM {ds}.ddl_t")

    _, tables = run(client, f"SELECT table_name, table_type FROM {ds}.INFORMATION_SCHEMA.TABLES ORDER BY table_name")
    assert tables == [
        {"table_name": "api_t", "table_type": "BASE TABLE"},
        {"table_name": "ddl_t", "table_type": "BASE TABLE"},
        {"table_name": "v", "table_type": "VIEW"},
    ]
    _, cols = run(
        client,
        f"""SELECT table_name, column_name, data_type
        FROM `{client.project}`.{ds}.INFORMATION_SCHEMA.COLUMNS
        WHERE table_name IN UNNEST(@names) ORDER BY table_name, ordinal_position""",
        [bigquery.ArrayQueryParameter("names", "STRING", ["api_t", "ddl_t"])],
    )
    assert [(c["table_name"], c["column_name"], c["data_type"]) for c in cols] == [
        ("api_t", "id", "INT64"),
        ("api_t", "amount", "NUMERIC"),
        ("api_t", "ok", "BOOL"),
        ("ddl_t", "id", "INT64"),
        ("ddl_t", "amount", "NUMERIC"),
        ("ddl_t", "ok", "BOOL"),
        ("ddl_t", "ts", "TIMESTAMP"),
    ]
    # get_table reports types as created: API tables keep "INT64"/"BOOL", DDL tables say "INTEGER"/"BOOLEAN".
    # Compare types through a normaliser (INTEGER=INT64, BOOLEAN=BOOL, FLOAT=FLOAT64), never as raw strings.
    api = [(f.name, f.field_type) for f in client.get_table(f"{client.project}.{ds}.api_t").schema]
    ddl = [(f.name, f.field_type) for f in client.get_table(f"{client.project}.{ds}.ddl_t").schema]
    assert api == [("id", "INT64"), ("amount", "NUMERIC"), ("ok", "BOOL")]
    assert ddl == [("id", "INTEGER"), ("amount", "NUMERIC"), ("ok", "BOOLEAN"), ("ts", "TIMESTAMP")]
    with pytest.raises(gexc.NotFound):
        client.get_table(f"{client.project}.{ds}.missing")


# 8 -------------------------------------------------------------------------------------------------
LOAD_SCHEMA = [
    bigquery.SchemaField("id", "INT64"),
    bigquery.SchemaField("email", "STRING"),
    bigquery.SchemaField("amount", "NUMERIC"),
    bigquery.SchemaField("ts", "TIMESTAMP"),
    bigquery.SchemaField("active", "BOOL"),
]


def synthetic_rows(n: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "email": f"u{i}@x.test", "amount": f"{i}.25", "ts": "2024-01-01T00:00:00Z", "active": i % 2 == 0}
        for i in range(n)
    ]


def test_load_table_from_json_small_batch(client: bigquery.Client, ds: str) -> None:
    """load_table_from_json of 5,000 rows works once small uploads are sent as application/octet-stream."""
    import google.cloud.bigquery.client as bq_client_module

    table_id = f"{client.project}.{ds}.leads"
    client.create_table(bigquery.Table(table_id, schema=LOAD_SCHEMA))
    rows = synthetic_rows(5000)
    config = bigquery.LoadJobConfig(schema=LOAD_SCHEMA, write_disposition="WRITE_APPEND")

    assert bq_client_module._GENERIC_CONTENT_TYPE == "application/octet-stream"  # set by EmulatorHandle.client()
    bq_client_module._GENERIC_CONTENT_TYPE = "*/*"  # the library default, to prove the quirk
    try:
        with pytest.raises(gexc.BadRequest, match="unsupported Content-Type"):
            client.load_table_from_json(rows[:10], table_id, job_config=config)
    finally:
        bq_client_module._GENERIC_CONTENT_TYPE = "application/octet-stream"

    job = client.load_table_from_json(rows, table_id, job_config=config)
    job.result(timeout=120)
    assert job.output_rows == 5000
    _, got = run(client, f"SELECT COUNT(*) AS n, SUM(amount) AS total, MIN(ts) AS first FROM {ds}.leads")
    assert got == [
        {
            "n": 5000,
            "total": Decimal(sum(range(5000))) + Decimal("0.25") * 5000,
            "first": dt.datetime(2024, 1, 1, tzinfo=UTC),
        }
    ]


def test_csv_load_drops_first_row_without_header(client: bigquery.Client, ds: str) -> None:
    """A CSV load without a header loses its first row; with a header row and skip_leading_rows=1 all rows arrive."""
    table_id = f"{client.project}.{ds}.leads"
    client.create_table(bigquery.Table(table_id, schema=LOAD_SCHEMA))

    def csv_bytes(header: bool) -> io.BytesIO:
        text = io.StringIO()
        writer = csv.writer(text)
        if header:
            writer.writerow([f.name for f in LOAD_SCHEMA])
        for row in synthetic_rows(100):
            writer.writerow(
                [row["id"], row["email"], row["amount"], "2024-01-01 00:00:00+00", str(row["active"]).lower()]
            )
        return io.BytesIO(text.getvalue().encode())

    for header, skip, expected in ((False, 0, 99), (True, 1, 100)):
        run(client, f"TRUNCATE TABLE {ds}.leads")
        config = bigquery.LoadJobConfig(source_format="CSV", schema=LOAD_SCHEMA, skip_leading_rows=skip)
        client.load_table_from_file(csv_bytes(header), table_id, job_config=config).result(timeout=60)
        _, got = run(client, f"SELECT COUNT(*) AS n FROM {ds}.leads")
        assert got == [{"n": expected}], f"header={header}"


@pytest.mark.slow
def test_bulk_300k_rows_fastest_method(client: bigquery.Client, ds: str, tmp_path: Path) -> None:
    """300,000 rows load in seconds: SQL GENERATE_ARRAY, Parquet, NDJSON file and load_table_from_json all work."""
    n = 300_000
    timings: dict[str, float] = {}

    def fresh(name: str) -> str:
        table_id = f"{client.project}.{ds}.{name}"
        client.create_table(bigquery.Table(table_id, schema=LOAD_SCHEMA))
        return table_id

    def check(name: str) -> None:
        _, got = run(
            client, f"SELECT COUNT(*) AS n, COUNT(DISTINCT email) AS emails, SUM(amount) AS total FROM {ds}.{name}"
        )
        assert got == [{"n": n, "emails": n, "total": Decimal(sum(range(n))) + Decimal("0.25") * n}], name

    # a) generated in SQL, no upload at all
    fresh("gen")
    start = time.perf_counter()
    job, _ = run(
        client,
        f"""INSERT INTO {ds}.gen (id, email, amount, ts, active)
SELECT i, CONCAT('u', CAST(i AS STRING), '@x.test'), CAST(i AS NUMERIC) + NUMERIC '0.25',
       TIMESTAMP_ADD(TIMESTAMP '2024-01-01 00:00:00+00', INTERVAL MOD(i, 1440) MINUTE), MOD(i, 2) = 0
FROM UNNEST(GENERATE_ARRAY(0, {n - 1})) AS i""",
    )
    timings["INSERT ... SELECT FROM UNNEST(GENERATE_ARRAY)"] = time.perf_counter() - start
    assert job.num_dml_affected_rows == n
    check("gen")

    # b) Parquet file written by the product's DuckDB, uploaded as a load job
    import duckdb

    parquet = tmp_path / "rows.parquet"
    start = time.perf_counter()
    duckdb.sql(f"""COPY (SELECT i::BIGINT AS id, 'u' || i || '@x.test' AS email, (i || '.25')::DECIMAL(38, 9) AS amount,
                     TIMESTAMPTZ '2024-01-01 00:00:00+00' AS ts, i % 2 = 0 AS active FROM range({n}) t(i))
                   TO '{parquet}' (FORMAT parquet)""")
    with parquet.open("rb") as fh:
        load_job = client.load_table_from_file(
            fh, fresh("parquet"), job_config=bigquery.LoadJobConfig(source_format="PARQUET")
        )
    load_job.result(timeout=300)
    timings["Parquet load job (incl. writing the file)"] = time.perf_counter() - start
    check("parquet")

    # c) newline-delimited JSON file (resumable upload, no content-type quirk)
    rows = synthetic_rows(n)
    start = time.perf_counter()
    body = io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())
    load_job = client.load_table_from_file(
        body,
        fresh("ndjson"),
        job_config=bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", schema=LOAD_SCHEMA),
    )
    load_job.result(timeout=300)
    timings["NDJSON load job (incl. serialising)"] = time.perf_counter() - start
    check("ndjson")

    # d) load_table_from_json (>5 MiB, so resumable)
    start = time.perf_counter()
    client.load_table_from_json(rows, fresh("json"), job_config=bigquery.LoadJobConfig(schema=LOAD_SCHEMA)).result(
        timeout=300
    )
    timings["load_table_from_json"] = time.perf_counter() - start
    check("json")

    print("\n300k-row bulk load timings on the emulator:")
    for method, seconds in sorted(timings.items(), key=lambda item: item[1]):
        print(f"  {seconds:6.2f} s  {method}")
    assert max(timings.values()) < 120


# 9 -------------------------------------------------------------------------------------------------
def test_parameterised_dml_and_insert_from_unnest(client: bigquery.Client, ds: str) -> None:
    """UPDATE/DELETE with parameters and INSERT INTO ... SELECT FROM UNNEST(@rows) report correct affected rows."""
    run(client, f"CREATE TABLE {ds}.t (id INT64, email STRING, amount NUMERIC(38, 9), ts TIMESTAMP, note STRING)")
    fields = [("id", "INT64"), ("email", "STRING"), ("amount", "NUMERIC"), ("ts", "TIMESTAMP")]
    batch = rows_param(
        "rows", fields, [(1, "a@x.test", BIG, TS), (2, None, None, None), (3, "c@x.test", Decimal("1.5"), TS)]
    )
    job, _ = run(
        client,
        f"INSERT INTO {ds}.t (id, email, amount, ts) SELECT r.id, r.email, r.amount, r.ts FROM UNNEST(@rows) AS r",
        [batch],
    )
    assert job.num_dml_affected_rows == 3

    job, _ = run(
        client,
        f"UPDATE {ds}.t SET note = @note WHERE id IN UNNEST(@ids) AND (ts IS NULL OR ts < @cutoff)",
        [
            bigquery.ScalarQueryParameter("note", "STRING", "done"),
            bigquery.ArrayQueryParameter("ids", "INT64", [1, 2]),
            bigquery.ScalarQueryParameter("cutoff", "TIMESTAMP", dt.datetime(2030, 1, 1, tzinfo=UTC)),
        ],
    )
    assert job.num_dml_affected_rows == 2
    job, _ = run(
        client,
        f"DELETE FROM {ds}.t WHERE email = @email",
        [bigquery.ScalarQueryParameter("email", "STRING", "c@x.test")],
    )
    assert job.num_dml_affected_rows == 1
    job, _ = run(
        client, f"DELETE FROM {ds}.t WHERE email = @email", [bigquery.ScalarQueryParameter("email", "STRING", "nobody")]
    )
    assert job.num_dml_affected_rows == 0
    _, rows = run(client, f"SELECT id, email, amount, ts, note FROM {ds}.t ORDER BY id")
    assert rows == [
        {"id": 1, "email": "a@x.test", "amount": BIG, "ts": TS, "note": "done"},
        {"id": 2, "email": None, "amount": None, "ts": None, "note": "done"},
    ]


def test_query_and_wait_and_paging(client: bigquery.Client, ds: str) -> None:
    """client.query_and_wait (jobs.query path) and paged results return every row."""
    run(client, f"CREATE TABLE {ds}.t AS SELECT i AS id FROM UNNEST(GENERATE_ARRAY(1, 2500)) AS i")
    result = client.query_and_wait(
        f"SELECT id FROM {ds}.t WHERE id > @low",
        page_size=1000,
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("low", "INT64", 500)], labels={"app": "coldsync"}
        ),
    )
    assert sorted(row["id"] for row in result) == list(range(501, 2501))
    listed = client.list_rows(f"{client.project}.{ds}.t", page_size=700)
    assert sum(1 for _ in listed) == 2500
