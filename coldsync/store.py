"""The sync's warehouse side: every statement the phases run, each batched over all rows.

One MERGE per table per phase, query parameters only, no streaming inserts. The number of
statements a run sends does not grow with the number of leads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coldsync.outcomes import PolicyTable, default_table
from coldsync.redact import mask_email, redact
from coldsync.routes import THRESHOLD_PLACEHOLDER, Routing, default_routing
from coldsync.runlock import (
    ACQUIRE_LOCK_SQL,
    BREAK_LOCK_SQL,
    LOCK_FREE_AT,
    LOCK_NAME,
    READ_LOCK_SQL,
    RELEASE_LOCK_SQL,
    Holder,
    LockMissing,
    LockRow,
    describe_holder,
    may_take,
)
from coldsync.settings import Settings
from coldsync.suppression import (
    address_key,
    dnc_key_stamp,
    history_key_stamp,
    sql_email_key,
    sql_erasure_hash,
)
from coldsync.warehouse.base import Param, Rows, StringArray, Warehouse, WarehouseError
from coldsync.warehouse.schema import (
    CANDIDATE_COLUMNS,
    CANDIDATE_ROW_COLUMNS,
    CANDIDATES,
    CANDIDATES_REFRESH_KEY,
    DNC_KEY_CTES,
    DNC_KEYS_VIEW,
    DNC_REJECTS_VIEW,
    DROP_CANDIDATES_STAGING_SQL,
    HISTORY_KEYS_VIEW,
    PRIORITY_ORDER,
    READY_QUEUE,
    READY_QUEUE_KEY,
    REJECTS_VIEW,
    SALT_SQL,
    SET_VIEWS_FINGERPRINT_SQL,
    SOURCE_BINDING_KEY,
    STAGED_REJECT_COUNTS_SQL,
    VIEWS_FINGERPRINT_KEY,
    address_key_ctes,
    candidate_ctes,
    candidates_fingerprint,
    candidates_merge_sql,
    candidates_rebuild_sql,
    candidates_stage_sql,
    ready_queue_build_sql,
    ready_queue_guard_sql,
    rejects_view_sql,
    routed_cte,
    suppression_reason,
    trusted_key_guard,
    views,
    views_built_rows,
    views_fingerprint,
)

log = logging.getLogger("coldsync.store")

BLOCKLIST_SOURCE = "instantly_blocklist"
"""DNC source of entries pulled from (or confirmed on) Instantly's workspace block list."""

# --- state ---------------------------------------------------------------------------------------

STATE_FIELDS = (
    ("email", "STRING"), ("op", "STRING"), ("campaign_id", "STRING"), ("sequence_target", "STRING"),
    ("status", "STRING"), ("instantly_lead_id", "STRING"), ("attempt_num", "INT64"), ("outcome", "STRING"),
    ("added_at", "TIMESTAMP"), ("arm", "STRING"), ("hold_until", "TIMESTAMP"), ("completed_at", "TIMESTAMP"),
)

# op 'upsert' inserts or updates (NULL fields keep the stored value); op 'delete' removes the row.
# A row inserted without an attempt number (a lead adopted from Instantly) is the attempt after the
# person's last one in history (by suppression key): numbering it 1 would merge its outcome into an
# earlier attempt's row. The row itself is matched on its stored address: it is the row's identity.
# (A scalar subquery, not a LEFT JOIN: the BigQuery emulator mis-binds a join in this MERGE's source.)
APPLY_STATE_SQL = f"""
MERGE `{{ds}}.ops_inst_state` AS t
USING (
  SELECT r.email, r.op, r.campaign_id, r.sequence_target, r.status, r.instantly_lead_id, r.attempt_num,
         r.outcome, r.added_at, r.arm, r.hold_until, r.completed_at,
         (SELECT MAX(h.last_attempt) FROM `{{ds}}.{HISTORY_KEYS_VIEW}` AS h
          WHERE h.email_key = {sql_email_key("r.email")}) AS last_attempt
  FROM UNNEST(@rows) AS r
) AS s
ON t.email = s.email
WHEN MATCHED AND s.op = 'delete' THEN DELETE
WHEN MATCHED AND s.op = 'upsert' THEN UPDATE SET
  campaign_id = COALESCE(s.campaign_id, t.campaign_id),
  sequence_target = COALESCE(s.sequence_target, t.sequence_target),
  status = COALESCE(s.status, t.status),
  instantly_lead_id = COALESCE(s.instantly_lead_id, t.instantly_lead_id),
  attempt_num = COALESCE(s.attempt_num, t.attempt_num),
  outcome = COALESCE(s.outcome, t.outcome),
  arm = COALESCE(s.arm, t.arm),
  hold_until = COALESCE(s.hold_until, t.hold_until),
  completed_at = COALESCE(s.completed_at, t.completed_at),
  updated_at = @now,
  run_id = @run_id
WHEN NOT MATCHED AND s.op = 'upsert' THEN
  INSERT (email, campaign_id, sequence_target, status, instantly_lead_id, attempt_num, outcome, added_at,
          updated_at, run_id, arm, hold_until, completed_at)
  VALUES (s.email, s.campaign_id, s.sequence_target, s.status, s.instantly_lead_id,
          COALESCE(s.attempt_num, s.last_attempt + 1, 1), s.outcome, COALESCE(s.added_at, @now), @now, @run_id,
          s.arm, s.hold_until, s.completed_at)
"""  # noqa: S608

# Every state row, with `suppressed`: how its person is suppressed ('email', 'domain', 'erased'), or
# NULL. The drain takes suppressed leads out (one read serves both).
READ_STATE_SQL = f"""
WITH {DNC_KEY_CTES},
{address_key_ctes("st", "`{ds}.ops_inst_state`", "email",
                  "email, campaign_id, sequence_target, status, instantly_lead_id, attempt_num, outcome, "
                  "added_at, run_id, arm, hold_until, completed_at")}
SELECT st.email, st.campaign_id, st.sequence_target, st.status, st.instantly_lead_id, st.attempt_num, st.outcome,
       st.added_at, st.run_id, st.arm, st.hold_until, st.completed_at,
       IF(st.email_key IS NULL, NULL, {suppression_reason("st.email_key", SALT_SQL)}) AS suppressed
FROM st
"""  # noqa: S608

# --- history ---------------------------------------------------------------------------------------

HISTORY_FIELDS = (
    ("email", "STRING"), ("campaign_id", "STRING"), ("sequence_name", "STRING"), ("status_final", "STRING"),
    ("completed_at", "TIMESTAMP"), ("attempt_num", "INT64"), ("instantly_lead_id", "STRING"),
    ("reason", "STRING"), ("arm", "STRING"), ("policy", "STRING"), ("interest_status", "INT64"),
    ("return_at", "TIMESTAMP"), ("in_instantly", "STRING"), ("reply_count", "INT64"), ("open_count", "INT64"),
    ("last_step_id", "STRING"), ("step_reached", "INT64"), ("added_at", "TIMESTAMP"),
)

# Idempotent on (email, campaign_id, attempt_num), and on the Instantly lead id for leads whose attempt
# number the warehouse did not know (orphans): a re-run after a crash never writes a second row. An
# unknown attempt number is the one after the PERSON's last (by suppression key, v_history_by_key). A row
# whose attempt number is known never matches by lead id alone: a lead Instantly kept (e.g. moved to a list)
# answers a later attempt's add with its old id, and that attempt's row must still be written.
# The ON clause matches the row's own stored address: rows written by coldsync carry the normalized
# address of the lead, so the same attempt is always the same text. A row is written with its key and the key's
# check (HISTORY_KEY_STAMP_FIELDS: coldsync.suppression.history_key_stamp), so reads trust its key from the start.
HISTORY_KEY_STAMP_FIELDS = (("email_key", "STRING"), ("email_key_check", "STRING"))
RECORD_HISTORY_FIELDS = (*HISTORY_FIELDS, *HISTORY_KEY_STAMP_FIELDS)
RECORD_HISTORY_SQL = f"""
MERGE `{{ds}}.ops_lead_history` AS t
USING (
  SELECT r.email, r.campaign_id, r.sequence_name, r.status_final, r.completed_at,
         COALESCE(r.attempt_num,
                  COALESCE((SELECT MAX(h.last_attempt) FROM `{{ds}}.{HISTORY_KEYS_VIEW}` AS h
                            WHERE h.email_key = {sql_email_key("r.email")}), 0) + 1) AS attempt_num,
         r.instantly_lead_id, r.reason, r.arm, r.policy, r.interest_status, r.return_at, r.in_instantly,
         r.reply_count, r.open_count, r.last_step_id, r.step_reached, r.added_at,
         r.email_key, r.email_key_check,
         r.attempt_num IS NULL AS attempt_unknown
  FROM UNNEST(@rows) AS r
) AS s
ON t.email = s.email AND t.campaign_id = s.campaign_id
   AND (t.attempt_num = s.attempt_num OR (s.attempt_unknown AND t.instantly_lead_id = s.instantly_lead_id))
WHEN NOT MATCHED THEN
  INSERT (email, campaign_id, sequence_name, status_final, completed_at, attempt_num, instantly_lead_id,
          reason, recorded_at, run_id, arm, policy, interest_status, return_at, in_instantly, reply_count,
          open_count, last_step_id, step_reached, added_at, email_key, email_key_check)
  VALUES (s.email, s.campaign_id, s.sequence_name, s.status_final, s.completed_at, s.attempt_num,
          s.instantly_lead_id, s.reason, @now, @run_id, s.arm, s.policy, s.interest_status, s.return_at,
          s.in_instantly, s.reply_count, s.open_count, s.last_step_id, s.step_reached, s.added_at,
          s.email_key, s.email_key_check)
"""  # noqa: S608

# A held lead re-read during its hold (coldsync.phases.drain): its attempt's row takes the policy, interest
# status and return date (and, when it unsubscribed or bounced, the outcome) the lead has now. Keyed like
# RECORD_HISTORY_SQL; a row not written yet is left to it, and a row that already says so is not touched (a
# quiet run changes nothing).
UPDATE_HISTORY_POLICY_SQL = """
MERGE `{ds}.ops_lead_history` AS t
USING (SELECT r.email, r.campaign_id, r.attempt_num, r.instantly_lead_id, r.status_final, r.reason, r.policy,
              r.interest_status, r.return_at, r.in_instantly FROM UNNEST(@rows) AS r) AS s
ON t.email = s.email AND t.campaign_id = s.campaign_id
   AND (t.attempt_num = s.attempt_num OR t.instantly_lead_id = s.instantly_lead_id)
WHEN MATCHED AND ((s.status_final IS NOT NULL AND t.status_final != s.status_final)
                  OR (t.policy IS NULL) != (s.policy IS NULL) OR t.policy != s.policy
                  OR (t.interest_status IS NULL) != (s.interest_status IS NULL)
                  OR t.interest_status != s.interest_status
                  OR (t.return_at IS NULL) != (s.return_at IS NULL) OR t.return_at != s.return_at
                  OR (s.in_instantly IS NOT NULL AND (t.in_instantly IS NULL OR t.in_instantly != s.in_instantly)))
  THEN UPDATE SET
  status_final = COALESCE(s.status_final, t.status_final),
  reason = COALESCE(s.reason, t.reason),
  in_instantly = COALESCE(s.in_instantly, t.in_instantly),
  policy = s.policy,
  interest_status = s.interest_status,
  return_at = s.return_at,
  run_id = @run_id
"""

# --- campaign analytics per day (coldsync.phases.analytics) ----------------------------------------

CAMPAIGN_DAILY_COUNTERS = ("leads", "contacted", "new_leads_contacted", "emails_sent", "opened", "opens", "replied",
                           "replies", "bounced", "unsubscribed", "interested")
CAMPAIGN_DAILY_FIELDS = (
    ("campaign_id", "STRING"), ("day", "DATE"), ("route", "STRING"), ("arm", "STRING"),
    *((name, "INT64") for name in CAMPAIGN_DAILY_COUNTERS), ("fetched_at", "TIMESTAMP"), ("run_id", "STRING"),
)

# Idempotent per (campaign_id, day): a day read again replaces its counters; a counter this read could not
# get (NULL: its call failed; `leads` on a past day) keeps the value it had.
RECORD_CAMPAIGN_DAILY_SQL = f"""
MERGE `{{ds}}.ops_campaign_daily` AS t
USING (SELECT {", ".join(f"r.{name}" for name, _t in CAMPAIGN_DAILY_FIELDS)} FROM UNNEST(@rows) AS r) AS s
ON t.campaign_id = s.campaign_id AND t.day = s.day
WHEN MATCHED THEN UPDATE SET
  route = COALESCE(s.route, t.route), arm = COALESCE(s.arm, t.arm),
  {", ".join(f"{name} = COALESCE(s.{name}, t.{name})" for name in CAMPAIGN_DAILY_COUNTERS)},
  fetched_at = s.fetched_at, run_id = s.run_id
WHEN NOT MATCHED THEN
  INSERT ({", ".join(name for name, _t in CAMPAIGN_DAILY_FIELDS)})
  VALUES ({", ".join(f"s.{name}" for name, _t in CAMPAIGN_DAILY_FIELDS)})
"""  # noqa: S608

# --- do-not-contact ------------------------------------------------------------------------------

DNC_FIELDS = (
    ("email", "STRING"), ("domain", "STRING"), ("email_key", "STRING"), ("domain_key", "STRING"),
    ("email_hash", "STRING"), ("instantly_blocklist_id", "STRING"), ("source", "STRING"), ("reason", "STRING"),
    ("email_key_check", "STRING"), ("domain_key_check", "STRING"),
)

# One entry per key: an entry whose key (email key, domain key, erased hash) is already listed is not
# added again; it only brings the Instantly block-list id when the listed entry has none yet. An entry
# no key can be made for is kept all the same (v_dnc_rejects reports it), once per raw value.
ADD_DNC_SQL = """
MERGE `{ds}.ops_dnc` AS t
USING (
  SELECT r.email, r.domain, r.email_key, r.domain_key, r.email_hash, r.instantly_blocklist_id, r.source, r.reason,
         r.email_key_check, r.domain_key_check
  FROM UNNEST(@rows) AS r
) AS s
ON (COALESCE(s.email_key, s.domain_key, s.email_hash) IS NOT NULL
    AND COALESCE(t.email_key, '') = COALESCE(s.email_key, '')
    AND COALESCE(t.domain_key, '') = COALESCE(s.domain_key, '')
    AND COALESCE(t.email_hash, '') = COALESCE(s.email_hash, ''))
   OR (COALESCE(s.email_key, s.domain_key, s.email_hash) IS NULL
    AND COALESCE(t.email, '') = COALESCE(s.email, '') AND COALESCE(t.domain, '') = COALESCE(s.domain, ''))
WHEN MATCHED AND t.instantly_blocklist_id IS NULL AND s.instantly_blocklist_id IS NOT NULL THEN
  UPDATE SET instantly_blocklist_id = s.instantly_blocklist_id
WHEN NOT MATCHED THEN
  INSERT (email, domain, email_key, domain_key, email_hash, instantly_blocklist_id, source, reason, added_at,
          run_id, email_key_check, domain_key_check)
  VALUES (s.email, s.domain, s.email_key, s.domain_key, s.email_hash, s.instantly_blocklist_id, s.source,
          s.reason, @now, @run_id, s.email_key_check, s.domain_key_check)
"""

# The key back-fill (Store.backfill_keys): rows whose stored keys are not trusted (trusted_key_guard fails for a
# raw value: no key, no check, or a check that no longer binds the rule, the raw value and the key: edited by hand,
# keyed under another rule), with what they hold now; the Python side decides per row (restamp_dnc_row,
# restamp_history_row) and ONE MERGE per table writes what changes.
_DNC_EMAIL_TRUSTED = f"COALESCE({trusted_key_guard('email', ('email_key', 'email_key_check'))}, FALSE)"
_DNC_DOMAIN_TRUSTED = f"COALESCE({trusted_key_guard('domain', ('domain_key', 'domain_key_check'))}, FALSE)"
DNC_MISSING_KEYS_SQL = f"""
SELECT email, domain, email_key, domain_key, email_key_check, domain_key_check,
       LOGICAL_AND(instantly_blocklist_id IS NULL AND source != '{BLOCKLIST_SOURCE}') AS pushable
FROM `{{ds}}.ops_dnc`
WHERE (email IS NOT NULL AND NOT {_DNC_EMAIL_TRUSTED}) OR (domain IS NOT NULL AND NOT {_DNC_DOMAIN_TRUSTED})
GROUP BY email, domain, email_key, domain_key, email_key_check, domain_key_check
"""  # noqa: S608

DNC_KEY_FIELDS = (
    ("email", "STRING"), ("domain", "STRING"), ("old_email_key", "STRING"), ("old_domain_key", "STRING"),
    ("email_key", "STRING"), ("domain_key", "STRING"), ("email_key_check", "STRING"), ("domain_key_check", "STRING"),
)

# The rows of each (raw values, stored keys) group: a NULL key gets the key; a check is written only where the row
# carries one (NULL: that part's stored key differs from its raw value's, so it and its check stay as they are).
SET_DNC_KEYS_SQL = """
MERGE `{ds}.ops_dnc` AS t
USING (SELECT r.email, r.domain, r.old_email_key, r.old_domain_key, r.email_key, r.domain_key, r.email_key_check,
              r.domain_key_check FROM UNNEST(@rows) AS r) AS s
ON (t.email = s.email OR (t.email IS NULL AND s.email IS NULL))
   AND (t.domain = s.domain OR (t.domain IS NULL AND s.domain IS NULL))
   AND (t.email_key = s.old_email_key OR (t.email_key IS NULL AND s.old_email_key IS NULL))
   AND (t.domain_key = s.old_domain_key OR (t.domain_key IS NULL AND s.old_domain_key IS NULL))
WHEN MATCHED THEN UPDATE SET
  email_key = COALESCE(t.email_key, s.email_key), domain_key = COALESCE(t.domain_key, s.domain_key),
  email_key_check = COALESCE(s.email_key_check, t.email_key_check),
  domain_key_check = COALESCE(s.domain_key_check, t.domain_key_check)
"""

_HISTORY_TRUSTED = f"COALESCE({trusted_key_guard('email', ('email_key', 'email_key_check'))}, FALSE)"
HISTORY_MISSING_KEYS_SQL = f"""
SELECT email, email_key, email_key_check FROM `{{ds}}.ops_lead_history`
WHERE email IS NOT NULL AND NOT {_HISTORY_TRUSTED}
GROUP BY email, email_key, email_key_check
"""  # noqa: S608

HISTORY_KEY_FIELDS = (("email", "STRING"), ("old_email_key", "STRING"), ("email_key", "STRING"),
                      ("email_key_check", "STRING"))

SET_HISTORY_KEYS_SQL = """
MERGE `{ds}.ops_lead_history` AS t
USING (SELECT r.email, r.old_email_key, r.email_key, r.email_key_check FROM UNNEST(@rows) AS r) AS s
ON t.email = s.email AND (t.email_key = s.old_email_key OR (t.email_key IS NULL AND s.old_email_key IS NULL))
WHEN MATCHED THEN UPDATE SET email_key = s.email_key, email_key_check = s.email_key_check
"""

_DNC_PARTS = (("email", "email_key", "email_key_check"), ("domain", "domain_key", "domain_key_check"))


def restamp_dnc_row(row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """What the back-fill writes for one (email, domain, email_key, domain_key, email_key_check, domain_key_check)
    group of DNC_MISSING_KEYS_SQL: (the DNC_KEY_FIELDS row, or None when nothing changes; whether a stored key
    differs from its raw value's key). Per part (email, domain): a NULL key gets the key and its check; a key equal
    to its raw value's gets its check (when it is not the right one already); a differing key is never replaced
    nor checked: the SQL keys the raw value AND the stored key keeps blocking (re-keying never un-suppresses
    anyone)."""
    stamp = dnc_key_stamp(row.get("email"), row.get("domain"))
    differs = False
    checks: dict[str, Any] = {}
    for raw, key, check in _DNC_PARTS:
        stored = row.get(key)
        if row.get(raw) is not None and stored is not None and stored != stamp[key]:
            differs = True
        elif stamp[key] is not None and (stored, row.get(check)) != (stamp[key], stamp[check]):
            checks[check] = stamp[check]
    if not checks:
        return None, differs
    return {"email": row.get("email"), "domain": row.get("domain"), "old_email_key": row.get("email_key"),
            "old_domain_key": row.get("domain_key"), "email_key": stamp["email_key"],
            "domain_key": stamp["domain_key"], "email_key_check": checks.get("email_key_check"),
            "domain_key_check": checks.get("domain_key_check")}, differs


EDITED_ENTRY_SOURCE = "edited_entry"
"""ops_dnc.source of an entry the back-fill adds for a value written by hand over an entry already keyed."""


def edited_values(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For a DNC group whose stored key differs from the key of its raw value now (restamp_dnc_row: the value was
    edited by hand after it was keyed): a new entry for each such edited value that has a key (dnc_row, keyed in
    Python), so the new value blocks whoever it names while the old key keeps blocking the old one."""
    stamp = dnc_key_stamp(row.get("email"), row.get("domain"))
    out: list[dict[str, Any]] = []
    for raw, key, _check in _DNC_PARTS:
        value, stored = row.get(raw), row.get(key)
        if isinstance(value, str) and stored is not None and stamp[key] is not None and stored != stamp[key]:
            out.append(dnc_row(**{raw: value}, source=EDITED_ENTRY_SOURCE,
                               reason="a listed entry was edited by hand to this value after it was keyed"))
    return out


def restamp_history_row(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the back-fill writes for one (email, email_key, email_key_check) group of HISTORY_MISSING_KEYS_SQL:
    the HISTORY_KEY_FIELDS row, or None when nothing changes. A
    NULL, equal or differing key is replaced by its email's key and its check: unlike a DNC entry's, a history
    row's stored key never counted unless its check matched (the rules read the key SQL computes from the email,
    which is the key written here), so replacing it changes nothing any rule reads. An email only Python can key
    (sql_equal_address_key is None) is left as it is and keyed in SQL."""
    stamp = history_key_stamp(row.get("email"))
    stored = row.get("email_key")
    if stamp["email_key"] is None or (stored, row.get("email_key_check")) == (stamp["email_key"],
                                                                               stamp["email_key_check"]):
        return None
    return {"email": row.get("email"), "old_email_key": stored, "email_key": stamp["email_key"],
            "email_key_check": stamp["email_key_check"]}


# Entries to mirror to Instantly's block list: usable, not an erased hash, not from the block list
# itself, not yet mirrored (instantly_blocklist_id is the entry id, or 'refused' when Instantly would
# not take the value: it is not offered again).
DNC_TO_PUSH_SQL = f"""
SELECT email, domain, email_key, domain_key FROM `{{ds}}.ops_dnc`
WHERE instantly_blocklist_id IS NULL AND email_hash IS NULL AND source != '{BLOCKLIST_SOURCE}'
  AND (email_key IS NOT NULL OR domain_key IS NOT NULL)
ORDER BY added_at, email_key, domain_key
LIMIT @limit
"""  # noqa: S608

BLOCKLIST_REFUSED = "refused"

DNC_REJECT_COUNTS_SQL = f"""
SELECT reason, COUNT(*) AS n FROM `{{ds}}.{DNC_REJECTS_VIEW}` GROUP BY reason
"""  # noqa: S608

# The do-not-contact list's upkeep, and the stored keys of both keyed tables, in ONE read per run: DNC entries
# whose stored keys are not trusted ('missing', with what they hold: restamp_dnc_row), the unusable ones by
# reason ('reject', from v_dnc_rejects), the entries to mirror ('push'), and history rows whose stored key is not
# trusted ('history': restamp_history_row).
_NULL = "CAST(NULL AS STRING)"
DNC_UPKEEP_SQL = f"""
SELECT IF(m.pushable, 'missing_pushable', 'missing') AS kind, m.email, m.domain, m.email_key, m.domain_key,
       m.email_key_check, m.domain_key_check, {_NULL} AS reason, CAST(NULL AS INT64) AS n
FROM ({DNC_MISSING_KEYS_SQL}) AS m
UNION ALL
SELECT 'reject', NULL, NULL, NULL, NULL, NULL, NULL, r.reason, COUNT(*) FROM `{{ds}}.{DNC_REJECTS_VIEW}` AS r
GROUP BY r.reason
UNION ALL
SELECT 'push', p.email, p.domain, p.email_key, p.domain_key, NULL, NULL, NULL, NULL FROM ({DNC_TO_PUSH_SQL}) AS p
UNION ALL
SELECT 'history', h.email, NULL, h.email_key, NULL, h.email_key_check, NULL, NULL, NULL
FROM ({HISTORY_MISSING_KEYS_SQL}) AS h
"""  # noqa: S608

# Which of these addresses (as Instantly gave them) belong to a suppressed person, and how.
SUPPRESSED_EMAILS_SQL = f"""
WITH {DNC_KEY_CTES},
{address_key_ctes("given", "UNNEST(@emails) AS e", "e", "e AS email")},
judged AS (
  SELECT g.email, {suppression_reason("g.email_key", SALT_SQL)} AS how
  FROM given AS g
  WHERE g.email_key IS NOT NULL
)
SELECT email, how FROM judged WHERE how IS NOT NULL
"""  # noqa: S608


# Of these email keys, those of erased persons (their salted hash is on the list): a pull of Instantly's
# block list must not bring an erased address back in plain text.
ERASED_AMONG_SQL = f"""
SELECT k AS email_key FROM UNNEST(@keys) AS k
WHERE {sql_erasure_hash("k", SALT_SQL)} IN (SELECT d.key FROM `{{ds}}.{DNC_KEYS_VIEW}` AS d WHERE d.kind = 'hash')
"""  # noqa: S608


# Webhook events the sync consumes (coldsync.phases.events), in ONE read: rows received since @since (a
# watermark minus a margin), of these types, collapsed by dedup_key (a delivery may be stored twice: BigQuery's
# streaming insertId is best effort, the backfill may repeat a live delivery). The parts the key hashes are the
# same in every repeat; MIN picks one of the rest (the raw address, a lead id) the same way on both engines.
READ_EVENTS_SQL = """
SELECT e.dedup_key, MIN(e.event_type) AS event_type, MIN(e.email) AS email, MIN(e.email_key) AS email_key,
       MIN(e.campaign_id) AS campaign_id, MIN(e.lead_id) AS lead_id, MIN(e.event_at) AS event_at,
       MIN(e.received_at) AS received_at, MAX(e.received_at) AS last_received_at
FROM `{ds}.ops_instantly_events` AS e
WHERE e.received_at >= @since AND e.event_type IN UNNEST(@types)
GROUP BY e.dedup_key
ORDER BY received_at, e.dedup_key
"""


def dnc_row(*, email: str | None = None, domain: str | None = None, source: str, reason: str,
            blocklist_id: str | None = None) -> dict[str, Any]:
    """A do-not-contact row with its keys computed here (the raw values kept beside them, for audit) and their
    checks (coldsync.suppression.dnc_key_stamp: email_key_check, domain_key_check)."""
    return {"email": email, "domain": domain, **dnc_key_stamp(email, domain), "email_hash": None,
            "instantly_blocklist_id": blocklist_id, "source": source, "reason": reason}


def stamped_dnc_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` (DNC_FIELDS; keys computed when it carries none) with the check of each key that is the key of its
    raw value (dnc_key_stamp), and no check beside any other (the SQL then keys that raw value too, and the next
    run's back-fill judges the row)."""
    stamp = dnc_key_stamp(row.get("email"), row.get("domain"))
    out = dict(row)
    if "email_key" not in out and "domain_key" not in out:
        out.update(email_key=stamp["email_key"], domain_key=stamp["domain_key"])
    for _raw, key, check in _DNC_PARTS:
        out[check] = stamp[check] if out.get(key) == stamp[key] else None
    return out


# --- dead letters --------------------------------------------------------------------------------

DEAD_LETTER_FIELDS = (
    ("id", "STRING"), ("phase", "STRING"), ("operation", "STRING"), ("email", "STRING"),
    ("campaign_id", "STRING"), ("instantly_lead_id", "STRING"), ("http_status", "INT64"),
    ("error_text", "STRING"), ("resolve", "BOOL"), ("give_up_reason", "STRING"),
)

# A failure inserts a row or counts one more retry on the open row of the same operation; `resolve`
# closes it; `give_up_reason` closes it for good (a failure that cannot succeed on retry is inserted
# already given up, so it is visible but not retried).
RECORD_DEAD_LETTERS_SQL = """
MERGE `{ds}.ops_dead_letters` AS t
USING (
  SELECT r.id, r.phase, r.operation, r.email, r.campaign_id, r.instantly_lead_id, r.http_status,
         r.error_text, r.resolve, r.give_up_reason
  FROM UNNEST(@rows) AS r
) AS s
ON t.id = s.id AND t.resolved_at IS NULL AND t.gave_up_at IS NULL
WHEN MATCHED AND s.resolve THEN UPDATE SET resolved_at = @now, last_attempt_at = @now, run_id = @run_id
WHEN MATCHED AND s.give_up_reason IS NOT NULL THEN UPDATE SET
  gave_up_at = @now, give_up_reason = s.give_up_reason, last_attempt_at = @now, run_id = @run_id
WHEN MATCHED THEN UPDATE SET
  retry_count = t.retry_count + 1, http_status = s.http_status, error_text = s.error_text,
  last_attempt_at = @now, run_id = @run_id
WHEN NOT MATCHED AND NOT s.resolve THEN
  INSERT (id, occurred_at, run_id, phase, operation, email, campaign_id, instantly_lead_id, http_status,
          error_text, retry_count, last_attempt_at, gave_up_at, give_up_reason)
  VALUES (s.id, @now, @run_id, s.phase, s.operation, s.email, s.campaign_id, s.instantly_lead_id,
          s.http_status, s.error_text, 0, @now, IF(s.give_up_reason IS NULL, NULL, @now), s.give_up_reason)
"""

OPEN_DEAD_LETTERS_SQL = """
SELECT id, phase, operation, email, campaign_id, instantly_lead_id, http_status, error_text, retry_count,
       occurred_at, last_attempt_at
FROM `{ds}.ops_dead_letters`
WHERE resolved_at IS NULL AND gave_up_at IS NULL
"""

# --- ready leads ---------------------------------------------------------------------------------

# The sync reads the candidates with the rules' own CTE text (schema.candidate_ctes, schema.routed_cte),
# fed with the run's settings and clock, the routing and the outcome policy table in effect: never through
# the views, which may predate a change of either. Each route's top rows by priority, up to its own limit
# (@limits: route, n).
def read_ready_sql(routing: Routing, outcomes: PolicyTable | None = None, *, stored: bool = False,
                   most: int = 1, queue: bool = False) -> str:
    """One row per route (NULL: the unrouted leads) and chosen lead: the route's ready count (`route_ready`),
    how many of those have no score (`route_unscored`), and one of its first `most` ready leads by priority
    (PRIORITY_ORDER): every candidate column, the declared extra source columns, `score`, and `route_pos`, its
    place in the route (order only: the first is the lowest; NULL on the one row of a route that carries no
    lead, always the unrouted one). One pass over the candidates; each route keeps only its best `most` while
    reading (BigQuery's bounded ARRAY_AGG; DuckDB's min_by with n, coldsync.warehouse.duckdb._bounded_top_n):
    no sort of every ready lead. The aggregate keeps only what the candidate table cannot give back (the key,
    the history's columns, the score): the text columns of the chosen leads are joined back by email_key
    (unique per candidate), so memory is bounded by routes x `most` narrow entries, not whole rows (issue 16
    target 7: at 3M source rows the whole rows took DuckDB ~100 MB more). Rules 1-2 come from the live source,
    or with `stored` from ops_candidates (the sync's read, after Store.refresh_candidates), which then serves
    the join back too; from the live source the join back reads `deduped` (rules 1-2) a second time (a dry run
    with a stale table only). Raises ValueError when `most` is not an int >= 1 (it is formatted into the SQL:
    BigQuery takes only a constant there). With `queue`, the candidates are the ready queue's rows
    (schema.READY_QUEUE, Store.read_ready_queued), which serves the join back: the same rules, fewer rows."""
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise ValueError(f"read_ready_sql: most must be an int >= 1, not {most!r}")
    kept = [name for name in CANDIDATE_ROW_COLUMNS if name not in CANDIDATE_COLUMNS or name == "email_key"]
    joined = [name for name in CANDIDATE_ROW_COLUMNS if name in CANDIDATE_COLUMNS and name != "email_key"]
    fields = ", ".join(f"r.{name} AS {name}" for name in (*kept, "score"))
    back = f"`{{ds}}.{READY_QUEUE}`" if queue else f"`{{ds}}.{CANDIDATES.name}`" if stored else "deduped"
    columns = ", ".join([*(f"d.{name}" for name in (*joined, *routing.source_columns)),
                         *(f"t.{name}" for name in (*kept, "score"))])
    return f"""
WITH {candidate_ctes(routing.source_columns, stored=stored, queue=queue)},
{routed_cte(routing, source="candidates", as_of="@as_of", threshold="@smb_threshold", outcomes=outcomes)},
tops AS (
  SELECT r.sequence_target, COUNT(*) AS route_ready, COUNTIF(r.score IS NULL) AS route_unscored,
         ARRAY_AGG(STRUCT({fields}) ORDER BY {PRIORITY_ORDER} LIMIT {most}) AS top
  FROM routed AS r
  GROUP BY r.sequence_target
)
SELECT k.sequence_target, k.route_ready, k.route_unscored, pos AS route_pos, {columns}
FROM tops AS k
LEFT JOIN UNNEST(IF(k.sequence_target IS NULL, NULL, k.top)) AS t WITH OFFSET AS pos
LEFT JOIN {back} AS d ON d.email_key = t.email_key
"""  # noqa: S608


def ready_counts_sql(routing: Routing, outcomes: PolicyTable | None = None) -> str:
    """Ready leads per route (NULL: unrouted) and how many of them have no score (NULL score: ranked last).
    It evaluates every route condition and the score, so a run meets a type error here, before any write."""
    return f"""
WITH {candidate_ctes(routing.source_columns)},
{routed_cte(routing, source="candidates", as_of="@as_of", threshold="@smb_threshold", outcomes=outcomes)}
SELECT r.sequence_target, COUNT(*) AS ready, COUNTIF(r.score IS NULL) AS unscored
FROM routed AS r
GROUP BY r.sequence_target
"""  # noqa: S608



# What v_ready_for_instantly itself says (the config table's values): what setup.py prints.
VIEW_READY_COUNTS_SQL = """
SELECT sequence_target, COUNT(*) AS ready FROM `{ds}.v_ready_for_instantly`
GROUP BY sequence_target ORDER BY sequence_target
"""

# Source rows the sync does not take as given, by reason (the run summary shows them).
SOURCE_REJECT_COUNTS_SQL = f"""
SELECT reason, COUNT(*) AS n FROM `{{ds}}.{REJECTS_VIEW}` GROUP BY reason
"""  # noqa: S608

# The source's change signal where the engine has none of its own (a BigQuery view): its row count and the
# newest value of the declared SOURCE_UPDATED_AT_COLUMN (a checked identifier). One column read.
SOURCE_SIGNAL_SQL = "SELECT COUNT(*) AS n, CAST(MAX(s.{column}) AS STRING) AS newest FROM `{{source}}` AS s"

REJECTS_RULE = hashlib.sha256((SOURCE_REJECT_COUNTS_SQL + rejects_view_sql()).encode()).hexdigest()[:12]
"""Changes whenever the rules that make the source rejects change: a cached count is only reused under it."""


def native_signal(warehouse: Warehouse) -> Callable[[], str | None] | None:
    """The engine's own change signal of SOURCE_TABLE (`table_signal`: BigQuery's table metadata, DuckDB's
    row count and row hash), found through wrappers (their `inner`); None when the engine has none."""
    seen: object = warehouse
    for _depth in range(8):
        found = getattr(seen, "table_signal", None)
        if callable(found):
            return found  # type: ignore[no-any-return]
        seen = getattr(seen, "inner", None)
        if seen is None:
            return None
    return None


# --- run log and lock ----------------------------------------------------------------------------

RUN_LOG_FIELDS = (
    ("run_id", "STRING"), ("started_at", "TIMESTAMP"), ("finished_at", "TIMESTAMP"), ("mode", "STRING"),
    ("outcome", "STRING"), ("warehouse", "STRING"), ("drained", "INT64"), ("added", "INT64"),
    ("dead_letters", "INT64"), ("inventory_before", "INT64"), ("inventory_after", "INT64"),
    ("api_calls", "INT64"), ("warehouse_statements", "INT64"), ("duration_seconds", "FLOAT64"),
    ("error_text", "STRING"), ("summary_json", "STRING"),
)

WRITE_RUN_LOG_SQL = """
INSERT INTO `{ds}.ops_run_log`
  (run_id, started_at, finished_at, mode, outcome, warehouse, drained, added, dead_letters, inventory_before,
   inventory_after, api_calls, warehouse_statements, duration_seconds, error_text, summary_json)
SELECT r.run_id, r.started_at, r.finished_at, r.mode, r.outcome, r.warehouse, r.drained, r.added,
       r.dead_letters, r.inventory_before, r.inventory_after, r.api_calls, r.warehouse_statements,
       r.duration_seconds, r.error_text, r.summary_json
FROM UNNEST(@rows) AS r
"""


# What the run needs from earlier runs, in one statement: the newest successful live run's summary
# (its drain watermarks) and whether any dead letter is open.
RUN_MEMORY_SQL = f"""
SELECT
  (SELECT summary_json FROM `{{ds}}.ops_run_log`
   WHERE mode = 'live' AND outcome IN ('success', 'alarm') ORDER BY started_at DESC LIMIT 1) AS last_summary,
  (SELECT COUNT(*) FROM `{{ds}}.ops_dead_letters` WHERE resolved_at IS NULL AND gave_up_at IS NULL) AS open_letters,
  (SELECT MAX(value_string) FROM `{{ds}}.config` WHERE key = '{VIEWS_FINGERPRINT_KEY}') AS views_fingerprint,
  (SELECT MAX(value_string) FROM `{{ds}}.config` WHERE key = '{SOURCE_BINDING_KEY}') AS views_source_table,
  (SELECT MAX(value_string) FROM `{{ds}}.config` WHERE key = '{CANDIDATES_REFRESH_KEY}') AS candidates_refresh
"""  # noqa: S608

READ_CANDIDATES_REFRESH_SQL = f"""
SELECT MAX(value_string) AS candidates_refresh FROM `{{ds}}.config` WHERE key = '{CANDIDATES_REFRESH_KEY}'
"""  # noqa: S608



_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"', re.DOTALL)
"""A BigQuery string literal (single or double quotes, backslash escapes; a raw prefix stays outside)."""


def dead_letter_id(phase: str, operation: str, key: str) -> str:
    """Stable id: the same failing operation on the same lead is one dead letter, retried."""
    return hashlib.sha256(f"{phase}|{operation}|{key}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CandidatesRefresh:
    """What Store.refresh_candidates found and did.

    signal:   the source's change signal the candidates now reflect (Store.source_signal; None: no signal);
    rejects:  source rows not taken as given, per reason (the counts of v_source_rejects) for that source;
    refreshed: the source was read by this call (False: unchanged, or a dry run);
    stored:   the candidates are in ops_candidates (False: a dry run found the table stale, so the ready read
              must take rules 1-2 from the live source: read_ready(stored=False));
    changed:  rows of ops_candidates the MERGE inserted, updated or deleted (None: not merged; rebuilt or not
              refreshed)."""

    signal: str | None
    rejects: dict[str, int]
    refreshed: bool
    stored: bool = True
    changed: int | None = None


CANDIDATES_ROWS_SQL = f"SELECT COUNT(*) AS n FROM `{{ds}}.{CANDIDATES.name}`"  # noqa: S608


def parse_candidates_refresh(text: object) -> dict[str, Any] | None:
    """The CANDIDATES_REFRESH_KEY config row as {"fingerprint": str, "signal": str | None, "rejects":
    {str: int}, "rows": int (ops_candidates' rows after the refresh)}, or None when absent or not in that shape
    (then the next refresh reads the source)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("fingerprint"), str):
        return None
    rejects = found.get("rejects")
    if not isinstance(rejects, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                                for k, v in rejects.items()):
        return None
    signal, rows = found.get("signal"), found.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        return None  # written before the row count was kept: refresh once
    refreshed_at = found.get("refreshed_at")
    return {"fingerprint": found["fingerprint"], "signal": signal if isinstance(signal, str) else None,
            "rejects": dict(rejects), "rows": rows,
            "refreshed_at": refreshed_at if isinstance(refreshed_at, str) else None}


READ_READY_QUEUE_SQL = f"""
SELECT MAX(value_string) AS ready_queue FROM `{{ds}}.config` WHERE key = '{READY_QUEUE_KEY}'
"""  # noqa: S608

READY_QUEUE_GUARDS: tuple[str, ...] = ("queue_rows", "history_checksum")
"""The figures of ready_queue_guard_sql kept with the queue at its build (the READY_QUEUE_KEY config row)."""


def ready_queue_size(inventory_cap: int) -> int:
    """Rows per route the ready queue keeps: 2 x INVENTORY_CAP + 1000. Managed persons stay in the queue (up to
    the inventory, which may pass the cap) and a run's room is at most the cap, so a queue of cap + room + margin
    still has room's worth of eligible leads after every managed one; the second cap and the 1000 absorb the
    leads a run adds and later drains to history (they rest, so they stop counting) before the next rebuild.
    Exactness never depends on it: a queue that runs short is rebuilt, and read in full if still short."""
    return 2 * inventory_cap + 1000


def ranks_before(score: Any, email: str, other_score: Any, other_email: str) -> bool:
    """PRIORITY_ORDER in Python: the lead (score, email) comes strictly before (other_score, other_email) in its
    route (higher score first, NULL last, then email)."""
    if score is None or other_score is None:
        return other_score is None and (score is not None or email < other_email)
    if score != other_score:
        return bool(score > other_score)
    return email < other_email


@dataclass
class DncUpkeep:
    """The do-not-contact list's needs this run (Store.dnc_upkeep)."""

    # (email, domain, email_key, domain_key, email_key_check, domain_key_check, pushable) of entries whose stored
    # keys are not trusted (DNC_MISSING_KEYS_SQL)
    missing: list[dict[str, Any]] = field(default_factory=list)
    rejects: dict[str, int] = field(default_factory=dict)  # reason -> entries that block nobody
    to_push: list[dict[str, Any]] = field(default_factory=list)  # entries to mirror to Instantly
    # (email, email_key, email_key_check) of history rows whose stored key is not trusted
    history_missing: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class KeyBackfill:
    """What Store.backfill_keys wrote: DNC entries that got keys (email, domain, email_key, domain_key,
    pushable: to mirror), groups of rows given keys or checks per table, and DNC groups whose stored key differs
    from the key of their raw value now (edited by hand since, or keyed under another rule), left as they are."""

    keyed: list[dict[str, Any]] = field(default_factory=list)
    dnc_checked: int = 0
    history_checked: int = 0
    differing: int = 0
    relisted: int = 0  # entries added for the edited values of differing rows (edited_values)


STATE_STATUSES: tuple[str, ...] = ("pending", "active", "holding", "moving", "draining")
"""Every ops_inst_state status. Each row of a managed campaign counts in its inventory (phases/topup.py):
a 'holding' lead sits in its campaign on purpose, a 'moving' one until its move to a list is verified, a
'draining' one until its delete is."""


@dataclass(frozen=True)
class StateRow:
    email: str
    campaign_id: str | None
    sequence_target: str | None
    status: str
    instantly_lead_id: str | None
    attempt_num: int | None
    outcome: str | None
    added_at: dt.datetime | None
    run_id: str | None
    suppressed: str | None = None  # how the person is suppressed (email, domain, erased), else None
    arm: str | None = None  # A/B arm of the route (the route's name when it has one campaign)
    hold_until: dt.datetime | None = None  # while 'holding': when the hold ends
    completed_at: dt.datetime | None = None  # while 'holding' or 'moving': when the attempt ended (its history row's)


class Store:
    """The sync's statements against one warehouse, stamped with the run id and the run's clock."""

    def __init__(self, warehouse: Warehouse, run_id: str, now: dt.datetime, *, cooldown_days: int = 90,
                 smb_threshold: int = 1_000_000, routing: Routing | None = None,
                 give_up_cooldown_days: int = 7, outcomes: PolicyTable | None = None,
                 me: Holder | None = None, source_updated_at: str = "", queue_size: int | None = None) -> None:
        self.warehouse = warehouse
        self.run_id = run_id
        self.me = me or Holder.this_process()  # recorded in the lock row it takes
        self.lock_holder: LockRow | None = None  # the row that kept acquire_lock out, for messages
        self.now = now
        self.cooldown_days = cooldown_days
        self.give_up_cooldown_days = give_up_cooldown_days
        self.smb_threshold = smb_threshold
        self.routing = routing if routing is not None else default_routing("", "")
        # Rule 5's day counts: the settings' table, or the defaults with these cooldowns.
        self.outcomes = outcomes if outcomes is not None else default_table(
            cooldown_days=cooldown_days, give_up_cooldown_days=give_up_cooldown_days)
        self.views_fingerprint: str | None = None  # as read by run_memory
        self.views_source: str | None = None  # the source table the views were built on, as read by run_memory
        self.source_updated_at = source_updated_at  # SOURCE_UPDATED_AT_COLUMN: the change signal's fallback
        # The CANDIDATES_REFRESH_KEY config row as read by run_memory (parse_candidates_refresh) or written by
        # refresh_candidates; `candidates_known` False: not read yet (refresh_candidates reads it).
        self.candidates_memory: dict[str, Any] | None = None
        self.candidates_known = False
        self.last_summary: dict[str, Any] = {}  # the last successful live run's summary, as read by run_memory
        # The ready counts the last read_ready saw ((route -> ready, unscored), None: it read nothing).
        self.ready_seen: tuple[dict[str | None, int], int] | None = None
        self.dropped_tampered = 0  # chosen rows the last read_ready dropped: keys not their address's (_verified)
        # State writes by this Store (apply_state: the one writer of ops_inst_state in a run) and how many there
        # had been at the last read_state: the state read is current while they are equal (`state_current`).
        self.state_writes = 0
        self._state_read_at: int | None = None
        self.queue_size = queue_size if queue_size is not None else ready_queue_size(24_000)
        # What read_ready_queued did: how it read ("ready queue", "ready queue, rebuilt: <why>", "full read:
        # <why>"), and the routes whose ready count adds the leads outside the queue as of its build.
        self.ready_source: str | None = None
        self.ready_outside: dict[str, int] = {}

    @classmethod
    def for_settings(cls, warehouse: Warehouse, run_id: str, now: dt.datetime, settings: Settings) -> Store:
        """A store with the run's rules from its settings (cooldowns, threshold, routing): the one way the
        sync, validation, the status report and the benchmark make one."""
        return cls(warehouse, run_id, now, cooldown_days=settings.cooldown_days,
                   smb_threshold=settings.smb_revenue_threshold, routing=settings.routing,
                   give_up_cooldown_days=settings.give_up_cooldown_days, outcomes=settings.outcome_table,
                   source_updated_at=settings.source_updated_at_column,
                   queue_size=ready_queue_size(settings.inventory_cap))

    def rebuild_views(self) -> None:
        """Create or replace every view for the routing in effect and SOURCE_TABLE, then record both."""
        for name, sql in views(self.routing, self.outcomes):
            self.warehouse.execute(sql, label=f"views.{name}")
        for key, value in views_built_rows(self.routing, self.warehouse.source_table, self.outcomes).items():
            self.warehouse.execute(SET_VIEWS_FINGERPRINT_SQL, {"key": key, "value": value, "now": self.now},
                                   label="views.fingerprint")
        self.views_fingerprint = views_fingerprint(self.routing, self.outcomes)
        self.views_source = self.warehouse.source_table

    def _rules(self, sql: str | None = None) -> dict[str, Any]:
        """The rules' parameters (only those `sql` uses, when given: a configured routing may not use the
        SMB threshold, and DuckDB refuses a parameter the statement does not name)."""
        rules = {"as_of": self.now, "cooldown_days": self.cooldown_days, "smb_threshold": self.smb_threshold,
                 "give_up_cooldown_days": self.give_up_cooldown_days}
        if sql is None:
            return rules
        code = _STRING_LITERAL.sub("''", sql)  # '@as_of' in a route's string literal is text, not a parameter
        return {k: v for k, v in rules.items() if re.search(rf"@{k}\b", code)}

    def _stamp(self) -> dict[str, Any]:
        return {"now": self.now, "run_id": self.run_id}

    # reads
    def read_state(self) -> list[StateRow]:
        rows = self.warehouse.query(READ_STATE_SQL, label="state.read")
        self._state_read_at = self.state_writes
        return [StateRow(**{k: r[k] for k in StateRow.__dataclass_fields__}) for r in rows]

    @property
    def state_current(self) -> bool:
        """Whether the last read_state still holds: read, and no apply_state wrote since (issue 16 target 5: a
        run reads the state once unless it changed it; nothing else writes ops_inst_state while a run holds the
        lock)."""
        return self._state_read_at is not None and self._state_read_at == self.state_writes

    def read_ready(self, limits: Mapping[str, int], *, stored: bool = False, queue: bool = False
                   ) -> list[dict[str, Any]]:
        """Each route's top ready rows by priority: at most `limits[route]` of each (routes of 0 skipped), in
        route then priority order. Rows carry every candidate column (declared extra source columns too),
        `sequence_target`, `score`, `route_rank` (1 = first). The same statement counts the ready leads of
        every route: they are left in `ready_seen` ((counts, unscored) as `ready_counts` returns them). Every
        limit 0: nothing is read (`ready_seen` None). Rules 1-2 read the source itself, or with `stored` the
        ops_candidates table, which the caller refreshes first (refresh_candidates: what the sync does)."""
        self.ready_seen = None
        wanted = {route: int(n) for route, n in limits.items() if n > 0}
        if not wanted:
            return []
        sql = read_ready_sql(self.routing, self.outcomes, stored=stored, most=max(wanted.values()), queue=queue)
        rows = self.warehouse.query(sql, self._rules(sql), label="topup.read_ready")
        counts: dict[str | None, int] = {}
        unscored = 0
        routes: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for row in rows:
            target = None if row["sequence_target"] is None else str(row["sequence_target"])
            if target not in counts:
                counts[target] = int(row["route_ready"])
                unscored += int(row["route_unscored"] or 0)
            pos = row.pop("route_pos")
            if target is None or pos is None:
                continue
            for name in ("route_ready", "route_unscored"):
                del row[name]
            row["sequence_target"] = target
            routes.setdefault(target, []).append((int(pos), row))
        taken: list[dict[str, Any]] = []
        for target in sorted(routes):
            chosen = sorted(routes[target], key=lambda item: item[0])[:wanted.get(target, 0)]
            for rank, (_pos, lead) in enumerate(chosen, start=1):
                lead["route_rank"] = rank
                taken.append(lead)
        self.ready_seen = (counts, unscored)
        if stored or queue:
            taken = self._verified(taken)
        return taken

    def _verified(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The chosen rows of a read from the derived tables (ops_candidates, ops_ready_queue) whose keys are their
        address's: a row whose stored email_key is not the key of its email (the table edited by hand) or whose
        address is suppressed after all (its stored domain key edited) is dropped, never sent: the rules judged
        it by keys that are not its own. Fail closed: the lead waits for the next refresh of the table (a run
        with room then holds fewer leads than it could). One statement on the chosen addresses (the
        suppression check, DNC_KEY_CTES), none when nothing was chosen; `dropped_tampered` counts the drops."""
        self.dropped_tampered = 0
        if not rows:
            return rows
        # Rule 1 takes only ASCII addresses, which SQL and Python key alike: a non-ASCII one here was written by hand
        # (the suppression check below could not key it in SQL).
        keyed = [r for r in rows if isinstance(r.get("email"), str) and r["email"].isascii()
                 and address_key(r["email"]) == r.get("email_key")]
        suppressed = self.suppressed_emails(str(r["email"]) for r in keyed)
        kept = [r for r in keyed if str(r["email"]) not in suppressed]
        self.dropped_tampered = len(rows) - len(kept)
        if self.dropped_tampered:
            log.warning("%d chosen lead(s) dropped: their row in ops_candidates or ops_ready_queue does not match "
                        "its address (edited by hand?); they wait for the next refresh of the table",
                        self.dropped_tampered)
        return kept

    # --- the ready queue (schema.READY_QUEUE) ---
    def queue_fingerprint(self) -> str:
        """Changes whenever the queue's build or read would give other rows: their SQL (rules 3-7: routing,
        score, outcome policy table, cooldowns), the queue's size and the SMB threshold (a parameter)."""
        text = "\n".join((ready_queue_build_sql(self.routing, self.outcomes, self.queue_size),
                          read_ready_sql(self.routing, self.outcomes, queue=True),
                          ready_queue_guard_sql(), str(self.queue_size), str(self.smb_threshold)))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _candidates_stamp(self) -> list[Any] | None:
        memory = self.candidates_memory
        if memory is None:
            return None
        return [memory.get("fingerprint"), memory.get("signal"), memory.get("rows"), memory.get("refreshed_at")]

    def _queue_guard(self) -> list[dict[str, Any]]:
        return self.warehouse.query(ready_queue_guard_sql(), label="queue.guard")

    @staticmethod
    def _guard_figures(row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: None if row[k] is None else int(row[k]) if k == "queue_rows" else str(row[k])
                for k in READY_QUEUE_GUARDS}

    def _queue_stale(self, fingerprint: str) -> tuple[str | None, list[dict[str, Any]]]:
        """Why the queue cannot answer for the full read now (None: it can), and the guard's rows. Nothing but a
        rank outside the queue matters (the read applies every rule to the queue's rows; the boundary check
        covers ranks inside it): the rules, the candidates, or the history of a person outside it."""
        found = self.warehouse.query(READ_READY_QUEUE_SQL, label="queue.memory")
        try:
            memory = json.loads(found[0]["ready_queue"]) if found and found[0]["ready_queue"] else None
        except ValueError:
            memory = None
        if not isinstance(memory, dict) or not isinstance(memory.get("guard"), dict):
            return "never built", []
        if memory.get("fingerprint") != fingerprint:
            return "the rules or the queue's size changed", []
        if memory.get("candidates") != self._candidates_stamp():
            return "the candidates were refreshed", []
        try:
            guard = self._queue_guard()
        except WarehouseError as exc:
            if self.warehouse.existing_columns(READY_QUEUE) is None:
                return "the queue table is missing", []
            raise WarehouseError(f"the ready queue's guard failed: {exc}") from exc
        now = self._guard_figures(guard[0])
        if now["queue_rows"] != memory["guard"].get("queue_rows"):
            return "the queue table was changed by hand", guard
        if now != memory["guard"]:
            return "the history of persons outside the queue changed", guard
        return None, guard

    def build_queue(self, fingerprint: str) -> list[dict[str, Any]]:
        """Rebuild the ready queue from ops_candidates (one statement) and record it: the guard's figures at
        this moment, the fingerprint and the candidates' refresh it was built from. Returns the guard's rows."""
        sql = ready_queue_build_sql(self.routing, self.outcomes, self.queue_size)
        self.warehouse.execute(sql, self._rules(sql), label="queue.build")
        guard = self._queue_guard()
        memory = {"guard": self._guard_figures(guard[0]), "fingerprint": fingerprint,
                  "candidates": self._candidates_stamp(), "built_at": self.now.isoformat()}
        self.warehouse.execute(SET_VIEWS_FINGERPRINT_SQL, {"key": READY_QUEUE_KEY, "value": json.dumps(
            memory, sort_keys=True), "now": self.now}, label="queue.built")
        return guard

    @staticmethod
    def _queue_short(wanted: Mapping[str, int], rows: Sequence[Mapping[str, Any]],
                     guard: Sequence[Mapping[str, Any]]) -> str | None:
        """Why the queue's answer may differ from the full read's (None: it cannot): in a route the build cut,
        fewer leads than wanted, or a chosen lead that does not rank before the best one left out (the
        boundary). Leads outside the queue keep their rank and eligibility while the guard holds, so leads
        ranking before the boundary are the route's true first ones."""
        chosen: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            chosen.setdefault(str(row["sequence_target"]), []).append(row)
        for b in guard:
            route = b["queue_route"]
            if route is None or b["queue_email"] is None or wanted.get(str(route), 0) <= 0:
                continue
            got = chosen.get(str(route), [])
            if len(got) < wanted[str(route)]:
                return f"ran short in route {route}"
            last = got[-1]
            if not ranks_before(last["score"], str(last["email"]), b["queue_score"], str(b["queue_email"])):
                return f"reached its boundary in route {route}"
        return None

    def read_ready_queued(self, limits: Mapping[str, int], *, dry_run: bool = False,
                          refreshed: bool = False) -> list[dict[str, Any]]:
        """read_ready(stored=True)'s rows and counts, through the ready queue: the sync's read after
        refresh_candidates. The queue is rebuilt first when stale (`refreshed`: the candidates were just
        refreshed; see _queue_stale for the rest); its answer is checked (_queue_short) and, when short, the
        queue rebuilt and read again, then the full read done if a fresh queue is still short. A dry run
        rebuilds nothing: with a stale queue it does the full read. `ready_source` says which read answered.
        The counts (`ready_seen`) are the queue's, exact for a route the build did not cut; a cut route's
        add the ready leads outside the queue as of its build (`ready_outside`)."""
        self.ready_source, self.ready_outside = None, {}
        wanted = {route: int(n) for route, n in limits.items() if n > 0}
        if not wanted:
            return self.read_ready(limits, stored=True)
        fingerprint = self.queue_fingerprint()
        reason, guard = ("the candidates were refreshed", []) if refreshed else self._queue_stale(fingerprint)
        source = "ready queue"
        if reason is not None:
            if dry_run:
                self.ready_source = f"full read (ready queue stale: {reason}; a dry run rebuilds nothing)"
                return self.read_ready(limits, stored=True)
            guard, source = self.build_queue(fingerprint), f"ready queue, rebuilt: {reason}"
        rows = self.read_ready(limits, queue=True)
        short = self._queue_short(wanted, rows, guard)
        if short is not None and reason is None and not dry_run:
            guard, source = self.build_queue(fingerprint), f"ready queue, rebuilt: it {short}"
            rows = self.read_ready(limits, queue=True)
            short = self._queue_short(wanted, rows, guard)
        if short is not None:
            self.ready_source = f"full read (the ready queue {short})"
            return self.read_ready(limits, stored=True)
        self.ready_source = source
        if self.ready_seen is not None:
            counts, unscored = self.ready_seen
            for b in guard:
                if b["queue_route"] is not None and b["queue_email"] is not None:
                    route = str(b["queue_route"])
                    self.ready_outside[route] = int(b["queue_outside_ready"] or 0)
                    counts[route] = counts.get(route, 0) + self.ready_outside[route]
                    unscored += int(b["queue_outside_unscored"] or 0)
                elif b["queue_route"] is None and b["queue_email"] is not None:
                    counts[None] = counts.get(None, 0) + int(b["queue_outside_ready"] or 0)
                    unscored += int(b["queue_outside_unscored"] or 0)
            self.ready_seen = (counts, unscored)
        return rows

    def ready_counts(self) -> tuple[dict[str | None, int], int]:
        """Ready leads per route (key None: matched no route), and how many ready leads have no score."""
        sql = ready_counts_sql(self.routing, self.outcomes)
        rows = self.warehouse.query(sql, self._rules(sql), label="ready_counts")
        counts = {(None if r["sequence_target"] is None else str(r["sequence_target"])): int(r["ready"])
                  for r in rows}
        return counts, sum(int(r["unscored"] or 0) for r in rows)

    def diagnose_routing(self) -> str | None:
        """Which part of the routing fails in the warehouse: the declared source columns first, then each
        route's condition, then the score, each evaluated on the candidates' rows (so an error that only a
        value causes shows too: this reads the source once per part, on the failure path only). Returns
        the first failure's place and the warehouse's message, for the run's error; None when every part runs
        (the read failed for another reason: the warehouse, a permission, the ready queue's build)."""
        ctes = candidate_ctes(self.routing.source_columns)
        checks: list[tuple[str, str]] = [
            ("the source table cannot be read with the declared source_columns "
             f"({', '.join(self.routing.source_columns) or 'none'})",
             f"WITH {ctes}\nSELECT COUNT(*) AS n FROM candidates AS c")]
        for route in self.routing.routes:
            condition = route.condition.replace(THRESHOLD_PLACEHOLDER, "@smb_threshold")
            checks.append((f"route {route.name!r}: its `when` fails",
                           f"WITH {ctes}\nSELECT COUNTIF({condition}) AS n FROM candidates AS c"))
        checks.append(("the priority score fails", f"WITH {ctes}\nSELECT MAX({self.routing.score}) AS n "
                                                   "FROM candidates AS c"))
        for place, sql in checks:
            try:
                self.warehouse.query(sql, self._rules(sql), label="routing.check")
            except WarehouseError as exc:
                return f"{place} ({exc})"
        return None

    def source_reject_counts(self) -> dict[str, int]:
        """Source rows skipped (or kept with unknown revenue), per reason, from v_source_rejects."""
        rows = self.warehouse.query(SOURCE_REJECT_COUNTS_SQL, label="source.rejects")
        return {str(r["reason"]): int(r["n"]) for r in rows}

    def source_signal(self, updated_at: str = "") -> str | None:
        """What says the source changed: text equal between two reads when it did not (None: no signal, so
        the source counts as changed every run). The engine's own signal first (native_signal: BigQuery's
        table metadata, unbilled; DuckDB's row count and hash of every row, no rule evaluated, which reads
        every row: when `updated_at` is declared, DuckDB uses it instead); else, when `updated_at` names a
        source column (SOURCE_UPDATED_AT_COLUMN), the row count and its newest value (one column read).
        Raises WarehouseError when the source cannot be read."""
        native = native_signal(self.warehouse)
        if native is not None and updated_at and getattr(native, "reads_rows", False):
            native = None  # DuckDB's own signal hashes every row: the declared column is the cheaper read
        signal = native() if native is not None else None
        if signal is None and updated_at:
            row = self.warehouse.query(SOURCE_SIGNAL_SQL.format(column=updated_at), label="source.signal")[0]
            signal = f"rows {int(row['n'])}, newest {row['newest']}"
        return None if signal is None else f"{self.warehouse.source_table}: {signal}; rules {REJECTS_RULE}"

    def refresh_candidates(self, *, dry_run: bool = False) -> CandidatesRefresh:
        """Bring ops_candidates up to the source, reading the source only when it changed.

        Unchanged means: this run's source_signal (SOURCE_UPDATED_AT_COLUMN as its fallback) and
        candidates_fingerprint (the rules' text, the declared extra source columns, SOURCE_TABLE) equal those
        of the CANDIDATES_REFRESH_KEY config row; then nothing but the signal is computed, and the reject
        counts are the row's. Else the source is read ONCE (candidates_stage_sql into CANDIDATES_STAGING),
        ops_candidates is MERGEd from it (or rebuilt by candidates_rebuild_sql when its columns are not
        those the routing needs, or when the MERGE fails: a column whose type changed), the reject counts
        are taken from it (STAGED_REJECT_COUNTS_SQL), the config row is written with the table's row count, and
        the staging table is dropped: six statements, labelled `candidates.*`. The unchanged path also checks
        the table still holds the recorded row count (`candidates.count`): a table dropped or emptied by hand
        is rebuilt, never read as "no ready lead". No signal (a view or a table with rows in its
        streaming buffer on BigQuery, and no SOURCE_UPDATED_AT_COLUMN): every call refreshes. A refresh
        that stops half way leaves the row as it was, so the next call refreshes again
        (each step is safe to repeat).

        With `dry_run`, nothing is written: an unchanged table is read as it is; a stale one is left stale and
        the result says `stored` False (the caller reads the live source: read_ready(stored=False)) with the
        reject counts of v_source_rejects. A dry run writes nothing because it promises exactly that, and a
        stale table is then read at the cost a run without this table had (two reads of the source).
        Raises WarehouseError when the source, the table or the config row cannot be read or written."""
        extra = self.routing.source_columns
        fingerprint = candidates_fingerprint(extra, self.warehouse.source_table)
        signal = self.source_signal(self.source_updated_at)
        if not self.candidates_known:
            row = self.warehouse.query(READ_CANDIDATES_REFRESH_SQL, label="candidates.memory")
            self.candidates_memory = parse_candidates_refresh(row[0]["candidates_refresh"] if row else None)
            self.candidates_known = True
        memory = self.candidates_memory
        if (signal is not None and memory is not None and memory["signal"] == signal
                and memory["fingerprint"] == fingerprint and self._candidates_rows() == memory["rows"]):
            return CandidatesRefresh(signal, dict(memory["rejects"]), refreshed=False)
        if dry_run:
            return CandidatesRefresh(signal, self.source_reject_counts(), refreshed=False, stored=False)
        wanted = [name.lower() for name in (*CANDIDATES.column_names(), *extra)]
        have = self.warehouse.existing_columns(CANDIDATES.name)
        self.warehouse.execute(candidates_stage_sql(extra), label="candidates.stage")
        changed: int | None = None
        if have is not None and sorted(k.lower() for k in have) == sorted(wanted):
            try:
                changed = self.warehouse.execute(candidates_merge_sql(extra), label="candidates.merge")
            except WarehouseError as exc:  # e.g. an extra column whose type changed in the source: the
                log.warning("the MERGE into %s failed (%s): rebuilt instead", CANDIDATES.name, exc)  # MERGE
                self.warehouse.execute(candidates_rebuild_sql(extra), label="candidates.rebuild")  # changed nothing
        else:
            self.warehouse.execute(candidates_rebuild_sql(extra), label="candidates.rebuild")
        rows = self.warehouse.query(STAGED_REJECT_COUNTS_SQL, label="candidates.rejects")
        rejects = {str(r["reason"]): int(r["n"]) for r in rows}
        memory = {"fingerprint": fingerprint, "signal": signal, "rejects": rejects, "rows": self._candidates_rows(),
                  "refreshed_at": f"{self.run_id} {self.now.isoformat()}"}  # tells the ready queue it is stale
        self.warehouse.execute(SET_VIEWS_FINGERPRINT_SQL, {"key": CANDIDATES_REFRESH_KEY, "value": json.dumps(
            memory, sort_keys=True), "now": self.now}, label="candidates.refreshed")
        self.candidates_memory = memory
        self.warehouse.execute(DROP_CANDIDATES_STAGING_SQL, label="candidates.drop_staging")
        log.info("refreshed %s from the source (%s)", CANDIDATES.name,
                 "rebuilt" if changed is None else f"{changed} row(s) changed")
        return CandidatesRefresh(signal, rejects, refreshed=True, changed=changed)

    def _candidates_rows(self) -> int | None:
        """ops_candidates' row count (one cheap statement: DuckDB keeps it, BigQuery bills COUNT(*) no column),
        or None when the table is missing: a table dropped, emptied or restored by hand since the last refresh
        no longer has the recorded count, so the refresh rebuilds it instead of trusting an unchanged source."""
        try:
            found = self.warehouse.query(CANDIDATES_ROWS_SQL, label="candidates.count")
        except WarehouseError:
            if self.warehouse.existing_columns(CANDIDATES.name) is None:
                return None
            raise
        return int(found[0]["n"]) if found else 0

    def known_source_rejects(self) -> tuple[dict[str, int], str | None] | None:
        """The reject counts and source signal of the last refresh (the config row run_memory read), for a
        run that reads no source; None when no refresh is recorded."""
        memory = self.candidates_memory
        return None if memory is None else (dict(memory["rejects"]), memory["signal"])

    def run_memory(self) -> tuple[dict[str, dict[str, Any]], int, dict[str, Any]]:
        """The last successful run's drain watermarks, the number of open dead letters, and the last
        successful run's block-list pull watermark. (Also sets `views_fingerprint`: the config row.)"""
        row = self.warehouse.query(RUN_MEMORY_SQL, label="state.run_memory")[0]
        self.views_fingerprint = str(row["views_fingerprint"]) if row.get("views_fingerprint") else None
        self.views_source = str(row["views_source_table"]) if row.get("views_source_table") else None
        self.candidates_memory = parse_candidates_refresh(row.get("candidates_refresh"))
        self.candidates_known = True
        watermarks: dict[str, dict[str, Any]] = {}
        blocklist: dict[str, Any] = {}
        self.last_summary = {}
        if row.get("last_summary"):
            try:
                summary = json.loads(str(row["last_summary"]))
            except ValueError:
                summary = {}
            self.last_summary = summary if isinstance(summary, dict) else {}
            found = summary.get("drain_watermarks", {}) if isinstance(summary, dict) else {}
            if isinstance(found, dict):
                watermarks = {str(k): v for k, v in found.items() if isinstance(v, dict)}
            pulled = summary.get("blocklist_watermark", {}) if isinstance(summary, dict) else {}
            if isinstance(pulled, dict):
                blocklist = pulled
        return watermarks, int(row.get("open_letters") or 0), blocklist

    def open_dead_letters(self) -> list[dict[str, Any]]:
        return self.warehouse.query(OPEN_DEAD_LETTERS_SQL, label="dead_letters.read")

    # writes: each one statement, skipped when there is nothing to write
    def apply_state(self, rows: Sequence[Mapping[str, Any]], label: str) -> int:
        if not rows:
            return 0
        self.state_writes += 1  # counted before the write: a failed write leaves the state read stale too
        return self.warehouse.execute(APPLY_STATE_SQL, {"rows": Rows(STATE_FIELDS, list(rows)), **self._stamp()},
                                      label=label)

    def record_history(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write finished attempts (HISTORY_FIELDS), each with its stored key and stamp (history_key_stamp);
        one statement, none for no rows; returns the rows inserted. Raises WarehouseError."""
        if not rows:
            return 0
        stamped = [{**r, **history_key_stamp(r.get("email"))} for r in rows]
        return self.warehouse.execute(RECORD_HISTORY_SQL,
                                      {"rows": Rows(RECORD_HISTORY_FIELDS, stamped), **self._stamp()},
                                      label="history.record")

    def record_campaign_daily(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """MERGE ops_campaign_daily rows (CAMPAIGN_DAILY_FIELDS) on (campaign_id, day); rows changed.
        Raises WarehouseError (e.g. the table is missing: schema older than v7)."""
        if not rows:
            return 0
        return self.warehouse.execute(RECORD_CAMPAIGN_DAILY_SQL, {"rows": Rows(CAMPAIGN_DAILY_FIELDS, list(rows))},
                                      label="analytics.campaign_daily")

    def update_history_policy(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Held leads re-read: their attempt's policy columns as they stand now (UPDATE_HISTORY_POLICY_SQL)."""
        if not rows:
            return 0
        return self.warehouse.execute(UPDATE_HISTORY_POLICY_SQL,
                                      {"rows": Rows(HISTORY_FIELDS, list(rows)), "run_id": self.run_id},
                                      label="history.policy")

    def add_dnc(self, rows: Sequence[Mapping[str, Any]], label: str) -> int:
        """Add do-not-contact entries (email and/or domain as given, source, reason); their keys are
        computed here when the row does not carry them. One statement; returns the rows changed."""
        unique: dict[tuple[Any, ...], dict[str, Any]] = {}
        for given in rows:
            row = stamped_dnc_row(given)
            keys = (row.get("email_key"), row.get("domain_key"), row.get("email_hash"))
            identity = keys if any(keys) else ("raw", row.get("email"), row.get("domain"))
            if identity not in unique or (row.get("instantly_blocklist_id") and
                                          not unique[identity].get("instantly_blocklist_id")):
                unique[identity] = row
        if not unique:
            return 0
        return self.warehouse.execute(ADD_DNC_SQL, {"rows": Rows(DNC_FIELDS, list(unique.values())),
                                                    **self._stamp()}, label=label)

    def read_events(self, since: dt.datetime, types: Sequence[str]) -> list[dict[str, Any]]:
        """The webhook events of these types received at or after `since` (aware UTC), one per dedup key
        (READ_EVENTS_SQL): dedup_key, event_type, email, email_key, campaign_id, lead_id, event_at,
        received_at (the first copy's), last_received_at (the last copy's). Raises WarehouseError."""
        return self.warehouse.query(READ_EVENTS_SQL, {"since": since, "types": StringArray(list(types))},
                                    label="events.read")

    def dnc_email_keys_among(self, keys: Sequence[str]) -> set[str]:
        """Of these email keys, those an ops_dnc row holds already (its stored email_key: every run keys the rows
        written without one before this is asked). Raises WarehouseError."""
        if not keys:
            return set()
        rows = self.warehouse.query("SELECT DISTINCT email_key FROM `{ds}.ops_dnc` WHERE email_key IN UNNEST(@keys)",
                                    {"keys": StringArray(sorted(set(keys)))}, label="events.dnc_listed")
        return {str(r["email_key"]) for r in rows}

    def dnc_upkeep(self, push_limit: int) -> DncUpkeep:
        """What the do-not-contact list, and the stored keys of both keyed tables, need this run, in one read
        (DNC_UPKEEP_SQL). Raises WarehouseError (e.g. a schema older than v9: run setup.py)."""
        rows = self.warehouse.query(DNC_UPKEEP_SQL, {"limit": push_limit}, label="dnc.upkeep")
        upkeep = DncUpkeep()
        for row in rows:
            if str(row["kind"]).startswith("missing"):
                upkeep.missing.append({**{k: row.get(k) for k in ("email", "domain", "email_key", "domain_key",
                                                                  "email_key_check", "domain_key_check")},
                                       "pushable": row["kind"] == "missing_pushable"})
            elif row["kind"] == "reject":
                upkeep.rejects[str(row["reason"])] = int(row["n"])
            elif row["kind"] == "history":
                upkeep.history_missing.append({"email": row.get("email"), "email_key": row.get("email_key"),
                                               "email_key_check": row.get("email_key_check")})
            else:
                upkeep.to_push.append({k: row.get(k) for k in ("email", "domain", "email_key", "domain_key")})
        return upkeep

    def backfill_keys(self, dnc_missing: Sequence[Mapping[str, Any]] | None = None,
                      history_missing: Sequence[Mapping[str, Any]] | None = None) -> KeyBackfill:
        """Key and check the rows of ops_dnc and ops_lead_history whose stored keys are not trusted (written by
        hand, by an older version, edited since: raw value, key or check; keyed under another rule):
        `dnc_missing` / `history_missing` are DncUpkeep.missing / .history_missing (each read here when None; pass
        [] to skip a table). A NULL key gets its key and check, a key equal to its raw value's gets its check; a
        differing DNC key is left as it is, still blocking (logged at debug level, counted), a differing history
        key is replaced (restamp_history_row). At most one write per table, none when nothing changes.
        Raises WarehouseError."""
        if dnc_missing is None:
            dnc_missing = self.warehouse.query(DNC_MISSING_KEYS_SQL, label="dnc.missing_keys")
        if history_missing is None:
            history_missing = self.warehouse.query(HISTORY_MISSING_KEYS_SQL, label="history.missing_keys")
        result = KeyBackfill()
        dnc_rows: list[dict[str, Any]] = []
        edited: list[dict[str, Any]] = []
        for row in dnc_missing:
            written, differs = restamp_dnc_row(row)
            if differs:
                result.differing += 1
                edited.extend(edited_values(row))
                log.debug("do-not-contact entry %s / %s: its stored key differs from the key of its value now "
                          "(edited since it was keyed?): both block, the row stays unchecked",
                          mask_email(row.get("email")), redact(str(row.get("domain"))))
            if written is None:
                continue
            dnc_rows.append(written)
            if any(row.get(k) is None and written[k] is not None for k in ("email_key", "domain_key")):
                result.keyed.append({"email": row.get("email"), "domain": row.get("domain"),
                                     "email_key": row.get("email_key") or written["email_key"],
                                     "domain_key": row.get("domain_key") or written["domain_key"],
                                     "pushable": bool(row.get("pushable"))})
        history_rows = [written for row in history_missing if (written := restamp_history_row(row)) is not None]
        if edited:
            # The edited value is listed too, keyed in Python (punycode included: the SQL cannot key a non-ASCII
            # value, so without this a Unicode address written over a keyed entry would block nobody); an entry
            # whose key is listed already is not added again (add_dnc), so this is one statement a run at most.
            result.relisted = self.add_dnc(edited, label="dnc.edited_values")
        if dnc_rows:
            self.warehouse.execute(SET_DNC_KEYS_SQL, {"rows": Rows(DNC_KEY_FIELDS, dnc_rows)},
                                   label="dnc.backfill_keys")
            result.dnc_checked = len(dnc_rows)
        if history_rows:
            self.warehouse.execute(SET_HISTORY_KEYS_SQL, {"rows": Rows(HISTORY_KEY_FIELDS, history_rows)},
                                   label="history.backfill_keys")
            result.history_checked = len(history_rows)
        return result

    def backfill_dnc_keys(self, missing: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        """backfill_keys for ops_dnc alone: the entries that got keys (email, domain, email_key, domain_key,
        pushable). Raises WarehouseError."""
        return self.backfill_keys(missing, []).keyed

    def dnc_reject_counts(self) -> dict[str, int]:
        """Do-not-contact values that cannot be used, per reason (v_dnc_rejects)."""
        rows = self.warehouse.query(DNC_REJECT_COUNTS_SQL, label="dnc.rejects")
        return {str(r["reason"]): int(r["n"]) for r in rows}

    def erased_among(self, keys: Iterable[str]) -> set[str]:
        """Of these email keys, those whose person was erased (the salted hash is on the DNC list)."""
        given = sorted({k for k in keys if k})
        if not given:
            return set()
        rows = self.warehouse.query(ERASED_AMONG_SQL, {"keys": StringArray(given)}, label="dnc.erased_among")
        return {str(r["email_key"]) for r in rows}

    def suppressed_emails(self, emails: Iterable[str]) -> dict[str, str]:
        """Of these addresses, those whose person is suppressed -> how (email, domain, erased)."""
        given = sorted({e for e in emails if isinstance(e, str) and e})
        if not given:
            return {}
        rows = self.warehouse.query(SUPPRESSED_EMAILS_SQL, {"emails": StringArray(given)},
                                    label="dnc.suppressed_emails")
        return {str(r["email"]): str(r["how"]) for r in rows}

    def record_dead_letters(self, rows: Iterable[Mapping[str, Any]], label: str) -> int:
        unique = {r["id"]: r for r in rows}
        if not unique:
            return 0
        return self.warehouse.execute(RECORD_DEAD_LETTERS_SQL,
                                      {"rows": Rows(DEAD_LETTER_FIELDS, list(unique.values())), **self._stamp()},
                                      label=label)

    def write_run_log(self, row: Mapping[str, Any]) -> None:
        self.warehouse.execute(WRITE_RUN_LOG_SQL, {"rows": Rows(RUN_LOG_FIELDS, [row])}, label="run_log.write")

    # the lock (the pure decisions: coldsync.runlock)
    def read_lock(self) -> LockRow:
        """The lock row. Raises LockMissing when the table has none or several rows for the name."""
        rows = self.warehouse.query(READ_LOCK_SQL, {"name": LOCK_NAME}, label="lock.read")
        if len(rows) != 1:
            raise LockMissing(
                f"ops_run_lock has {len(rows)} rows named {LOCK_NAME!r}, not 1: run `python setup.py`" if not rows
                else f"ops_run_lock has {len(rows)} rows named {LOCK_NAME!r}, not 1 (written by hand, or two "
                     "setup.py at once): delete all but one, then run `python setup.py`")
        return LockRow.of(rows[0])

    def acquire_lock(self, ttl: dt.timedelta) -> str | None:
        """Take the sync lock; return None when taken, else the run id that holds it (its row: lock_holder)."""
        seen = self.read_lock()
        if not may_take(seen, self.now, self.warehouse.engine, self.me):
            self.lock_holder = seen
            return seen.run_id
        params = {"name": LOCK_NAME, "expires_at": self.now + ttl, "pid": self.me.pid, "host": self.me.host,
                  "seen_run_id": seen.run_id, "seen_expires_at": seen.expires_at, **self._stamp()}
        if self.warehouse.execute(ACQUIRE_LOCK_SQL, params, label="lock.acquire") == 1:
            if not seen.free:
                log.warning("took over the run lock of %s", describe_holder(seen, self.now, self.warehouse.engine,
                                                                             self.me))
            self.lock_holder = None
            return None
        self.lock_holder = self.read_lock()  # another run changed the row between our read and our update
        return self.lock_holder.run_id or "unknown"

    def release_lock(self) -> None:
        self.warehouse.execute(RELEASE_LOCK_SQL, {"name": LOCK_NAME, "run_id": self.run_id, "free_at": LOCK_FREE_AT},
                               label="lock.release")

    def break_lock(self, seen: LockRow) -> bool:
        """Free the lock if it is still exactly as `seen` (holder and expiry); True when it was."""
        params: dict[str, Param] = {"name": LOCK_NAME, "seen_run_id": seen.run_id, "seen_expires_at": seen.expires_at,
                                    "free_at": LOCK_FREE_AT}
        return self.warehouse.execute(BREAK_LOCK_SQL, params, label="lock.break") == 1
