"""Webhook operations from the command line and each run: register, status, resume, and the backfill of failed
deliveries into ops_instantly_events.

Spec operations (../shared/instantly/openapi-v2.json): createWebhook `POST /api/v2/webhooks` (CreateWebhook:
target_hook_url, event_type, headers, name, campaign), listWebhook `GET /api/v2/webhooks`, patchWebhook
`PATCH /api/v2/webhooks/{id}` (to put a rotated secret in the header), resumeWebhook
`POST /api/v2/webhooks/{id}/resume`, listWebhookEvent `GET /api/v2/webhook-events` (`success=false`, `from`/`to`
dates). A `Webhook` has `status` 1 (active) or -1 (disabled after repeated delivery failures, since
`timestamp_error`). Every one of them answers 402 when the workspace's plan has no API access to webhooks.

Which webhooks are coldsync's: those whose target is the receiver URL given to `register`, or, for `status` and
`resume` (which are not told the URL), those carrying the secret header (SECRET_HEADER). Header VALUES are never
printed: Instantly returns them in the listing, and one is the secret.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import sys
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from coldsync.cli import ExitCode
from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import InstantlyError, NotFoundError, PlanError
from coldsync.redact import redact
from coldsync.settings import Settings, SettingsError, require
from coldsync.warehouse.base import StringArray, Warehouse
from coldsync.warehouse.schema import EVENTS
from coldsync.webhooks.events import (
    CONSUMED_EVENTS,
    DELIVERED_BY_BACKFILL,
    SECRET_HEADER,
    EventRow,
    PayloadError,
    ignore_reason,
    parse_payload,
)

WEBHOOK_NAME_PREFIX = "coldsync"
BACKFILL_FIRST_DAYS = 7
"""How far back the first backfill looks (days, by the listing's `from` date): a week of failed deliveries."""
BACKFILL_MAX_PAGES = 10
"""Pages of failed delivery attempts one run reads at most (100 a page): a long outage is read back over runs."""
BACKFILL_OVERLAP_DAYS = 1
"""Days before the last backfilled date a run looks again: the listing filters by date, not time, and a delivery
retried after midnight is listed under its own day."""


class WebhookClient(Protocol):
    """The client calls these commands make (coldsync.instantly.client.InstantlyClient)."""

    def create_webhook(self, target_hook_url: str, event_type: str, *, headers: Mapping[str, str],
                       name: str | None = None, campaign: str | None = None) -> dict[str, Any]: ...

    def list_webhooks(self) -> list[dict[str, Any]]: ...

    def patch_webhook(self, webhook_id: str, *, headers: Mapping[str, str] | None = None,
                      target_hook_url: str | None = None) -> dict[str, Any]: ...

    def delete_webhook(self, webhook_id: str) -> None: ...

    def resume_webhook(self, webhook_id: str) -> dict[str, Any]: ...

    def list_webhook_events(self, *, success: bool | None = None, from_date: dt.date | None = None,
                            to_date: dt.date | None = None, max_pages: int | None = None,
                            starting_after: str | None = None, search: str | None = None
                            ) -> Iterator[dict[str, Any]]: ...


class WebhookInputError(ValueError):
    """A receiver URL or secret that cannot be registered: the message names the field and the fix."""


def check_receiver_url(url: str) -> str:
    """The receiver URL as registered: https (plain http only on a loopback host, for local tests), no fragment,
    no user:password. Raises WebhookInputError naming `URL` and the fix."""
    parsed = urllib.parse.urlsplit(url.strip())
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise WebhookInputError(f"URL {url!r} is not an http(s) URL: give the receiver's address, e.g. "
                                "https://REGION-PROJECT.cloudfunctions.net/coldsync-webhooks")
    if parsed.scheme == "http" and not loopback:
        raise WebhookInputError("URL must be https: Instantly would send the secret header in clear text "
                                "(plain http only on 127.0.0.1 or localhost, for local tests)")
    if parsed.username or parsed.password or parsed.fragment:
        raise WebhookInputError("URL must not hold a user, password or #fragment: the secret goes in the header")
    return normal_url(url)


def normal_url(url: str) -> str:
    """A URL as coldsync compares receiver URLs: scheme and host lower-cased, the scheme's default port and an
    empty path dropped to `/`, the query kept: `HTTPS://Hooks.Example:443` and `https://hooks.example/` are one."""
    parsed = urllib.parse.urlsplit(str(url).strip())
    host = (parsed.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parsed.port if parsed.port not in (None, {"https": 443, "http": 80}.get(parsed.scheme.lower())) else None
    netloc = f"{host}:{port}" if port else host
    return urllib.parse.urlunsplit((parsed.scheme.lower(), netloc, parsed.path or "/", parsed.query, ""))


def carries_secret(webhook: Mapping[str, Any], secret: str | None = None) -> bool:
    """Whether the webhook sends the secret header (with `secret`: that exact value, compared in constant time)."""
    headers = webhook.get("headers") or {}
    if not isinstance(headers, Mapping):
        return False
    value = next((v for k, v in headers.items() if str(k).lower() == SECRET_HEADER.lower()), None)
    if value is None:
        return False
    return secret is None or hmac.compare_digest(str(value).encode(), secret.encode())


def covers(webhook: Mapping[str, Any], event_type: str) -> bool:
    """Whether the webhook delivers `event_type` (its own type or `all_events`) for every campaign or one."""
    return webhook.get("event_type") in (event_type, "all_events")


def is_disabled(webhook: Mapping[str, Any]) -> bool:
    """Webhook.status -1: disabled by Instantly after repeated delivery failures (until resumed)."""
    return webhook.get("status") == -1


def _target(webhook: Mapping[str, Any]) -> str:
    """The target URL without its query string (which could hold a token): what the commands print."""
    parsed = urllib.parse.urlsplit(str(webhook.get("target_hook_url") or ""))
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path, "", ""))


@dataclass
class WebhookLine:
    """One line of a webhook command's answer: the event type, the webhook (if any) and what was done or seen."""

    event_type: str
    webhook_id: str | None
    target: str
    state: str  # created, kept, secret updated, missing, active, disabled since ..., resumed, would create, ...

    def render(self) -> str:
        where = f" -> {self.target}" if self.target else ""
        ident = f" (webhook {self.webhook_id})" if self.webhook_id else ""
        return f"{self.event_type}: {self.state}{where}{ident}"


@dataclass
class WebhookOutcome:
    """The answer of `--webhooks register|status|resume`: one line per consumed event type, a note, an exit code
    (0 all consumed events delivered by an active webhook; 1 one disabled or missing; 2 the input or the plan)."""

    lines: list[WebhookLine] = field(default_factory=list)
    note: str = ""
    exit_code: int = 0

    def render_text(self) -> str:
        body = [line.render() for line in self.lines]
        return "\n".join([*body, self.note] if self.note else body)

    def to_json(self) -> str:
        return json.dumps({"webhooks": [line.__dict__ for line in self.lines], "note": self.note,
                           "exit_code": self.exit_code}, indent=2)


def _mine(webhook: Mapping[str, Any], target: str, secrets: Sequence[str]) -> bool:
    """Whether register may change this webhook: it sends one of `secrets` (INSTANTLY_WEBHOOK_SECRET, and
    INSTANTLY_WEBHOOK_SECRET_PREVIOUS during a rotation) in the secret header, or it delivers to the receiver URL
    (one to it without the secret would only collect 401s). A webhook with the header but another secret belongs
    to another coldsync installation in the same workspace: left alone."""
    return (any(carries_secret(webhook, secret) for secret in secrets)
            or normal_url(str(webhook.get("target_hook_url") or "")) == target)


def _managed(existing: Sequence[Mapping[str, Any]], target: str, event_type: str,
             secrets: Sequence[str]) -> list[Mapping[str, Any]]:
    """This installation's webhooks of one event type (_mine), the one already at `target` first."""
    hooks = [w for w in existing if w.get("event_type") == event_type and _mine(w, target, secrets)]
    return sorted(hooks, key=lambda w: normal_url(str(w.get("target_hook_url") or "")) != target)


def register(client: WebhookClient, url: str, secret: str, *, previous: str = "",
             dry_run: bool = False) -> WebhookOutcome:
    """Make coldsync's webhooks exactly one per consumed event type (CONSUMED_EVENTS), for every campaign of the
    workspace, delivering to `url` with the secret header, named "coldsync <event type>". Idempotent, and it
    converges: a missing type is created (createWebhook); an existing one (carrying the header, or to this URL) is
    kept, pointed at `url` and given `secret` when either differs (patchWebhook: a rotated secret, a receiver that
    moved), resumed when Instantly disabled it (resumeWebhook); a second one of the same type, or one of this
    installation for another event type (e.g. `all_events`, which would deliver every event twice), is deleted
    (deleteWebhook). Only this installation's webhooks are touched (_mine: its secret, or `previous` during a
    rotation, or the receiver URL). URLs compare as normal_url. `dry_run` lists what would be done and calls
    nothing but the listing. Raises WebhookInputError for a bad URL, PlanError (402) when the plan has no
    webhooks."""
    target = check_receiver_url(url)
    existing = client.list_webhooks()
    secrets = [value for value in (secret, previous) if value]
    outcome = WebhookOutcome()
    for event_type in CONSUMED_EVENTS:
        hooks = _managed(existing, target, event_type, secrets)
        if not hooks:
            if not dry_run:
                made = client.create_webhook(target, event_type, headers={SECRET_HEADER: secret},
                                             name=f"{WEBHOOK_NAME_PREFIX} {event_type}")
                outcome.lines.append(WebhookLine(event_type, str(made.get("id")), _target(made), "created"))
            else:
                outcome.lines.append(WebhookLine(event_type, None, _target({"target_hook_url": target}),
                                                 "would create"))
            continue
        hook, extra = hooks[0], hooks[1:]
        hook_id = str(hook.get("id"))
        done: list[str] = []
        moved = normal_url(str(hook.get("target_hook_url") or "")) != target
        rekeyed = not carries_secret(hook, secret)
        if moved or rekeyed:
            if moved:
                done.append(f"moved from {_target(hook)}")
            if rekeyed:
                done.append("secret header updated")
            if not dry_run:
                client.patch_webhook(hook_id, headers={SECRET_HEADER: secret} if rekeyed else None,
                                     target_hook_url=target if moved else None)
        if is_disabled(hook):
            done.append(f"resumed (disabled since {hook.get('timestamp_error') or '?'})")
            if not dry_run:
                client.resume_webhook(hook_id)
        state = "; ".join(done) if done else "kept"
        outcome.lines.append(WebhookLine(event_type, hook_id, _target({"target_hook_url": target}),
                                         f"would: {state}" if dry_run and done else state))
        for duplicate in extra:
            if not dry_run:
                with suppress(NotFoundError):  # gone already (a retried delete)
                    client.delete_webhook(str(duplicate.get("id")))
            outcome.lines.append(WebhookLine(event_type, str(duplicate.get("id")), _target(duplicate),
                                             "would delete (a second webhook of this type)" if dry_run
                                             else "deleted (a second webhook of this type)"))
    for other in existing:
        if other.get("event_type") not in CONSUMED_EVENTS and _mine(other, target, secrets):
            if not dry_run:
                with suppress(NotFoundError):
                    client.delete_webhook(str(other.get("id")))
            outcome.lines.append(WebhookLine(str(other.get("event_type")), str(other.get("id")), _target(other),
                                             ("would delete" if dry_run else "deleted")
                                             + " (not one webhook per consumed event type)"))
    outcome.note = ("Set WEBHOOKS_ENABLED=true for the scheduled sync (a repository variable) so each run checks "
                    "the webhooks and backfills failed deliveries.")
    return outcome


def ours(existing: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The webhooks that carry the secret header: coldsync's, whatever their URL."""
    return [w for w in existing if carries_secret(w)]


def _ours_by_type(mine: Sequence[Mapping[str, Any]],
                  outcome: WebhookOutcome) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """coldsync's webhooks per consumed event type (exactly that type), in CONSUMED_EVENTS order; a type with none is
    listed in `outcome` as MISSING (exit code 1) and left out."""
    found = []
    for event_type in CONSUMED_EVENTS:
        hooks = [w for w in mine if w.get("event_type") == event_type]
        if hooks:
            found.append((event_type, hooks))
        else:
            outcome.lines.append(WebhookLine(event_type, None, "", "MISSING: run --webhooks register URL"))
            outcome.exit_code = 1
    return found


def health(existing: Sequence[Mapping[str, Any]], secret: str | None = None) -> WebhookOutcome:
    """What `status` says of a webhook listing (pure): per consumed event type, coldsync's webhooks (secret
    header) and whether each is active; with `secret` (INSTANTLY_WEBHOOK_SECRET where it is set), whether each sends
    it (after a rotation that was not registered every delivery is refused 401). Exit code 1 when a type has none,
    a second one, one disabled, one with another secret, or when a coldsync webhook of another type (e.g.
    `all_events`) would deliver events twice."""
    mine = ours(existing)
    outcome = WebhookOutcome()
    for event_type, hooks in _ours_by_type(mine, outcome):
        for index, hook in enumerate(hooks):
            if is_disabled(hook):
                state = f"DISABLED since {hook.get('timestamp_error') or '?'}: run --webhooks resume"
            elif secret is not None and not carries_secret(hook, secret):
                state = ("WRONG SECRET: its header is not INSTANTLY_WEBHOOK_SECRET, so the receiver refuses every "
                         "delivery: run --webhooks register URL")
            elif index > 0:
                state = "DUPLICATE: every event is delivered twice: run --webhooks register URL"
            else:
                state = "active"
            if state != "active":
                outcome.exit_code = 1
            outcome.lines.append(WebhookLine(event_type, str(hook.get("id")), _target(hook), state))
    for hook in mine:
        if hook.get("event_type") not in CONSUMED_EVENTS:
            outcome.exit_code = 1
            outcome.lines.append(WebhookLine(str(hook.get("event_type")), str(hook.get("id")), _target(hook),
                                             "EXTRA: not one webhook per consumed event type: run --webhooks "
                                             "register URL"))
    outcome.lines.sort(key=lambda line: (CONSUMED_EVENTS.index(line.event_type)
                                         if line.event_type in CONSUMED_EVENTS else len(CONSUMED_EVENTS)))
    return outcome


def status(client: WebhookClient, secret: str | None = None) -> WebhookOutcome:
    """`health` of the workspace's webhooks (listWebhook). PlanError (402) propagates: the caller says the plan has
    no webhooks."""
    return health(client.list_webhooks(), secret)


def resume(client: WebhookClient, *, dry_run: bool = False) -> WebhookOutcome:
    """Resume every disabled coldsync webhook (secret header); list the others as they are. Exit code 1 when a
    consumed type still has no webhook, or (dry run) one is still disabled. While a webhook is disabled Instantly
    attempts nothing, so those events are not in the failed-delivery listing: polling is what catches them."""
    outcome = WebhookOutcome()
    for event_type, hooks in _ours_by_type(ours(client.list_webhooks()), outcome):
        for hook in hooks:
            state = "active"
            if is_disabled(hook):
                state = "would resume" if dry_run else "resumed"
                if dry_run:
                    outcome.exit_code = 1
                else:
                    client.resume_webhook(str(hook["id"]))
            outcome.lines.append(WebhookLine(event_type, str(hook.get("id")), _target(hook), state))
    outcome.lines.sort(key=lambda line: CONSUMED_EVENTS.index(line.event_type))  # stable: MISSING in its place
    return outcome


@dataclass(frozen=True)
class BackfillMark:
    """Where the backfill stands, kept in the run summary (RunReport.webhook_backfill): `through`, the last day a
    listing read to its end; and, when the last one was cut short at max_pages, the `from` day it listed from and
    the cursor its next page starts after, so the next run goes on from there instead of starting over."""

    through: dt.date | None = None
    resume_from: dt.date | None = None
    after: str | None = None

    def to_dict(self) -> dict[str, str]:
        found = {"through": self.through, "resume_from": self.resume_from, "after": self.after}
        return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in found.items() if v is not None}

    @classmethod
    def from_dict(cls, memory: object) -> BackfillMark:
        """The mark a run summary kept; anything unreadable reads as no mark (a first backfill)."""
        if not isinstance(memory, Mapping):
            return cls()

        def day(key: str) -> dt.date | None:
            value = memory.get(key)
            try:
                return dt.date.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                return None
        after = memory.get("after")
        resume_from = day("resume_from")
        if isinstance(after, str) and after and resume_from is not None:
            return cls(day("through"), resume_from, after)
        return cls(day("through"))


@dataclass
class Backfill:
    """What a run's backfill did: failed delivery attempts listed, events written, repeats (of an event already
    stored, or a second attempt of one), deliveries ignored (by reason), of erased persons, unreadable payloads,
    and the mark the next run starts from."""

    listed: int = 0
    stored: int = 0
    already: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    erased: int = 0
    unreadable: int = 0
    mark: BackfillMark = field(default_factory=BackfillMark)
    complete: bool = True


def backfill_from(last_through: dt.date | None, today: dt.date) -> dt.date:
    """The `from` date of a fresh listing: BACKFILL_OVERLAP_DAYS before the last run's `through`, or
    BACKFILL_FIRST_DAYS back on the first run (and never after today)."""
    if last_through is None:
        return today - dt.timedelta(days=BACKFILL_FIRST_DAYS)
    return min(today, last_through - dt.timedelta(days=BACKFILL_OVERLAP_DAYS))


def backfill(client: WebhookClient, warehouse: Warehouse, managed: Collection[str], *, mark: BackfillMark,
             now: dt.datetime, erased: Callable[[Collection[str]], set[str]] | None = None, dry_run: bool = False,
             max_pages: int | None = None, search: str | None = None) -> Backfill:
    """Read the failed deliveries (listWebhookEvent, success=false) back into ops_instantly_events as
    `backfill` rows, through the same parser and filter as the receiver (events.ignore_reason): an event of a type
    not consumed or of a campaign not managed (`managed`: lower-cased ids) is counted as ignored, an unreadable
    payload as unreadable, and an event of a person `erased` names (coldsync.store.Store.erased_among: their
    suppression keys that are erased) is not stored again. The listing starts where `mark` says: after the cursor
    of a listing cut short, else from backfill_from(mark.through). One look-up of the dedup keys already stored
    (so neither engine stores a repeat), then one append. The payload is re-serialized from the listing's object
    (its key order kept): the original bytes are not in the API. `dry_run` counts and writes nothing, and keeps
    the mark. `search`: coldsync's receiver URL, so another tool's failing webhook does not use up the pages (the
    spec's `search`: "exact webhook URL"). No `to` date: the listing runs to its end (today, or in the
    simulator's clock its own today). Raises InstantlyError (PlanError: no webhooks on this plan) and
    WarehouseError."""
    today = now.astimezone(dt.UTC).date()
    start = mark.resume_from if mark.after else backfill_from(mark.through, today)
    start = min(start or today, today)
    listing = client.list_webhook_events(success=False, from_date=start, max_pages=max_pages,
                                         starting_after=mark.after, search=search)
    result = Backfill(mark=mark)
    rows: dict[str, EventRow] = {}
    for item in listing:
        result.listed += 1
        payload = item.get("payload")
        try:
            row = parse_payload(payload, json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
        except PayloadError:
            result.unreadable += 1
            continue
        reason = ignore_reason(row, managed)
        if reason is not None:
            result.ignored[reason] = result.ignored.get(reason, 0) + 1
            continue
        if row.dedup_key in rows:
            result.already += 1
            continue
        rows[row.dedup_key] = row
    if getattr(listing, "complete", True):
        next_mark = BackfillMark(through=today)
    else:  # cut short: the next run goes on after the last page read (or lists the same days again)
        result.complete = False
        cursor = getattr(listing, "resume_cursor", None)
        next_mark = BackfillMark(mark.through, start, cursor) if cursor else mark
    if rows and erased is not None:
        gone = erased({row.email_key for row in rows.values() if row.email_key})
        for key in [k for k, row in rows.items() if row.email_key in gone]:
            del rows[key]
            result.erased += 1
    if rows:
        found = warehouse.query("SELECT DISTINCT dedup_key FROM `{ds}.ops_instantly_events` "
                                "WHERE dedup_key IN UNNEST(@keys)", {"keys": StringArray(sorted(rows))},
                                label="webhooks.backfill_known")
        known = {str(r["dedup_key"]) for r in found}
        new = [row for key, row in rows.items() if key not in known]
        result.already += len(rows) - len(new)
        if new and not dry_run:
            stamp = now.astimezone(dt.UTC)
            warehouse.append_rows(EVENTS, [row.as_row(stamp, DELIVERED_BY_BACKFILL) for row in new],
                                  key="dedup_key", label="webhooks.backfill")
        result.stored = len(new)
    result.mark = mark if dry_run else next_mark
    return result


WEBHOOK_ACTIONS: tuple[str, ...] = ("register", "status", "resume")


def webhooks_command(settings: Settings, action: Sequence[str], *, as_json: bool = False,
                     client: WebhookClient | None = None) -> int:
    """`sync_once.py --webhooks register URL | status | resume`: print the outcome (text or JSON) and return the
    exit code: 0 every consumed event type has an active webhook, 1 one is disabled or missing, 2 bad input, no key,
    no secret (register), or a plan without webhooks (402). DRY_RUN=true lists what register/resume would do."""
    verb, *rest = action
    try:
        require(settings, ["instantly_api_key"], "the webhook commands talk to Instantly")
        if verb == "register":
            require(settings, ["instantly_webhook_secret"], "register puts the secret in each webhook's header")
    except SettingsError as exc:
        print(redact(f"Configuration error: {exc}"), file=sys.stderr)
        return ExitCode.BAD_CONFIG
    with ExitStack() as stack:
        if client is None:
            client = stack.enter_context(InstantlyClient(
                settings.instantly_api_key.reveal(), base_url=settings.instantly_base_url,
                max_per_second=settings.instantly_max_per_second, max_per_minute=settings.instantly_max_per_minute,
                request_deadline=settings.instantly_request_deadline_seconds,
                max_timeout_attempts=settings.instantly_timeout_attempts))
        try:
            if verb == "register":
                outcome = register(client, rest[0], settings.instantly_webhook_secret.reveal(),
                                   previous=settings.instantly_webhook_secret_previous.reveal(),
                                   dry_run=settings.dry_run)
            elif verb == "status":
                outcome = status(client, settings.instantly_webhook_secret.reveal() or None)
            else:
                outcome = resume(client, dry_run=settings.dry_run)
        except WebhookInputError as exc:
            print(f"Configuration error: {exc}", file=sys.stderr)
            return ExitCode.BAD_CONFIG
        except PlanError:
            print("Configuration error: Instantly answered 402 Payment Required: this workspace's plan has no "
                  "webhooks. Polling alone keeps suppression (every unsubscribe within one run); keep "
                  "WEBHOOKS_ENABLED=false (docs/OPERATIONS.md: real-time suppression).", file=sys.stderr)
            return ExitCode.BAD_CONFIG
        except InstantlyError as exc:
            print(f"Instantly error: {exc}", file=sys.stderr)
            return ExitCode.RUN_FAILED
    print(outcome.to_json() if as_json else outcome.render_text())
    return outcome.exit_code
