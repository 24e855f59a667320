"""A/B results: the pooled two-proportion z-test and sample size against hand-worked values, the data rule,
and the per-arm counts read from ops_lead_history on DuckDB (coldsync.abtest)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldsync import abtest
from coldsync.abtest import ab_results, ab_results_from_counts, sample_size_per_arm, two_proportion_test
from coldsync.settings import Settings
from coldsync.status import collect
from coldsync.warehouse.base import Rows
from coldsync.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import make_settings
from tests.helpers import T0, build

SMB = "8c46e0c9-c1f9-4201-a8d6-6221bafeada6"
ARM_A = "5ffbe8c3-dc0e-41e4-9999-48f00d2015df"
ARM_B = "6d2f0c11-7e3a-4b5c-9d8e-1f2a3b4c5d6e"
ROUTES = f"""
[[routes]]
name = "SMB"
when = "annual_revenue IS NULL OR annual_revenue < 1000000"
campaign_id = "{SMB}"

[[routes]]
name = "Midsize"
arms = [ {{ name = "A", campaign_id = "{ARM_A}", weight = 50 }},
         {{ name = "B", campaign_id = "{ARM_B}", weight = 50 }} ]
"""


def test_hand_worked_z_and_p() -> None:
    """40/200 against 25/200: pooled 0.1625, SE 0.036891, z -2.0330, p 0.04205 (worked in the docstring)."""
    result = two_proportion_test(40, 200, 25, 200)
    assert result.pooled == pytest.approx(0.1625)
    assert result.z == pytest.approx(-2.0330, abs=5e-5)
    assert result.p_value == pytest.approx(0.04205, abs=5e-6)


def test_hand_worked_sample_size() -> None:
    """0.20 against 0.125 at alpha 0.05 and power 0.8 needs 378.62 -> 379 leads per arm (R power.prop.test: 378.6)."""
    assert sample_size_per_arm(0.20, 0.125) == 379
    assert sample_size_per_arm(0.125, 0.20) == 379
    assert sample_size_per_arm(0.1, 0.1) is None


def test_no_variance_is_no_evidence() -> None:
    """Both arms at 0% (or 100%): z 0, p 1, not a division by zero."""
    assert (two_proportion_test(0, 50, 0, 60).z, two_proportion_test(0, 50, 0, 60).p_value) == (0.0, 1.0)
    assert two_proportion_test(50, 50, 60, 60).p_value == 1.0
    with pytest.raises(ValueError):
        two_proportion_test(5, 4, 1, 10)


counts = st.integers(min_value=1, max_value=5000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n)))


@given(counts, counts)
def test_p_in_unit_interval_and_symmetric(a: tuple[int, int], b: tuple[int, int]) -> None:
    """For any counts: p in [0, 1]; swapping the arms negates z and keeps p."""
    forward, backward = two_proportion_test(*a, *b), two_proportion_test(*b, *a)
    assert 0.0 <= forward.p_value <= 1.0
    assert forward.z == pytest.approx(-backward.z, abs=1e-9)
    assert forward.p_value == pytest.approx(backward.p_value, abs=1e-12)


@given(counts, st.integers(min_value=1, max_value=20))
def test_equal_rates_give_z_zero(a: tuple[int, int], factor: int) -> None:
    """Two arms with the same rate (k/n and mk/mn): z 0 and p 1."""
    result = two_proportion_test(a[0], a[1], a[0] * factor, a[1] * factor)
    assert result.z == pytest.approx(0.0, abs=1e-9)
    assert result.p_value == pytest.approx(1.0)


def _routing(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, routes=ROUTES)


def test_not_enough_data_is_said_plainly(tmp_path: Path) -> None:
    """An arm under 30 finished leads, or under 5 with or without the event, gets the verdict, no z or p."""
    rows = [{"sequence_name": "Midsize", "arm": "A", "campaign_id": ARM_A, "finished": 29, "replied": 10,
             "interested": 5},
            {"sequence_name": "Midsize", "arm": "B", "campaign_id": ARM_B, "finished": 100, "replied": 97,
             "interested": 4}]
    [result] = ab_results_from_counts(_routing(tmp_path).routing, rows)
    reply, interested = result["comparisons"]
    assert reply["verdict"] == ("Not enough data yet: arm A has 29 finished lead(s), needs 30; arm B has 3 "
                                "lead(s) not replied, needs 5")
    assert interested["verdict"].startswith("Not enough data yet: arm A has 29")
    assert "arm B has 4 lead(s) interested, needs 5" in interested["verdict"]
    assert "z" not in reply and "p_value" not in reply and reply["enough_data"] is False


def _history(email: str, campaign: str, arm: str | None, status: str, policy: str | None,
             interest: int | None) -> dict[str, Any]:
    return {"email": email, "campaign_id": campaign, "sequence_name": "Midsize", "status_final": status,
            "completed_at": T0, "attempt_num": 1, "arm": arm, "policy": policy, "interest_status": interest}


HISTORY_FIELDS = (("email", "STRING"), ("campaign_id", "STRING"), ("sequence_name", "STRING"),
                  ("status_final", "STRING"), ("completed_at", "TIMESTAMP"), ("attempt_num", "INT64"),
                  ("arm", "STRING"), ("policy", "STRING"), ("interest_status", "INT64"))


def _arm_rows(arm: str, campaign: str, finished: int, replied: int, in_sales: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(finished):
        status = "replied" if i < replied else "completed"
        policy = "in_sales" if i < in_sales else ("replied" if i < replied else "no_reply")
        rows.append(_history(f"{arm.lower()}{i}@corp.example", campaign, arm, status, policy, 1 if i < in_sales
                             else None))
    return rows


def test_counts_from_history_on_duckdb(tmp_path: Path) -> None:
    """Arm A 40/200 replied (12 in sales), arm B 25/200 (7 in sales, 1 interested before policies, 1 row without
    an arm counted by its campaign); a given-up add and an in-workspace skip are not finished leads."""
    settings = _routing(tmp_path)
    warehouse = DuckDBWarehouse(tmp_path / "ab.duckdb", "coldsync")
    try:
        build(warehouse, settings)
        rows = _arm_rows("A", ARM_A, 200, 40, 12) + _arm_rows("B", ARM_B, 199, 25, 7)
        rows[-1] = _history("b-old@corp.example", ARM_B, "B", "completed", None, 2)  # interested, before policies
        rows.append(_history("b-noarm@corp.example", ARM_B, None, "completed", "no_reply", None))
        rows.append(_history("a-failed@corp.example", ARM_A, "A", "failed", "given_up", None))
        rows.append(_history("b-ws@corp.example", ARM_B, "B", "in_workspace", "no_reply", None))
        rows.append(_history("smb@corp.example", SMB, "SMB", "replied", "replied", None) | {"sequence_name": "SMB"})
        warehouse.execute(
            "INSERT INTO `{ds}.ops_lead_history` (email, campaign_id, sequence_name, status_final, completed_at, "
            "attempt_num, arm, policy, interest_status) SELECT r.email, r.campaign_id, r.sequence_name, "
            "r.status_final, r.completed_at, r.attempt_num, r.arm, r.policy, r.interest_status "
            "FROM UNNEST(@rows) AS r", {"rows": Rows(HISTORY_FIELDS, rows)}, label="test.history")
        [result] = ab_results(warehouse, settings.routing)
        report = collect(settings, warehouse, now=T0 + dt.timedelta(days=1))
    finally:
        warehouse.close()
    arm_a, arm_b = result["arms"]
    assert (arm_a["finished"], arm_a["replied"], arm_a["interested"]) == (200, 40, 12)
    assert (arm_b["finished"], arm_b["replied"], arm_b["interested"]) == (200, 25, 8)
    assert (arm_a["reply_rate"], arm_b["reply_rate"], arm_b["interested_rate"]) == (0.2, 0.125, 0.04)
    reply = result["comparisons"][0]
    assert (reply["metric"], reply["arm"], reply["against"]) == ("reply_rate", "B", "A")
    assert reply["z"] == pytest.approx(-2.0330, abs=1e-4) and reply["p_value"] == pytest.approx(0.04205, abs=1e-5)
    assert (reply["needed_per_arm"], reply["still_needed"]) == (379, {"A": 179, "B": 179})
    assert reply["verdict"] == "B below A: significant at 0.05"
    assert report.ab_tests == [result]
    data = json.loads(report.to_json())
    assert data["ab_tests"][0]["comparisons"][0]["needed_per_arm"] == 379
    text = report.render("text")
    # p = 0.0420503 (6 significant figures kept, not 0.042050 rounded again to 0.0420)
    assert "reply_rate B vs A: B below A: significant at 0.05 (z -2.03, p 0.0421" in text
    assert "arm A      finished     200  replied     40 (20.0%)  interested     12 (6.0%)" in text
    assert "@corp.example" not in text + report.render("markdown") + report.to_json()


def test_no_route_with_arms_reads_nothing(tmp_path: Path) -> None:
    """The default routes (one campaign each) have no A/B results, and no query is sent for them."""
    settings = make_settings(tmp_path, smb_campaign_id=SMB, midsize_campaign_id=ARM_A)

    class NoQuery:
        def query(self, *_args: object, **_kwargs: object) -> list[dict[str, Any]]:
            raise AssertionError("no query expected")

    assert ab_results(NoQuery(), settings.routing) == []  # type: ignore[arg-type]
    assert abtest.render_text([]) == ["  A/B results: no route has arms"]


def test_strong_result_shows_p_below_the_floor(tmp_path: Path) -> None:
    """A 50% against a 10% reply rate on 200 leads each: pooled 0.3, z = -0.4 / sqrt(0.3 * 0.7 * 2/200) =
    -8.7287, p = erfc(8.7287 / sqrt 2) = 2.5758e-18: the text says "p < 0.000001" (not 0.0000) and the JSON
    keeps the float (not 0.0); p 6.334e-5 and 0.0420503 show as 0.000063 and 0.0421."""
    rows = [{"sequence_name": "Midsize", "arm": "A", "campaign_id": ARM_A, "finished": 200, "replied": 100,
             "interested": 50},
            {"sequence_name": "Midsize", "arm": "B", "campaign_id": ARM_B, "finished": 200, "replied": 20,
             "interested": 10}]
    results = ab_results_from_counts(_routing(tmp_path).routing, rows)
    reply = results[0]["comparisons"][0]
    assert reply["z"] == pytest.approx(-8.7287, abs=1e-4)
    assert reply["p_value"] == pytest.approx(2.5758e-18, rel=1e-4)
    assert json.loads(json.dumps(results))[0]["comparisons"][0]["p_value"] > 0
    assert "reply_rate B vs A: B below A: significant at 0.05 (z -8.73, p < 0.000001, difference -40.0 points" \
        in "\n".join(abtest.render_text(results))
    assert (abtest.format_p(6.334e-5), abtest.format_p(0.0420503), abtest.format_p(1e-6)) == (
        "0.000063", "0.0421", "0.000001")


def test_the_html_report_shows_the_ab_results(tmp_path: Path) -> None:
    """The HTML report's A/B section: per route a table of arms (finished, replied, rates) and one line per
    comparison with the method, the "Not enough data yet" verdict said plainly, and no address anywhere."""
    from coldsync.analytics_report import ab_section

    rows = [{"sequence_name": "Midsize", "arm": "A", "campaign_id": ARM_A, "finished": 29, "replied": 10,
             "interested": 5},
            {"sequence_name": "Midsize", "arm": "B", "campaign_id": ARM_B, "finished": 100, "replied": 97,
             "interested": 4}]
    section = ab_section(ab_results_from_counts(_routing(tmp_path).routing, rows))
    assert "<h3>Route Midsize</h3>" in section and "two-proportion z-test (pooled), two-sided" in section
    assert "<td>A</td>" in section and '<td class="num">29</td>' in section and '<td class="num">97</td>' in section
    assert "reply_rate A vs A" not in section
    assert "Not enough data yet: arm A has 29 finished lead(s), needs 30" in section
    assert "@" not in section
    assert "No route has arms" in ab_section([])
