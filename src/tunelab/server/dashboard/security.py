"""Who may use the dashboard, and which requests may change something.

The API's rule holds here too (server/auth.py): with a key set, nothing but /health and the
login form answers without it. A browser cannot send a bearer header on a link or a form, so
it gives the key once, to the login form, and gets a session cookie: signed with a secret
this process draws at start, HttpOnly (no script reads it) and SameSite=Strict (no other
site's page sends it). The server keeps the sessions it issued for the key: logging out ends
one at once, and a restart (a new secret) ends them all. The login form takes a few wrong
keys per client address, then answers 429 with Retry-After until a minute has passed
(LoginThrottle).

Without a key the server listens on loopback only (settings.check_bind). A page on another
site could still make the user's browser send requests there. server/auth.py's gate, in
front of every route, refuses a Host that does not name this machine and a state-changing
request whose Origin (or Referer) names another site; here, every state-changing request
(POST) also carries a CSRF token tied to the session cookie. Each browser gets an anonymous
session on its first page for that purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tunelab.server.auth import bearer_given
from tunelab.server.errors import error_response
from tunelab.server.settings import ServeSettings

COOKIE = "tunelab_session"
LOGIN = "/login"
MAX_SESSIONS = 1000  # sessions kept for the key; past this the oldest logs in again
# Wrong keys a client address may send in LOGIN_WINDOW_S before it must wait.
LOGIN_FAILURES, LOGIN_WINDOW_S = 5, 60.0
MAX_ADDRESSES = 10_000  # client addresses the throttle remembers
API_PREFIXES = ("/v1/", "/health")
# Every page and asset of the dashboard sends these: no inline script, no other origin.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors "
                               "'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_dashboard_path(path: str) -> bool:
    return not any(path == prefix.rstrip("/") or path.startswith(prefix)
                   for prefix in API_PREFIXES)


class Sessions:
    """Signed session cookies and the CSRF token of each."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._secret = secrets.token_bytes(32)
        self._live: dict[str, None] = {}  # the key's sessions (nonces), oldest first
        self._lock = threading.Lock()

    @property
    def keyed(self) -> bool:
        return bool(self.settings.api_key)

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A new cookie value; one issued without a key is refused once a key is set. A
        session for the key is kept until it logs out (or MAX_SESSIONS newer ones push it
        out)."""
        nonce = secrets.token_urlsafe(18)
        kind = "key" if self.keyed else "anon"
        if self.keyed:
            with self._lock:
                self._live[nonce] = None
                while len(self._live) > MAX_SESSIONS:
                    del self._live[next(iter(self._live))]
        return f"{nonce}.{kind}.{self._sign(f'session|{nonce}|{kind}')}"

    def session(self, request: Request) -> str | None:
        """The session's nonce when the request carries a valid cookie (for the key: one
        that has not logged out)."""
        value = request.cookies.get(COOKIE) or ""
        nonce, _, rest = value.partition(".")
        kind, _, signature = rest.partition(".")
        if not nonce or kind != ("key" if self.keyed else "anon"):
            return None
        expected = self._sign(f"session|{nonce}|{kind}")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        return nonce if not self.keyed or nonce in self._live else None

    def revoke(self, nonce: str) -> None:
        """Log a session out: its cookie, wherever a copy of it is, stops working now."""
        with self._lock:
            self._live.pop(nonce, None)

    def csrf(self, nonce: str) -> str:
        return self._sign(f"csrf|{nonce}")

    def key_ok(self, given: str) -> bool:
        key = self.settings.api_key or ""
        return bool(key) and hmac.compare_digest(given.strip().encode(), key.encode())

    def set_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(COOKIE, value, httponly=True, samesite="strict", path="/")


class BrowserGate:
    """server/auth.py's gate asks this about a request without a bearer key."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def admits(self, request: Request) -> bool:
        path = request.url.path
        if not is_dashboard_path(path):
            return False  # the API takes the bearer key only: no cookie, no CSRF there
        return path == LOGIN or self.sessions.session(request) is not None

    def refusal(self, request: Request) -> Response:
        if not is_dashboard_path(request.url.path):
            return error_response(401, "Missing or incorrect API key: send "
                                  "'Authorization: Bearer <key>'", code="invalid_api_key")
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"{LOGIN}?next={_local_path(request.url.path)}", 303)
        return error_response(401, "Missing or incorrect API key: log in at /login or send "
                              "'Authorization: Bearer <key>'", code="invalid_api_key")


def _local_path(path: str) -> str:
    """`path` when it is a path on this server; "/" for anything that could lead elsewhere."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def safe_next(value: str | None) -> str:
    return _local_path(value or "/") if "\\" not in (value or "") else "/"


def check_post(request: Request, sessions: Sessions, token: str | None) -> JSONResponse | None:
    """None when a state-changing request may go on; else the 403 to answer. (Its Origin
    was checked already, in front of every route: server/auth.py.)"""
    if bearer_given(request, sessions.settings):
        return None  # a script with the key: browsers never add a bearer header themselves
    nonce = sessions.session(request)
    if nonce is None or not token or not hmac.compare_digest(token.encode(),
                                                             sessions.csrf(nonce).encode()):
        return error_response(403, "missing or stale form token: reload the page and try "
                              "again", code="csrf_refused")
    return None


class LoginThrottle:
    """Wrong keys per client address: after LOGIN_FAILURES in LOGIN_WINDOW_S, every login
    from that address waits (429) until the oldest of them is a window old. A right key
    clears the address. At most MAX_ADDRESSES are remembered (the stalest go first)."""

    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, address: str) -> int:
        """Seconds `address` must wait before its next try; 0 when it may try now."""
        with self._lock:
            recent = self._recent(address)
            if len(recent) < LOGIN_FAILURES:
                return 0
            return max(1, int(recent[0] + LOGIN_WINDOW_S - self.clock()) + 1)

    def failed(self, address: str) -> None:
        with self._lock:
            recent = self._recent(address)
            recent.append(self.clock())
            self._failures.pop(address, None)
            self._failures[address] = recent  # the most recent failure last
            while len(self._failures) > MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float]:
        recent = self._failures.get(address, deque())
        while recent and recent[0] <= self.clock() - LOGIN_WINDOW_S:
            recent.popleft()
        return recent
