"""The reliability proof of coldsync: crash at every step, fault storms, hostile input, concurrent runs.

Not part of the product (nothing in `coldsync/` imports it): a harness that drives the real sync
against the Instantly simulator and a real warehouse, injects failures at both edges, and checks
the design's invariants with `tests/invariants.py` after every run. `python -m proof` re-measures
every figure published in docs/RELIABILITY.md; `tests/test_reliability.py` runs a sample of it.
"""
