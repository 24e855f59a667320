"""Read queries shared by the commands (BigQuery dialect; both engines run them)."""

READY_COUNTS_SQL = """
SELECT sequence_target, COUNT(*) AS ready
FROM `{ds}.v_ready_for_instantly`
GROUP BY sequence_target
ORDER BY sequence_target
"""
