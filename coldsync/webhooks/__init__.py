"""Instantly webhooks: deliveries into `ops_instantly_events` (events.py: the pure part). Nothing is imported here at
import time: the receiver's web framework loads only where the receiver runs."""
