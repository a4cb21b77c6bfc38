"""Who may use the dashboard, and which requests may change something.

The API's rule holds here too (server/auth.py): with a key set, nothing but /health and the
login form answers without it. A browser cannot send a bearer header on a link or a form, so
it gives the key once, to the login form, and gets a session cookie: signed with a secret
this process draws at start, HttpOnly (no script reads it) and SameSite=Strict (no other
site's page sends it). A restart draws a new secret, so every browser logs in again.

Without a key the server listens on loopback only (settings.check_bind). A page on another
site could still make the user's browser send requests there, so:
- the Host header must name this machine (a DNS-rebinding page names its own host);
- every state-changing request (POST) carries a CSRF token tied to the session cookie, and
  an Origin (or Referer), when sent, must be this server's own.
Each browser gets an anonymous session on its first page for that purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tunelab.server.auth import bearer_ok
from tunelab.server.errors import error_response
from tunelab.server.settings import ServeSettings, is_loopback

COOKIE = "tunelab_session"
LOGIN = "/login"
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

    @property
    def keyed(self) -> bool:
        return bool(self.settings.api_key)

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A new cookie value; one issued without a key is refused once a key is set."""
        nonce = secrets.token_urlsafe(18)
        kind = "key" if self.keyed else "anon"
        return f"{nonce}.{kind}.{self._sign(f'session|{nonce}|{kind}')}"

    def session(self, request: Request) -> str | None:
        """The session's nonce when the request carries a valid cookie."""
        value = request.cookies.get(COOKIE) or ""
        nonce, _, rest = value.partition(".")
        kind, _, signature = rest.partition(".")
        if not nonce or kind != ("key" if self.keyed else "anon"):
            return None
        expected = self._sign(f"session|{nonce}|{kind}")
        return nonce if hmac.compare_digest(signature.encode(), expected.encode()) else None

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


def host_allowed(request: Request, settings: ServeSettings) -> bool:
    """Without a key, only a Host naming this machine: a DNS-rebinding page names its own."""
    if settings.api_key:
        return True
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    return is_loopback(host)


def same_origin(request: Request) -> bool:
    """Origin, else Referer, when the browser sent one, is this server's own."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if sent is None:
        return True  # neither sent (some privacy settings): the token alone decides
    parts = urlsplit(sent)
    return parts.scheme in ("http", "https") and parts.netloc == request.headers.get("host")


def check_post(request: Request, sessions: Sessions, token: str | None) -> JSONResponse | None:
    """None when a state-changing request may go on; else the 403 to answer."""
    if bearer_given(request, sessions.settings):
        return None  # a script with the key: browsers never add a bearer header themselves
    nonce = sessions.session(request)
    if not same_origin(request):
        return error_response(403, "cross-site request refused (Origin is not this server)",
                              code="csrf_refused")
    if nonce is None or not token or not hmac.compare_digest(token.encode(),
                                                             sessions.csrf(nonce).encode()):
        return error_response(403, "missing or stale form token: reload the page and try "
                              "again", code="csrf_refused")
    return None


def bearer_given(request: Request, settings: ServeSettings) -> bool:
    return bool(settings.api_key) and bearer_ok(request.headers.get("authorization"),
                                                settings.api_key or "")
