"""Webhook operations against the simulator: `--webhooks register URL` is idempotent and puts a rotated secret on
the existing webhooks, `status` flags disabled and missing ones, `resume` resumes them, a plan without webhooks is
told apart, and the backfill stores each failed delivery once (dedup-safe, both engines' rule)."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldsync.instantly.client import InstantlyClient
from coldsync.instantly.errors import PlanError
from coldsync.instantly.simulator import Fate, InstantlySimulator
from coldsync.settings import Settings
from coldsync.warehouse.duckdb import DuckDBWarehouse
from coldsync.webhooks.events import SECRET_HEADER
from coldsync.webhooks.ops import (
    BACKFILL_FIRST_DAYS,
    BackfillMark,
    WebhookInputError,
    backfill,
    backfill_from,
    check_receiver_url,
    register,
    resume,
    status,
    webhooks_command,
)
from tests.conftest import make_settings
from tests.helpers import build
from tests.instantly_fixtures import KEY, make_client, make_sim

SECRET = "whsec-Q8rT5vN2-ops-test-shared-secret-0042"
ROTATED = "whsec-M3kP9xL7-ops-rotated-secret-value-0099"
URL = "https://hooks.corp.example/coldsync"
SMB = "11111111-1111-4111-8111-111111111111"
OTHER = "33333333-3333-4333-8333-333333333333"
T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def sim() -> Iterator[InstantlySimulator]:
    simulator = make_sim(now=T0, webhook_retry_delays=(0.01, 0.01, 0.01), webhook_disable_after=2,
                         webhook_timeout=0.5)
    simulator.start()
    simulator.create_campaign("SMB", campaign_id=SMB)
    simulator.create_campaign("Other", campaign_id=OTHER)
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def client(sim: InstantlySimulator) -> Iterator[InstantlyClient]:
    with make_client(sim) as made:
        yield made


def creates(sim: InstantlySimulator) -> int:
    return len(sim.requests_to("POST", "/webhooks"))


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_receiver_url_must_be_https_except_on_loopback() -> None:
    """https passes; plain http only on 127.0.0.1/localhost; no scheme, a user:password or a fragment is refused
    naming URL."""
    assert check_receiver_url(URL) == URL
    assert check_receiver_url("http://127.0.0.1:8123/hook") == "http://127.0.0.1:8123/hook"
    for bad in ("http://hooks.corp.example/x", "hooks.corp.example/x", "https://user:pw@hooks.corp.example/x",
                "https://hooks.corp.example/x#frag"):
        with pytest.raises(WebhookInputError, match="URL"):
            check_receiver_url(bad)


def test_register_creates_one_webhook_per_consumed_event_then_keeps_them(sim: InstantlySimulator,
                                                                         client: InstantlyClient) -> None:
    """The first register creates three webhooks (unsubscribe, bounce, reply) to the URL with the secret header; a
    second creates nothing and answers `kept` three times; a dry run on an empty workspace creates nothing."""
    first = register(client, URL, SECRET)
    assert [(line.event_type, line.state) for line in first.lines] == [
        ("lead_unsubscribed", "created"), ("email_bounced", "created"), ("reply_received", "created")]
    hooks = sim.webhooks()
    assert sorted((h["event_type"], h["target_hook_url"], h["headers"][SECRET_HEADER], h["name"]) for h in hooks) == [
        ("email_bounced", URL, SECRET, "coldsync email_bounced"),
        ("lead_unsubscribed", URL, SECRET, "coldsync lead_unsubscribed"),
        ("reply_received", URL, SECRET, "coldsync reply_received")]
    again = register(client, URL, SECRET)
    assert [line.state for line in again.lines] == ["kept"] * 3 and again.exit_code == 0
    assert creates(sim) == 3
    assert SECRET not in again.render_text() + again.to_json()


def test_register_puts_a_rotated_secret_on_the_existing_webhooks(sim: InstantlySimulator,
                                                                 client: InstantlyClient) -> None:
    """Registering again with a new secret PATCHes each webhook's header (no second webhook), and a dry run only
    says it would."""
    register(client, URL, SECRET)
    dry = register(client, URL, ROTATED, dry_run=True)
    assert [line.state for line in dry.lines] == ["would: secret header updated"] * 3
    assert {h["headers"][SECRET_HEADER] for h in sim.webhooks()} == {SECRET}
    rotated = register(client, URL, ROTATED)
    assert [line.state for line in rotated.lines] == ["secret header updated"] * 3
    assert {h["headers"][SECRET_HEADER] for h in sim.webhooks()} == {ROTATED}
    assert creates(sim) == 3 and len(sim.requests_to("PATCH", "/webhooks/{id}")) == 3


def test_status_flags_a_disabled_webhook_and_resume_turns_it_back_on(sim: InstantlySimulator,
                                                                      client: InstantlyClient) -> None:
    """All three active: status exit 0. Two unsubscribes whose deliveries all fail disable the unsubscribe webhook
    (status -1): status exit 1 naming it DISABLED; resume resumes exactly that one; status is 0 again."""
    register(client, f"http://127.0.0.1:{dead_port()}/hook", SECRET)
    assert status(client).exit_code == 0
    sim.insert_leads(SMB, [{"email": f"gone{i}@corp.example"} for i in range(2)])
    for lead in sim.leads():
        sim.finish_lead(str(lead["id"]), "unsubscribed")
        assert sim.wait_for_webhooks(5)
    seen = status(client)
    assert seen.exit_code == 1
    states = {line.event_type: line.state for line in seen.lines}
    assert states["lead_unsubscribed"].startswith("DISABLED since ") and states["email_bounced"] == "active"
    resumed = resume(client)
    assert [(line.event_type, line.state) for line in resumed.lines] == [
        ("lead_unsubscribed", "resumed"), ("email_bounced", "active"), ("reply_received", "active")]
    assert status(client).exit_code == 0


def test_status_names_missing_event_types(client: InstantlyClient) -> None:
    """With only a bounce webhook carrying the secret header (and a foreign one without it), status lists the
    unsubscribe and reply types as MISSING and exits 1."""
    client.create_webhook(URL, "email_bounced", headers={SECRET_HEADER: SECRET})
    client.create_webhook("https://zapier.corp.example/x", "all_events", headers={"Authorization": "Basic eA=="})
    seen = status(client)
    assert [(line.event_type, line.state.split(":")[0]) for line in seen.lines] == [
        ("lead_unsubscribed", "MISSING"), ("email_bounced", "active"), ("reply_received", "MISSING")]
    assert seen.exit_code == 1


def test_a_plan_without_webhooks_is_a_clear_configuration_error(sim: InstantlySimulator, tmp_path: Path,
                                                                 client: InstantlyClient,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """On a plan without webhooks (402) register raises PlanError, and the command exits 2 saying the plan has no
    webhooks and that polling alone keeps suppression."""
    sim.set_webhooks_in_plan(False)
    with pytest.raises(PlanError):
        register(client, URL, SECRET)
    settings = make_settings(tmp_path, instantly_api_key=KEY, instantly_base_url=sim.base_url)
    assert webhooks_command(settings, ["status"], client=client) == 2
    err = capsys.readouterr().err
    assert "plan has no webhooks" in err and "Polling alone keeps suppression" in err


def test_register_without_a_secret_is_refused_before_any_call(sim: InstantlySimulator, tmp_path: Path,
                                                              client: InstantlyClient,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`--webhooks register URL` with no INSTANTLY_WEBHOOK_SECRET exits 2 naming the setting; nothing is sent."""
    settings = make_settings(tmp_path, instantly_api_key=KEY, instantly_base_url=sim.base_url)
    assert webhooks_command(settings, ["register", URL], client=client) == 2
    assert "INSTANTLY_WEBHOOK_SECRET" in capsys.readouterr().err
    assert sim.request_log == []


def test_backfill_from_reads_a_week_first_then_from_the_day_before_the_last(tmp_path: Path) -> None:
    """No watermark: BACKFILL_FIRST_DAYS back; then one day before the last day listed; never after today."""
    today = dt.date(2026, 11, 30)
    assert backfill_from(None, today) == today - dt.timedelta(days=BACKFILL_FIRST_DAYS) == dt.date(2026, 11, 23)
    assert backfill_from(dt.date(2026, 11, 28), today) == dt.date(2026, 11, 27)
    assert backfill_from(dt.date(2026, 12, 5), today) == today


def test_backfill_stores_each_failed_delivery_once(sim: InstantlySimulator, client: InstantlyClient,
                                                   tmp_path: Path, settings: Settings) -> None:
    """The receiver down: an unsubscribe (4 failed attempts, one event), a reply, and an unsubscribe in a campaign
    not managed are listed as failed; the backfill stores the two managed events once each (delivered_by
    backfill), counts 6 attempts as repeats and 4 as ignored; a second backfill stores nothing."""
    register(client, f"http://127.0.0.1:{dead_port()}/hook", SECRET)
    sim.insert_leads(SMB, [{"email": "ann@corp.example"}, {"email": "bob@corp.example"}])
    sim.insert_leads(OTHER, [{"email": "cy@corp.example"}])
    fates: dict[str, Fate] = {"ann@corp.example": "unsubscribed", "bob@corp.example": "replied",
                              "cy@corp.example": "unsubscribed"}
    for lead in sim.leads():
        sim.finish_lead(str(lead["id"]), fates[str(lead["email"])])
        assert sim.wait_for_webhooks(5)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    try:
        build(warehouse, settings)
        done = backfill(client, warehouse, {SMB}, mark=BackfillMark(), now=T0)
        assert (done.listed, done.stored, done.already, done.ignored, done.unreadable, done.complete) == (
            12, 2, 6, {"campaign not managed": 4}, 0, True)
        assert done.mark == BackfillMark(through=T0.date())
        stored = warehouse.query("SELECT email_key, event_type, delivered_by, campaign_id FROM "
                                 "`{ds}.ops_instantly_events` ORDER BY email_key", label="t")
        assert [tuple(r.values()) for r in stored] == [
            ("ann@corp.example", "lead_unsubscribed", "backfill", SMB),
            ("bob@corp.example", "reply_received", "backfill", SMB)]
        again = backfill(client, warehouse, {SMB}, mark=done.mark, now=T0)
        assert (again.listed, again.stored, again.already) == (12, 0, 8)
        assert warehouse.query("SELECT COUNT(*) AS n FROM `{ds}.ops_instantly_events`", label="t") == [{"n": 2}]
    finally:
        warehouse.close()


@pytest.mark.parametrize(("argv", "says"), [
    (["--webhooks", "bogus"], "expected one of register, status, resume"),
    (["--webhooks", "register"], "takes the receiver's URL"),
    (["--webhooks", "status", "extra"], "takes no argument"),
    (["--webhooks", "status", "--report"], "run --report on its own"),
])
def test_webhooks_misuse_is_refused_before_anything_runs(argv: list[str], says: str, clean_env: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong --webhooks action, a register without its URL, an extra argument, or --webhooks beside another mode
    exits 2 with the reason; no warehouse file is created."""
    import sync_once

    assert sync_once.main(argv) == 2
    assert says in capsys.readouterr().err
    assert not (clean_env / "a.duckdb").exists()


def test_sync_once_webhooks_register_then_status_json(sim: InstantlySimulator, clean_env: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`sync_once.py --webhooks register URL` then `--webhooks status --json` against the simulator: exit 0 both,
    the JSON lists the three consumed types active, and neither output holds the secret."""
    import json

    import sync_once

    for name, value in {"INSTANTLY_API_KEY": KEY, "INSTANTLY_BASE_URL": sim.base_url,
                        "INSTANTLY_WEBHOOK_SECRET": SECRET}.items():
        monkeypatch.setenv(name, value)
    assert sync_once.main(["--webhooks", "register", URL]) == 0
    registered = capsys.readouterr().out
    assert registered.count(": created -> https://hooks.corp.example/coldsync") == 3
    assert sync_once.main(["--webhooks", "status", "--json"]) == 0
    shown = capsys.readouterr().out
    assert [(w["event_type"], w["state"]) for w in json.loads(shown)["webhooks"]] == [
        ("lead_unsubscribed", "active"), ("email_bounced", "active"), ("reply_received", "active")]
    assert SECRET not in registered + shown


def test_a_backfill_cut_short_goes_on_from_its_cursor_and_skips_erased_persons(tmp_path: Path,
                                                                             settings: Settings) -> None:
    """30 unsubscribes whose 4 attempts each failed (120 listed), read one page of 100 a run: the first run stores
    the 25 events of its page and keeps the cursor; the second goes on after it (its page of 20, then the empty page
    that ends the listing), stores the last 5 (one of them,
    an erased person's, is counted and not stored) and reads to the end (the mark moves to today). Restarting
    from page one instead would store nothing new in the second run."""
    sim = make_sim(now=T0, webhook_retry_delays=(0.0, 0.0, 0.0), webhook_disable_after=1000, webhook_timeout=0.5)
    sim.start()
    sim.create_campaign("SMB", campaign_id=SMB)
    client = make_client(sim)
    register(client, f"http://127.0.0.1:{dead_port()}/hook", SECRET)
    sim.insert_leads(SMB, [{"email": f"p{i:02d}@corp.example"} for i in range(30)])
    for lead in sorted(sim.leads(), key=lambda x: str(x["email"])):
        sim.finish_lead(str(lead["id"]), "unsubscribed")
    assert sim.wait_for_webhooks(10)
    warehouse = DuckDBWarehouse(tmp_path / "wh.duckdb", "coldsync")
    try:
        build(warehouse, settings)
        first = backfill(client, warehouse, {SMB}, mark=BackfillMark(), now=T0, max_pages=1)
        assert (first.listed, first.stored, first.already, first.complete) == (100, 25, 75, False)
        assert first.mark.through is None and first.mark.after is not None
        assert first.mark.resume_from == T0.date() - dt.timedelta(days=BACKFILL_FIRST_DAYS)
        stored = {r["email"] for r in warehouse.query("SELECT email FROM `{ds}.ops_instantly_events`", label="t")}
        last = sorted({f"p{i:02d}@corp.example" for i in range(30)} - stored)
        assert len(last) == 5
        second = backfill(client, warehouse, {SMB}, mark=first.mark, now=T0, max_pages=2,
                          erased=lambda keys: {last[0]} & set(keys))
        assert (second.listed, second.stored, second.erased, second.already, second.complete) == (20, 4, 1, 15, True)
        assert second.mark == BackfillMark(through=T0.date())
        rows = warehouse.query("SELECT COUNT(*) AS n, COUNT(DISTINCT dedup_key) AS k FROM "
                               "`{ds}.ops_instantly_events`", label="t")
        assert rows == [{"n": 29, "k": 29}]
        assert BackfillMark.from_dict(first.mark.to_dict()) == first.mark
    finally:
        warehouse.close()
        client.close()
        sim.stop()


def test_register_converges_a_moved_receiver_duplicates_and_a_disabled_webhook(sim: InstantlySimulator,
                                                                              client: InstantlyClient) -> None:
    """Coldsync's webhooks at an old URL, a second unsubscribe webhook (same header) and a disabled bounce one: a
    register to the new URL (spelled with the default port and an upper-case host) PATCHes each to it, resumes
    the disabled one, deletes the duplicate, creates nothing; the workspace ends with exactly three, all at the new
    URL and active; a foreign webhook (no coldsync header) is left alone."""
    old = "https://old.corp.example/hook"
    for event_type in ("lead_unsubscribed", "email_bounced", "reply_received"):
        client.create_webhook(old, event_type, headers={SECRET_HEADER: SECRET})
    duplicate = client.create_webhook("https://other.corp.example/x", "lead_unsubscribed",
                                      headers={SECRET_HEADER: SECRET})
    foreign = client.create_webhook("https://zapier.corp.example/x", "lead_unsubscribed",
                                    headers={"Authorization": "Basic eA=="})
    bounce = next(h for h in sim.webhooks() if h["event_type"] == "email_bounced")
    sim.disable_webhook(str(bounce["id"]))
    since = next(h for h in sim.webhooks() if h["id"] == bounce["id"])["timestamp_error"]
    done = register(client, "https://HOOKS.corp.example:443/coldsync", SECRET)
    moved = "moved from https://old.corp.example/hook"
    assert [(line.event_type, line.state) for line in done.lines] == [
        ("lead_unsubscribed", moved), ("lead_unsubscribed", "deleted (a second webhook of this type)"),
        ("email_bounced", f"{moved}; resumed (disabled since {since})"), ("reply_received", moved)]
    assert done.lines[1].webhook_id == duplicate["id"]
    after = sorted((h["event_type"], h["target_hook_url"], h["status"]) for h in sim.webhooks()
                   if h["id"] != foreign["id"])
    assert after == [("email_bounced", URL, 1), ("lead_unsubscribed", URL, 1), ("reply_received", URL, 1)]
    assert creates(sim) == 5 and any(h["id"] == foreign["id"] for h in sim.webhooks())
    assert [line.state for line in register(client, URL, SECRET).lines] == ["kept"] * 3


def test_status_flags_a_duplicate_and_a_secret_the_receiver_would_refuse(client: InstantlyClient) -> None:
    """Status with INSTANTLY_WEBHOOK_SECRET given: a webhook still sending the old secret is WRONG SECRET, a second
    one of a type is DUPLICATE; exit 1; without the secret to compare, the old-secret one reads as active."""
    register(client, URL, SECRET)
    client.create_webhook("https://other.corp.example/x", "reply_received", headers={SECRET_HEADER: SECRET})
    seen = status(client, ROTATED)
    states = [(line.event_type, line.state.split(":")[0]) for line in seen.lines]
    assert states == [("lead_unsubscribed", "WRONG SECRET"), ("email_bounced", "WRONG SECRET"),
                      ("reply_received", "WRONG SECRET"), ("reply_received", "WRONG SECRET")]
    assert seen.exit_code == 1
    plain = status(client, SECRET)
    assert [(line.event_type, line.state.split(":")[0]) for line in plain.lines] == [
        ("lead_unsubscribed", "active"), ("email_bounced", "active"), ("reply_received", "active"),
        ("reply_received", "DUPLICATE")]
    assert plain.exit_code == 1


def test_register_replaces_an_all_events_webhook_and_leaves_another_installation_alone(
        sim: InstantlySimulator, client: InstantlyClient) -> None:
    """A coldsync `all_events` webhook (this secret) is deleted by register once the three typed ones exist, and
    status flagged it EXTRA before; a webhook with the coldsync header but another installation's secret and URL
    is neither changed nor deleted."""
    mine = client.create_webhook(URL, "all_events", headers={SECRET_HEADER: SECRET})
    theirs = client.create_webhook("https://staging.corp.example/hook", "lead_unsubscribed",
                                   headers={SECRET_HEADER: ROTATED})
    before = status(client, SECRET)
    assert ("all_events", "EXTRA") in [(line.event_type, line.state.split(":")[0]) for line in before.lines]
    done = register(client, URL, SECRET)
    assert [(line.event_type, line.state) for line in done.lines] == [
        ("lead_unsubscribed", "created"), ("email_bounced", "created"), ("reply_received", "created"),
        ("all_events", "deleted (not one webhook per consumed event type)")]
    left = {h["id"]: (h["event_type"], h["target_hook_url"], h["headers"][SECRET_HEADER]) for h in sim.webhooks()}
    assert mine["id"] not in left
    assert left[theirs["id"]] == ("lead_unsubscribed", "https://staging.corp.example/hook", ROTATED)
    assert len(left) == 4
