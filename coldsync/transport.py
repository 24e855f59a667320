"""Where coldsync's outbound HTTP may go, and how long one request may last: the one rule for both.

Every outbound URL the product is given (today `INSTANTLY_BASE_URL`, read by the settings, by
`InstantlyClient.__init__` and by `validate_environment.py --production`) goes through
`check_outbound_url`:

- `https` only. Plain `http` is allowed for a loopback host alone (`localhost`, 127.0.0.0/8, ::1:
  the local simulator), never in production (`production=True`: production never talks to a
  simulator, so a loopback host is refused there whatever the scheme);
- no userinfo (`user@`, `user:pw@`): `https://api.instantly.ai@evil.example` is a request to
  evil.example, and a password in a URL ends up in logs;
- a base URL is scheme, host and optional port only: no path, query or fragment;
- the host is the one `urllib.parse` finds (the one requests connects to), checked as such: ASCII DNS
  labels (an internationalized name in its `xn--` form) or an IP address, a port other than 0;
- in production, no IP address in any spelling (`127.1`, `2130706433`, `::ffff:127.0.0.1`, `0.0.0.0`) and
  no local name (`localhost`, `*.localhost`, `localhost.localdomain`, `ip6-localhost`). A DNS name that
  resolves to this machine (`127.0.0.1.nip.io`) cannot be seen without a look-up and is not refused.

The error names the setting and the fix (`OutboundURLError`); it never repeats a URL that carries
userinfo (it may hold a password).

`DEFAULT_REQUEST_DEADLINE_SECONDS` bounds one HTTP request end to end (connect, headers and the whole
body); the Instantly client enforces it (`coldsync.instantly.client`), and the setting
INSTANTLY_REQUEST_DEADLINE_SECONDS must stay below the run's lease guard (coldsync.settings).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urljoin, urlsplit

LOOPBACK_NAMES: frozenset[str] = frozenset({"localhost"})
"""Host names taken as this machine (besides the loopback addresses 127.0.0.0/8 and ::1)."""
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

INSTANTLY_URL_SETTING = "INSTANTLY_BASE_URL"
INSTANTLY_URL_FIX = "use https://api.instantly.ai (or unset INSTANTLY_BASE_URL)"

DEFAULT_REQUEST_DEADLINE_SECONDS = 40
"""Seconds one HTTP request may take from connect to the last byte of its answer. Above the client's
30-second wait for an answer to start (its read timeout), and below the smallest lease guard a valid
LOCK_TTL_MINUTES gives (0.75 x 1 minute = 45 s), so no lease setting makes the default invalid; with the
default 30-minute lease the guard is 22.5 minutes."""

DEFAULT_TIMEOUT_ATTEMPTS = 3
"""Attempts of one call that may end without an answer in time (a timeout) before the call fails; other
failures (429, 5xx) keep the client's full attempt budget. A timeout costs up to the 30-second read timeout,
a 5xx well under a second: six timeouts kept a service that accepts connections and never answers for over
three minutes per call. Three still ride out a short stall (with backoff between them), and the next run is
30 minutes away. INSTANTLY_TIMEOUT_ATTEMPTS."""

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""The largest answer body read (decoded). A page of 100 leads is a few hundred KB; anything near this
is not an answer the client asked for."""

_HOST_SHOWN = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,253}$")


class OutboundURLError(ValueError):
    """An outbound URL the rule refuses: `setting` (e.g. INSTANTLY_BASE_URL), `problem` (what is wrong,
    without the URL when it holds userinfo) and `fix`."""

    def __init__(self, setting: str, problem: str, fix: str) -> None:
        self.setting, self.problem, self.fix = setting, problem, fix
        super().__init__(f"{setting} {problem}. Fix: {fix}")


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and the loopback addresses (127.0.0.0/8, ::1); the host as urlsplit gives it
    (lower case, IPv6 without brackets). Other spellings (2130706433, ::ffff:127.0.0.1) are not loopback."""
    name = host.lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return any(address in network for network in LOOPBACK_NETWORKS)


_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
LOCAL_NAMES: frozenset[str] = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
"""Names the resolver of a usual machine maps to itself (besides `*.localhost`, RFC 6761)."""


def is_ip_literal(host: str) -> bool:
    """True for a host written as an IP address in ANY form the socket layer accepts: dotted, short
    (`127.1`), decimal (`2130706433`), hex (`0x7f000001`), octal (`0177.0.0.1`), IPv6 (also IPv4-mapped)."""
    name = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(name)  # the legacy forms getaddrinfo also accepts
        return True
    except OSError:
        return False


def _host_problem(host: str) -> str | None:
    """Why a host (as urlsplit gives it) can never be a real server's name, or None."""
    if ":" in host:  # IPv6 (urlsplit removed the brackets)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"has an IPv6 host that is not an address ({host!r})"
        return None
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not name or not all(_LABEL.match(label) for label in labels):
        shown = host if _HOST_SHOWN.match(host) else ascii(host)
        return (f"has a host that is not a DNS name ({shown}): letters, digits and inner hyphens between "
                "dots, in ASCII (write an internationalized name in its xn-- form)")
    return None


def check_outbound_url(url: str, *, setting: str = INSTANTLY_URL_SETTING, fix: str = INSTANTLY_URL_FIX,
                       production: bool = False, base: bool = True) -> str:
    """The URL if the rule allows it (see the module docstring), without a trailing `/`; else
    OutboundURLError naming `setting` and `fix`. `base=False` allows a path and a query (an endpoint,
    not a base URL); a fragment is never allowed."""
    if not isinstance(url, str) or not url.strip():
        raise OutboundURLError(setting, "is empty", fix)
    text = url.strip()
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in text):
        raise OutboundURLError(setting, "holds spaces, control characters or backslashes", fix)
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        _port = parts.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise OutboundURLError(setting, "is not a URL (its host or port cannot be read)", fix) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundURLError(setting, f"must start with https:// (not {scheme or 'no scheme'})", fix)
    if "@" in parts.netloc:
        # The host is what follows the `@`: refused whatever it is, and never shown (it may hold a password).
        raise OutboundURLError(setting, "holds a user name or password before an `@` (its real host would be "
                               "what follows the `@`)", fix)
    if not host:
        raise OutboundURLError(setting, "has no host", fix)
    problem = _host_problem(host)
    if problem is not None:
        raise OutboundURLError(setting, problem, fix)
    if parts.netloc.endswith(":") or _port == 0:
        raise OutboundURLError(setting, "has an empty or zero port", fix)
    if "#" in text:
        raise OutboundURLError(setting, "has a fragment (`#...`)", fix)
    if base and ("?" in text or parts.path not in ("", "/")):
        raise OutboundURLError(setting, f"must be scheme and host only, without a path or query: {text!r}", fix)
    loopback = is_loopback_host(host)
    if production and loopback:
        raise OutboundURLError(setting, f"points at this machine ({host}): production never talks to a simulator",
                               fix)
    name = host.lower().rstrip(".")
    if production and (name in LOCAL_NAMES or name.endswith(".localhost")):
        raise OutboundURLError(setting, f"points at this machine ({host}): production never talks to a simulator",
                               fix)
    if production and is_ip_literal(host):
        # 127.1, 2130706433, ::ffff:127.0.0.1, 0.0.0.0 all reach this machine; Instantly is reached by name
        # (its TLS certificate names it), so production refuses every address.
        raise OutboundURLError(setting, f"names an IP address ({host}): production reaches Instantly by its name",
                               fix)
    if scheme != "https" and (production or not loopback):
        raise OutboundURLError(setting, f"uses {scheme}:// for {host}: only https is allowed (plain http only for "
                               "the local simulator on localhost, 127.0.0.1 or ::1, and never in production)", fix)
    return text.rstrip("/") if base else text


def location_host(request_url: str, location: str | None) -> str:
    """The host a redirect points at, for an error message: the Location resolved against the request URL,
    host only (no scheme, port, user, path or query), or a placeholder when there is none or it is odd."""
    if not location:
        return "nowhere (no Location header)"
    try:
        host = urlsplit(urljoin(request_url, location.strip())).hostname
    except ValueError:
        host = None
    if not host or not _HOST_SHOWN.match(host):
        return "an unreadable location"
    return host
