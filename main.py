"""Cloud Run functions entry file: the Python runtime loads the function from `main.py` at the source's root (and puts
that directory on sys.path, so `coldsync` imports). Deploy with `--entry-point=receive`: the command and what the
service account needs are in coldsync/webhooks/app.py. Nothing else belongs here."""

from coldsync.webhooks.app import receive

__all__ = ["receive"]
