"""A/B results per route: reply and interested rates per arm, a two-proportion z-test and the sample size
still needed, or a plain "Not enough data yet".

What is counted (from `ops_lead_history`, one row per finished attempt; the arm is the row's `arm`, else
the arm whose campaign the row names in the routing in effect):

- finished: every attempt that reached Instantly: all rows but a given-up add (`failed`) and an add
  skipped because the address was already in the workspace (`in_workspace`): neither was ever emailed;
- replied: `status_final = 'replied'`, the classifier's one definition of a real reply
  (coldsync.rules.classify_finished_lead: a reply count, or an interest status other than out of office);
- interested: the outcome policy `in_sales` (coldsync.outcomes.policy_for: interested, meeting booked,
  meeting completed, won, or a positive custom label); a row written before policies counts by its
  `interest_status` (1 to 4, coldsync.outcomes.POSITIVE_INTEREST).

Each arm after the first is compared with the route's first arm (its baseline), per rate, by the pooled
two-proportion z-test (METHOD): z = (p_arm - p_base) / sqrt(p (1 - p) (1/n_arm + 1/n_base)), p the pooled
rate, two-sided p-value erfc(|z| / sqrt 2) = 2 (1 - Phi(|z|)). A comparison is made only when both arms have
at least MIN_FINISHED finished leads and at least MIN_EVENTS leads with and without the event (the usual
n p >= 5 and n (1 - p) >= 5 condition for the normal approximation); otherwise it says "Not enough data
yet" and why, and gives no z or p.

The sample size per arm that detects the observed difference at a two-sided alpha of 0.05 with power 0.8
(SAMPLE_SIZE_FORMULA): n = (z_{1-a/2} sqrt(2 pbar qbar) + z_{1-b} sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2, pbar
the mean of the two rates, rounded up. Source: Fleiss, Levin & Paik, Statistical Methods for Rates and
Proportions, 3rd ed. (2003), section 4.2 (without continuity correction); the same n as R's
`stats::power.prop.test(p1, p2, power = 0.8)`. Equal rates need no finite n (None).

Pure functions (`two_proportion_test`, `sample_size_per_arm`, `ab_results_from_counts`) and one read
(`ab_results`: one query). Every result is plain dicts and numbers (JSON-ready, no email: counts only),
for the status report (`--report`, `--report --json`) and the HTML report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from coldsync.outcomes import IN_SALES, IN_WORKSPACE_OUTCOME, POSITIVE_INTEREST
from coldsync.routes import Routing
from coldsync.rules import GIVE_UP_OUTCOME
from coldsync.warehouse.base import Warehouse

METHOD = "two-proportion z-test (pooled), two-sided"
SAMPLE_SIZE_FORMULA = ("n per arm = (z_{1-alpha/2} sqrt(2 pbar qbar) + z_{1-beta} sqrt(p1 q1 + p2 q2))^2 / "
                       "(p1 - p2)^2, alpha 0.05 two-sided, power 0.8 (Fleiss, Levin & Paik 2003, section 4.2; "
                       "R stats::power.prop.test)")
ALPHA = 0.05
POWER = 0.8
MIN_FINISHED = 30
"""Fewest finished leads per arm before a rate is compared."""
MIN_EVENTS = 5
"""Fewest leads with, and without, the event (a reply, interest) per arm before a rate is compared."""
NOT_ENOUGH = "Not enough data yet"
RATES = (("reply_rate", "replied"), ("interested_rate", "interested"))
"""Each compared rate and the count it is made of."""

_positive = ", ".join(str(int(v)) for v in sorted(POSITIVE_INTEREST))
# One row per (route, arm, campaign) with the three counts; the arm and route are mapped in Python when the
# row has none (rows written before arms were recorded).
AB_COUNTS_SQL = f"""
SELECT sequence_name, arm, campaign_id, COUNT(*) AS finished,
       COUNTIF(status_final = 'replied') AS replied,
       COUNTIF(policy = '{IN_SALES}' OR (policy IS NULL AND interest_status IN ({_positive}))) AS interested
FROM `{{ds}}.ops_lead_history`
WHERE status_final NOT IN ('{GIVE_UP_OUTCOME}', '{IN_WORKSPACE_OUTCOME}')
GROUP BY sequence_name, arm, campaign_id
"""  # noqa: S608  (constants of this codebase, no input)


@dataclass(frozen=True)
class TestResult:
    """A pooled two-proportion z-test of rate b against rate a: z > 0 when b's rate is higher."""

    rate_a: float
    rate_b: float
    pooled: float
    z: float
    p_value: float


def two_proportion_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> TestResult:
    """The pooled two-proportion z-test of b against a (METHOD). Shapes: counts, 0 <= successes <= n, n >= 1;
    ValueError otherwise. With a pooled rate of 0 or 1 (no variance) z is 0 and p is 1.

    Hand-worked (40/200 against 25/200): rates 0.20 and 0.125; pooled 65/400 = 0.1625;
    SE = sqrt(0.1625 x 0.8375 x (1/200 + 1/200)) = sqrt(0.0013609375) = 0.036891;
    z = (0.125 - 0.20) / 0.036891 = -2.0330; p = erfc(2.0330 / sqrt 2) = 0.04205.
    """
    for successes, n in ((successes_a, n_a), (successes_b, n_b)):
        if n < 1 or not 0 <= successes <= n:
            raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes}/{n}")
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return TestResult(rate_a, rate_b, pooled, 0.0, 1.0)
    z = (rate_b - rate_a) / math.sqrt(variance)
    return TestResult(rate_a, rate_b, pooled, z, min(1.0, math.erfc(abs(z) / math.sqrt(2))))


def sample_size_per_arm(rate_a: float, rate_b: float, *, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Leads per arm that detect the difference between `rate_a` and `rate_b` (SAMPLE_SIZE_FORMULA), rounded
    up; None when the rates are equal (no finite n detects no difference).

    Hand-worked (0.20 against 0.125, alpha 0.05, power 0.8): z 1.95996 and 0.84162; pbar 0.1625;
    (1.95996 x sqrt(0.2721875) + 0.84162 x sqrt(0.269375))^2 / 0.075^2 = (1.022545 + 0.436813)^2 / 0.005625
    = 378.62 -> 379.
    """
    if not (0 <= rate_a <= 1 and 0 <= rate_b <= 1):
        raise ValueError("rates are between 0 and 1")
    if rate_a == rate_b:
        return None
    normal = NormalDist()
    z_alpha, z_power = normal.inv_cdf(1 - alpha / 2), normal.inv_cdf(power)
    mean = (rate_a + rate_b) / 2
    spread = (z_alpha * math.sqrt(2 * mean * (1 - mean))
              + z_power * math.sqrt(rate_a * (1 - rate_a) + rate_b * (1 - rate_b)))
    return math.ceil(spread ** 2 / (rate_a - rate_b) ** 2 - 1e-9)


def shortfall(arm: str, finished: int, successes: int, event: str) -> str | None:
    """Why an arm's rate cannot be compared yet (the rule: MIN_FINISHED finished leads, MIN_EVENTS with and
    MIN_EVENTS without the event), or None when it can."""
    if finished < MIN_FINISHED:
        return f"arm {arm} has {finished} finished lead(s), needs {MIN_FINISHED}"
    if successes < MIN_EVENTS:
        return f"arm {arm} has {successes} lead(s) {event}, needs {MIN_EVENTS}"
    if finished - successes < MIN_EVENTS:
        return f"arm {arm} has {finished - successes} lead(s) not {event}, needs {MIN_EVENTS}"
    return None


def compare(base: Mapping[str, Any], arm: Mapping[str, Any], metric: str, count: str) -> dict[str, Any]:
    """One comparison of `arm` with the route's first arm `base` on one rate (plain dict, JSON-ready):
    arm, against, metric, enough_data, verdict, and when there is enough data z, p_value, difference (the
    arm's rate minus the base's, a fraction), needed_per_arm and still_needed (per arm name)."""
    out: dict[str, Any] = {"arm": arm["arm"], "against": base["arm"], "metric": metric, "method": METHOD}
    why = [w for w in (shortfall(str(x["arm"]), int(x["finished"]), int(x[count]), count) for x in (base, arm)) if w]
    if why:
        return {**out, "enough_data": False, "verdict": f"{NOT_ENOUGH}: {'; '.join(why)}"}
    test = two_proportion_test(int(base[count]), int(base["finished"]), int(arm[count]), int(arm["finished"]))
    needed = sample_size_per_arm(test.rate_a, test.rate_b)
    still = None if needed is None else {str(x["arm"]): max(needed - int(x["finished"]), 0) for x in (base, arm)}
    significant = test.p_value < ALPHA
    verdict = (f"{arm['arm']} {'above' if test.z > 0 else 'below'} {base['arm']}: significant at {ALPHA:g}"
               if significant else f"no significant difference at {ALPHA:g} yet")
    # p to 6 significant figures, not 6 places: a strong result keeps its size (2.57581e-18), not 0.0
    return {**out, "enough_data": True, "verdict": verdict, "z": round(test.z, 4),
            "p_value": float(f"{test.p_value:.6g}"),
            "difference": round(test.rate_b - test.rate_a, 6), "needed_per_arm": needed, "still_needed": still}


P_FLOOR = 1e-6
"""Below this a p-value is shown as "< 0.000001" (text and Markdown; JSON keeps the float)."""


def format_p(p_value: float) -> str:
    """A p-value for people: 4 places from 0.001 up (0.0420), 6 below it (0.000063), "< 0.000001" below
    P_FLOOR, never a bare 0.0000 for a strong result."""
    if p_value < P_FLOOR:
        return f"< {P_FLOOR:.6f}"
    return f"{p_value:.4f}" if p_value >= 0.001 else f"{p_value:.6f}"


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def ab_results_from_counts(routing: Routing, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per route with two or more arms: {route, method, sample_size_formula, min_rule, arms: [{arm,
    campaign_id, finished, replied, interested, reply_rate, interested_rate}], comparisons: [compare(...)]}.
    `rows`: AB_COUNTS_SQL's rows (sequence_name, arm, campaign_id, finished, replied, interested). Rows of
    arms or routes no longer in the routing are left out (their arm cannot be named)."""
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        found = routing.route_of_campaign(str(row.get("campaign_id") or ""))
        route_name = str(row.get("sequence_name") or (found[0].name if found else ""))
        arm_name = str(row.get("arm") or (found[1].name if found and found[0].name == route_name else ""))
        bucket = totals.setdefault((route_name, arm_name), {"finished": 0, "replied": 0, "interested": 0})
        for key in bucket:
            bucket[key] += int(row.get(key) or 0)
    results: list[dict[str, Any]] = []
    for route in routing.routes:
        if len(route.arms) < 2:
            continue
        arms = []
        for arm in route.arms:
            counts = totals.get((route.name, arm.name), {"finished": 0, "replied": 0, "interested": 0})
            arms.append({"arm": arm.name, "campaign_id": arm.campaign_id, **counts,
                         "reply_rate": _rate(counts["replied"], counts["finished"]),
                         "interested_rate": _rate(counts["interested"], counts["finished"])})
        comparisons = [compare(arms[0], other, metric, count) for other in arms[1:] for metric, count in RATES]
        results.append({"route": route.name, "method": METHOD, "sample_size_formula": SAMPLE_SIZE_FORMULA,
                        "min_rule": f"each arm: at least {MIN_FINISHED} finished leads, and at least {MIN_EVENTS} "
                                    f"with and {MIN_EVENTS} without the event",
                        "arms": arms, "comparisons": comparisons})
    return results


def ab_results(warehouse: Warehouse, routing: Routing) -> list[dict[str, Any]]:
    """The A/B results of every route with arms (ab_results_from_counts), from one read of ops_lead_history;
    [] without a route with arms (no query). Raises WarehouseError."""
    if not any(len(route.arms) > 1 for route in routing.routes):
        return []
    return ab_results_from_counts(routing, warehouse.query(AB_COUNTS_SQL, label="report.ab_counts"))


def render_text(results: list[dict[str, Any]]) -> list[str]:
    """The results as report lines (indented two spaces, like the status report's)."""
    if not results:
        return ["  A/B results: no route has arms"]
    lines = [f"  A/B results ({METHOD}; each arm against the route's first):"]
    for result in results:
        lines.append(f"    route {result['route']}:")
        for arm in result["arms"]:
            lines.append(f"      arm {arm['arm']:<6} finished {arm['finished']:>7,}  replied {arm['replied']:>6,} "
                         f"({_pct(arm['reply_rate'])})  interested {arm['interested']:>6,} "
                         f"({_pct(arm['interested_rate'])})")
        lines.extend(f"      {comparison_line(c)}" for c in result["comparisons"])
    return lines


def comparison_line(c: Mapping[str, Any]) -> str:
    """One comparison as a sentence: the verdict, and with enough data z, p, the difference and the sample size
    still needed (the text report and the HTML report both say it this way)."""
    line = f"{c['metric']} {c['arm']} vs {c['against']}: {c['verdict']}"
    if c["enough_data"]:
        still = c["still_needed"]
        need = ("no difference observed: no sample size detects none" if still is None else
                f"{c['needed_per_arm']:,} per arm to detect it (still needed: "
                + ", ".join(f"{k} {v:,}" for k, v in still.items()) + ")")
        line += (f" (z {c['z']:.2f}, p {format_p(c['p_value'])}, difference "
                 f"{c['difference'] * 100:+.1f} points; {need})")
    return line


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"
