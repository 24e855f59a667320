"""The do-not-contact list mirrored both ways with Instantly's workspace block list.

- PUSH: DNC entries not yet on Instantly's block list (no `instantly_blocklist_id`) are sent with
  `POST /api/v2/block-lists-entries/bulk-create` (at most 1,000 values a call, at most
  PUSH_LIMIT_PER_RUN values a run), and each entry's Instantly id is stored. What is pushed is the
  entry as a person meant it: the unwrapped, lower-cased address (`suppression.canonical_email`, not
  the +tag-folded key, so Instantly blocks exactly that address) or the domain key. Erased persons'
  hashes cannot be pushed (there is no address left). So leads added by hand in Instantly, or by
  another tool, are blocked by Instantly itself.
- PULL: Instantly's block list (`GET /api/v2/block-lists-entries`) is read into the DNC list (source
  `instantly_blocklist`), PULL_PAGES_PER_RUN pages a run from where the last run stopped. The spec
  does not say whether entry ids grow with time, so a pass that reached the end starts over after
  FULL_PULL_INTERVAL: every entry is pulled at least once a day whatever the id order.
- CONFIRM: when Instantly answers an add only with counters (`in_blocklist`), the client's guess of
  which leads were blocked is checked against the block list (a search by the lead's domain) before
  anything permanent is written; unconfirmed guesses stay re-checkable (topup.py). Assumed where the
  spec is silent: `search` ("Search by value", example `example.com`) matches part of `bl_value`, so a
  domain search also lists the email entries at that domain. Were it an exact match, email entries
  would not be confirmed here: those leads stay re-checkable and the pull brings the entries in.
Nothing here ever deletes a block-list entry.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from coldsync.instantly.client import BlockListEntry
from coldsync.instantly.errors import InstantlyError
from coldsync.phases.context import RunContext
from coldsync.rules import MAX_BATCH_SIZE, parse_timestamp
from coldsync.store import BLOCKLIST_REFUSED, BLOCKLIST_SOURCE, dnc_row
from coldsync.suppression import address_key, canonical_email, domain_key, key_domain

log = logging.getLogger("coldsync.blocklist")

PUSH_LIMIT_PER_RUN = 5 * MAX_BATCH_SIZE
"""Values pushed per run at most (5 calls): a first run with a large list spreads over a few runs."""

PULL_PAGES_PER_RUN = 10
"""Block-list pages (of 100) read per run at most."""

FULL_PULL_INTERVAL = dt.timedelta(hours=24)
"""A pull pass that reached the end starts over from the beginning after this long."""

CONFIRM_LIMIT_PER_RUN = 25
"""Inferred block-list rejects checked per run (one search call each); the rest are re-checked later."""


def entry_dnc_row(entry: BlockListEntry, reason: str) -> dict[str, Any]:
    """The DNC row of an Instantly block-list entry (domain or email, as Instantly says)."""
    if entry.is_domain:
        return dnc_row(domain=entry.value, source=BLOCKLIST_SOURCE, reason=reason, blocklist_id=entry.id)
    return dnc_row(email=entry.value, source=BLOCKLIST_SOURCE, reason=reason, blocklist_id=entry.id)


def confirm_blocklisted(ctx: RunContext, emails: Iterable[str]) -> dict[str, BlockListEntry]:
    """Of these addresses (a bulk add's inferred `blocklisted` leads), those Instantly's block list
    really blocks -> the entry that blocks them. One search call per distinct domain, at most
    CONFIRM_LIMIT_PER_RUN; an address not checked (limit, failure) is simply not confirmed."""
    by_domain: dict[str, list[tuple[str, str]]] = {}
    for email in emails:
        key = address_key(email)
        if key is not None:
            by_domain.setdefault(key_domain(key), []).append((email, key))
    confirmed: dict[str, BlockListEntry] = {}
    phase = ctx.report.phase("topup")
    for n, (domain, members) in enumerate(by_domain.items()):
        if n >= CONFIRM_LIMIT_PER_RUN:
            phase.notes.append(f"block-list check limited to {CONFIRM_LIMIT_PER_RUN} domains this run")
            break
        try:
            entries = list(ctx.client.iter_block_list(search=domain, max_pages=2))
        except InstantlyError as exc:
            phase.notes.append(f"block-list check failed: {exc.summary}")
            break
        for entry in entries:
            for email, key in members:
                blocks = (domain_key(entry.value) == domain) if entry.is_domain else (address_key(entry.value) == key)
                if blocks:
                    confirmed.setdefault(email, entry)
    return confirmed


def mirror_rows(ctx: RunContext, new_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Push to Instantly's block list the entries it does not have yet (ctx.dnc.to_push) and `new_rows`
    (DNC rows about to be written, keyed by `store.dnc_row`); return the rows to write with the ids
    Instantly gave: `new_rows` with `instantly_blocklist_id` set where pushed, followed by the pending
    entries' key rows, which `Store.add_dnc` merges into the existing entries (one statement for both).
    A failed push changes nothing: the entries are offered again by the next run."""
    phase = ctx.report.phase("housekeeping")
    ctx.blocklist_pushed = True
    values: dict[str, dict[str, Any]] = {}
    keys: set[tuple[Any, Any]] = set()
    pending = [dict(r, pending=True) for r in ctx.dnc.to_push] + [dict(r, pending=False) for r in new_rows]
    for row in pending:
        if row.get("email_hash") or row.get("instantly_blocklist_id") or not (row.get("email_key")
                                                                            or row.get("domain_key")):
            continue
        key = (row.get("email_key"), row.get("domain_key"))
        if key in keys:
            continue  # one push per key: every entry of that person (or domain) gets the id of what was pushed
        keys.add(key)
        # A row with both an address and a domain pushes both; the address's entry id is the one stored.
        if key[1]:
            values.setdefault(str(key[1]), row)
        if key[0]:
            values.setdefault(str(canonical_email(row.get("email")) or key[0]), row)
    if not values:
        return list(new_rows)
    phase.plan["push to block list"] += len(values)
    if ctx.dry_run:
        return list(new_rows)
    try:
        result = ctx.client.block_list_create(list(values))
    except InstantlyError as exc:
        phase.notes.append(f"block-list push failed, retried next run: {exc.summary}")
        return list(new_rows)
    ids: dict[tuple[Any, Any], str] = {}
    for outcome in result.outcomes:  # in the order sent: the address (sent last) wins for a row with both
        sent = values.get(outcome.value) if outcome.value else None
        entry_id = outcome.entry_id or (BLOCKLIST_REFUSED if outcome.outcome == "refused" else None)
        if sent is not None and entry_id:
            ids[(sent.get("email_key"), sent.get("domain_key"))] = entry_id
    failed = result.failed
    if failed:
        error = next((o.error for o in failed if o.error is not None), None)
        why = f": {error.summary} (http {error.http_status})" if error is not None else ""
        phase.notes.append(f"block-list push of {len(failed)} value(s) failed, retried next run{why}")
        if error is not None and error.http_status == 403:
            ctx.report.warn("the Instantly key lacks the block_list_entries scopes: the do-not-contact list is not "
                            "mirrored to Instantly (add the scopes, or set BLOCKLIST_MIRROR=false)")
    refused = len(result.refused)
    if refused:
        phase.notes.append(f"Instantly refused {refused} block-list value(s) (kept on the DNC list)")
    phase.counts["pushed to block list"] += sum(1 for v in ids.values() if v != BLOCKLIST_REFUSED)
    rows = [dict(r, instantly_blocklist_id=ids.get((r.get("email_key"), r.get("domain_key"))))
            if r.get("email_key") or r.get("domain_key") else dict(r) for r in new_rows]
    written = {(r.get("email_key"), r.get("domain_key")) for r in rows}
    for row in ctx.dnc.to_push:
        key = (row.get("email_key"), row.get("domain_key"))
        if key in ids and key not in written:
            written.add(key)
            rows.append({"email": row.get("email"), "domain": row.get("domain"), "email_key": key[0],
                         "domain_key": key[1], "email_hash": None, "instantly_blocklist_id": ids[key],
                         "source": "manual", "reason": "mirrored to the Instantly block list"})
    return rows


def push(ctx: RunContext) -> None:
    """Housekeeping's push, when the drain has not pushed this run: pending entries, ids stored."""
    if ctx.blocklist_pushed:
        return
    rows = mirror_rows(ctx, [])
    if rows and not ctx.dry_run:
        ctx.check_deadline("the block-list push")
        ctx.store.add_dnc(rows, label="blocklist.push")


def pull(ctx: RunContext) -> None:
    """Read Instantly's block list into the DNC list, PULL_PAGES_PER_RUN pages from the last stop."""
    phase = ctx.report.phase("housekeeping")
    previous = ctx.previous_blocklist_watermark
    cursor = previous.get("cursor") if isinstance(previous.get("cursor"), str) else None
    finished = parse_timestamp(previous.get("pass_finished_at"))
    if cursor is None and finished is not None and ctx.now - finished < FULL_PULL_INTERVAL:
        ctx.report.blocklist_watermark = dict(previous)
        return  # a full pass ended recently: nothing to do until the interval has passed
    listing = ctx.client.iter_block_list(starting_after=cursor, max_pages=PULL_PAGES_PER_RUN)
    entries: list[BlockListEntry] = []
    try:
        entries.extend(listing)
    except InstantlyError as exc:
        phase.notes.append(f"block-list pull failed, retried next run: {exc.summary}")
        if exc.http_status == 403:
            ctx.report.warn("the Instantly key lacks the block_list_entries scopes: Instantly's block list is not "
                            "pulled into the do-not-contact list (add the scopes, or set BLOCKLIST_MIRROR=false)")
        ctx.report.blocklist_watermark = dict(previous)
        return
    rows = [entry_dnc_row(e, "on the Instantly workspace block list") for e in entries]
    usable = [r for r in rows if r["email_key"] or r["domain_key"]]
    # An erased person stays erased: their address on Instantly's block list is not copied back in.
    erased = ctx.store.erased_among(str(r["email_key"]) for r in usable if r["email_key"])
    if erased:
        phase.notes.append(f"{len(erased)} block-list entr(ies) of erased persons not copied back")
        usable = [r for r in usable if r["email_key"] not in erased]
    phase.plan["read from block list"] += len(entries)
    watermark: dict[str, Any] = {"pass_finished_at": previous.get("pass_finished_at")}
    if listing.complete:
        watermark = {"cursor": None, "pass_finished_at": ctx.now.isoformat()}
    else:
        watermark["cursor"] = listing.last_id or cursor
    ctx.report.blocklist_watermark = watermark
    if ctx.dry_run or not usable:
        return
    ctx.check_deadline("the block-list pull")  # the MERGE adds only entries whose key is not listed yet
    phase.counts["DNC entries added or linked from block list"] += ctx.store.add_dnc(usable, label="blocklist.pull")
