"""Typed errors of the Instantly V2 client.

One error path (STYLE.md): every failed call surfaces as one of these, and the sync turns them into
dead letters, exit codes and summary lines. Their text is safe to print: every part of it (the summary,
the server message, the rendered line) goes through `coldsync.redact.redact` (emails in any encoding,
registered secrets, bearer tokens, private keys), the client has already removed its own key (whole or
any fragment) before cutting a server message short, and no error keeps a reference to the request,
its headers or the underlying transport exception.
"""

from __future__ import annotations

from coldsync.redact import redact


class InstantlyError(Exception):
    """A failed Instantly call: HTTP status, method, path and the server's (masked) message."""

    #: True for the categories the client retries with backoff before giving up.
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        http_status: int | None = None,
        method: str = "",
        path: str = "",
        server_message: str = "",
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.http_status = http_status
        self.retry_after = retry_after
        self.method = method
        self.path = path
        self.server_message = redact(server_message)
        self.attempts = attempts
        self.summary = redact(message or type(self).__name__)
        super().__init__(redact(self._render()))

    def _render(self) -> str:
        parts = [self.summary]
        if self.method or self.path:
            parts.append(f"[{self.method} {self.path}]".replace("[ ", "[").replace(" ]", "]"))
        if self.http_status is not None:
            parts.append(f"http {self.http_status}")
        if self.server_message:
            parts.append(f"server said: {self.server_message}")
        if self.attempts > 1:
            parts.append(f"after {self.attempts} attempts")
        return " ".join(parts)

    def __repr__(self) -> str:
        return redact(
            f"{type(self).__name__}(http_status={self.http_status!r}, method={self.method!r}, "
            f"path={self.path!r}, server_message={self.server_message!r}, attempts={self.attempts!r})"
        )


class AuthenticationError(InstantlyError):
    """401: the key is missing, wrong or revoked."""


class PlanError(InstantlyError):
    """402: the workspace has no active paid plan."""


class WebhookPlanError(PlanError):
    """402 on a webhook operation (`/webhooks`, `/webhook-events`): the workspace's plan has no webhooks.

    The spec documents 402 on every webhook operation with its generic text ("the workspace does not have an
    active paid plan"); Instantly's pricing puts webhooks on the higher plans only, so on these operations the
    client reads a 402 as "this plan has no webhooks" (assumed: no recording of it). A `PlanError`, so every
    place that treats a refused plan as service-level still does; `--webhooks status` names it on its own."""


class PlanLimitError(InstantlyError):
    """A 200 add answer that uploaded fewer leads than it was sent and names no other reason for the rest: the
    workspace's plan holds no more leads (the spec has no counter for it; `remaining_in_plan` is the plan's
    figure). A refusal of the whole workspace, not of a lead: a service-level failure (`is_service_level`) of
    POST /leads/add, recorded in the client's `health` once per call; not retried (the same add meets the
    same limit), no circuit (nothing is gained by holding back the next campaign's add, which Instantly
    answers the same way at no cost to any lead). http_status is the answer's 200."""


class AddRefusedError(InstantlyError):
    """Instantly refused a whole add batch (400, naming no lead) and the halving found no lead it accepts: the
    batch was halved until single leads stood alone, every part refused, none accepted. Not one lead's content
    then, but a refusal of POST /leads/add itself (the request's form, the campaign or the workspace): a
    service-level failure (`is_service_level`) of the operation, recorded in the client's `health` once; not
    retried, and it opens the operation's circuit so the run sends no further add (each would cost its own
    halving for the same answer). http_status is the refusals' 400."""


class ScopeError(InstantlyError):
    """403: the key lacks the scope for this operation (or a CDN refused the request)."""


class NotFoundError(InstantlyError):
    """404: the campaign, lead or entry does not exist (for a lead: already deleted)."""


class ValidationError(InstantlyError):
    """400: the server rejected the input; `server_message` says why."""


class RateLimitedError(InstantlyError):
    """429 that persisted through every retry."""

    retryable = True


class ServerError(InstantlyError):
    """5xx, or a 2xx whose body is not the JSON expected, that persisted through every retry."""

    retryable = True


class TransportError(InstantlyError):
    """Connection refused/reset or a timeout that persisted through every retry."""

    retryable = True


class RedirectRefusedError(InstantlyError):
    """A 3xx answer: redirects are never followed (a 307/308 would re-send the leads and the key's request
    to another host, and its answer would be trusted). The text names the Location's host only, never the
    body nor the full Location. Not retried (the same URL answers the same), fatal for the remaining chunks
    of a bulk call, and a service-level failure (`is_service_level`): the run's service letter records it,
    no lead is blamed."""


class RunDeadlineError(InstantlyError):
    """Not sent: the run reached its lease guard (`InstantlyClient.stop_at`), so no call may start that the
    run's lock would not outlast. Not retried; the run stops at its next deadline check."""


class UnusableAnswerError(ServerError):
    """A 2xx answer the client cannot act on although it parsed: an error object in a 200 (e.g.
    `{"error": ..., "leads_uploaded": 0}`), or a bulk-add answer whose `created_leads` contradict the
    request (an index repeated or out of range, an id repeated or empty). Raised after the call, never
    retried (the request took effect or not: retrying could add twice); what it concerns is "outcome
    unknown". Service-level (a `ServerError`): it opens the operation's circuit and its service letter."""


class IncompleteListingError(InstantlyError):
    """A paged listing stopped before its end (repeated cursor, missing cursor, page bound)."""


class UnsafeRequestError(InstantlyError, ValueError):
    """A request the client refuses to send because of what it would do on the real service.

    Example: `DELETE /leads` without explicit ids deletes every lead of the campaign, and
    `DELETE /block-lists-entries` without an id wipes the whole block list.
    """


class CircuitOpenError(ServerError):
    """Not sent: the same operation already failed at the service level earlier in this run (its
    retries were spent on a 429, a 5xx, a timeout or a refused connection). One outage costs one
    call's retries per operation and run, not one per batch; the next run tries again."""


def is_service_level(exc: BaseException) -> bool:
    """Whether a failure is the service's or the account's, not one lead's: a temporary error that
    survived its retries (429, 5xx, malformed 2xx, timeout, connection), an open circuit, the key
    refused (401, 402, 403), the plan's lead limit reached (`PlanLimitError`), every lead of an add refused
    alone too (`AddRefusedError`), or a redirect (never followed: the base URL or something in front of the
    API is wrong). Such a failure never counts against a lead's own retry budget."""
    return isinstance(exc, InstantlyError) and (
        exc.retryable or isinstance(exc, AuthenticationError | PlanError | PlanLimitError | AddRefusedError
                                                      | ScopeError | RedirectRefusedError | RunDeadlineError))
