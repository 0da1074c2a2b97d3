"""The fake OpenID Connect provider's state and protocol, without HTTP.

:class:`OidcProvider` keeps clients, users, codes and access tokens and implements each
endpoint as a sync method that takes the request's parameters and returns the answer (or
raises :class:`OAuthError`); :mod:`amicable_testing.fake_oidc` serves it over HTTP.
Codes and access tokens expire on Trio's clock; ID token ``iat``/``exp`` are wall-clock
time, as relying parties check them.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import attrs
import trio

from ._oidc_tokens import TAMPER_KINDS, KeyRing, TamperKind, User, mint_id_token, pkce_challenge

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

SCOPES = ("openid", "email", "profile")
CODE_LIFETIME_S = 60.0
ACCESS_TOKEN_LIFETIME_S = 3600
ID_TOKEN_LIFETIME_S = 3600
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
_CLAIMS = ("sub", "iss", "aud", "exp", "iat", "nonce", "azp", "auth_time", "email",
           "email_verified", "name", "picture")  # fmt: skip


@attrs.frozen
class RecordedRequest:
    """A request as received; ``params`` holds the query and, for a form POST, its fields."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@attrs.frozen
class FakeOidcStatistics:
    """A snapshot of what the provider has done; ``requests`` counts them by path."""

    requests: dict[str, int]
    codes_issued: int
    authorize_errors: int
    tokens_issued: int
    token_errors: int
    outstanding_codes: int
    published_kids: tuple[str, ...]


class OAuthError(Exception):
    """An error answer: ``{"error": error, "error_description": description}``, ``status``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status


@attrs.frozen
class _Client:
    secret: str
    redirect_uris: tuple[str, ...]


@attrs.frozen
class _Grant:
    client_id: str
    redirect_uri: str
    user: User
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str
    expires_at: float
    auth_time: int


@attrs.frozen
class _Access:
    user: User
    scopes: tuple[str, ...]
    expires_at: float


class OidcProvider:
    """Clients, users, keys and the protocol; see :class:`~amicable_testing.fake_oidc.FakeOidc`.

    Attributes:
        issuer: the issuer URL (its own base URL once served).
        requests: every request received, in order.
    """

    def __init__(
        self,
        *,
        clients: Mapping[str, tuple[str, Sequence[str]]] | None = None,
        users: Iterable[User] = (),
        issuer: str = "",
    ) -> None:
        self.issuer = issuer
        self.requests: list[RecordedRequest] = []
        self._clients: dict[str, _Client] = {}
        for client_id, (secret, uris) in (clients or {}).items():
            self.register_client(client_id, secret, uris)
        self._users: dict[str, User] = {}
        self._current: User | None = None
        for user in users:
            self.add_user(user)
            self._current = self._current or user
        self._keys = KeyRing()
        self._codes: dict[str, _Grant] = {}
        self._spent: dict[str, str | None] = {}  # redeemed code -> the access token it bought
        self._access: dict[str, _Access] = {}
        self._deny = 0
        self._tampers: deque[TamperKind] = deque()
        self._counts: Counter[str] = Counter()

    # --- test hooks ----------------------------------------------------------------------

    def register_client(self, client_id: str, secret: str, redirect_uris: Iterable[str]) -> None:
        """Register a client, or replace its secret and redirect URIs."""
        self._clients[client_id] = _Client(secret, tuple(redirect_uris))

    def add_user(self, user: User) -> None:
        """Make ``user`` selectable by ``login_hint`` (replacing one with the same e-mail)."""
        self._users[user.email.lower()] = user

    def login_as(self, user: User) -> None:
        """Sign ``user`` in: authorizations without ``login_hint`` are for them from now on."""
        self.add_user(user)
        self._current = user

    def deny_next(self) -> None:
        """The next well-formed authorization request is refused (``error=access_denied``)."""
        self._deny += 1

    def tamper_next(self, kind: TamperKind) -> None:
        """The next ID token issued is bad in this way (calls queue up).

        Raises:
            ValueError: ``kind`` is not one of :data:`TamperKind`.
        """
        if kind not in TAMPER_KINDS:
            raise ValueError(f"unknown tamper kind {kind!r}; one of {sorted(TAMPER_KINDS)}")
        self._tampers.append(kind)

    def rotate_keys(self, *, drop_old: bool = False) -> str:
        """Sign with a new key from now on; the old ones stay published unless ``drop_old``.

        Returns:
            the new key's ``kid``.
        """
        return self._keys.rotate(drop_old=drop_old)

    def statistics(self) -> FakeOidcStatistics:
        """What the provider has done so far."""
        return FakeOidcStatistics(
            requests=dict(Counter(r.path for r in self.requests)),
            codes_issued=self._counts["codes_issued"],
            authorize_errors=self._counts["authorize_errors"],
            tokens_issued=self._counts["tokens_issued"],
            token_errors=self._counts["token_errors"],
            outstanding_codes=len(self._codes),
            published_kids=self._keys.kids,
        )

    # --- endpoints -----------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        """The ``/.well-known/openid-configuration`` document."""
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks",
            "userinfo_endpoint": f"{base}/userinfo",
            "end_session_endpoint": f"{base}/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": list(_CLAIMS),
        }

    def jwks(self) -> dict[str, Any]:
        """The JWK Set ``/jwks`` serves."""
        return self._keys.jwks()

    def authorize(self, query: Mapping[str, str]) -> str:
        """Answer an authorization request: the URL to redirect the browser to.

        Raises:
            OAuthError: an unknown client or redirect URI (answered 400, not redirected:
                RFC 6749 §4.1.2.1). Other errors are redirects with ``error=``.
        """
        client = self._clients.get(query.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_client", "unknown client_id")
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri is not registered for the client")
        try:
            grant = self._grant_for(query, redirect_uri)
        except OAuthError as exc:
            self._counts["authorize_errors"] += 1
            params = {"error": exc.error, "error_description": exc.description}
            return _with_query(redirect_uri, params, query.get("state"))
        code = secrets.token_urlsafe(24)
        self._codes[code] = grant
        self._counts["codes_issued"] += 1
        return _with_query(redirect_uri, {"code": code}, query.get("state"))

    def _grant_for(self, query: Mapping[str, str], redirect_uri: str) -> _Grant:
        if query.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code")
        requested = query.get("scope", "").split()
        if "openid" not in requested:
            raise OAuthError("invalid_scope", "the openid scope is required")
        challenge = query.get("code_challenge", "")
        if not challenge:
            raise OAuthError("invalid_request", "PKCE is required: code_challenge is missing")
        if query.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        if self._deny:
            self._deny -= 1
            raise OAuthError("access_denied", "the user refused")
        hint = query.get("login_hint")
        user = self._users.get(hint.lower()) if hint else self._current
        if user is None:
            if hint:
                raise OAuthError("access_denied", f"no user {hint!r}")
            raise OAuthError("login_required", "nobody is logged in")
        return _Grant(
            client_id=query["client_id"],
            redirect_uri=redirect_uri,
            user=user,
            scopes=tuple(s for s in requested if s in SCOPES),
            nonce=query.get("nonce"),
            code_challenge=challenge,
            expires_at=trio.current_time() + CODE_LIFETIME_S,
            auth_time=int(time.time()),
        )

    def token(self, form: Mapping[str, str] | None, authorization: str | None) -> dict[str, Any]:
        """Answer a token request: its form fields (``None`` when the body is not
        ``application/x-www-form-urlencoded``) and ``Authorization`` header.

        Raises:
            OAuthError: ``invalid_client`` (401), ``invalid_grant``, ``invalid_request`` or
                ``unsupported_grant_type`` (400).
        """
        try:
            if form is None:
                raise OAuthError("invalid_request", "the body must be form-encoded")
            body = self._exchange(form, authorization)
        except OAuthError:
            self._counts["token_errors"] += 1
            raise
        self._counts["tokens_issued"] += 1
        return body

    def _exchange(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        client_id = self._authenticate_client(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "only authorization_code")
        code = form.get("code", "")
        grant = self._redeem(code, client_id)
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier", "")
        if not _VERIFIER.fullmatch(verifier):
            raise OAuthError("invalid_grant", "code_verifier is missing or malformed")
        if not _same(pkce_challenge(verifier), grant.code_challenge):
            raise OAuthError("invalid_grant", "PKCE verification failed")
        access_token = secrets.token_urlsafe(32)
        expires_at = trio.current_time() + ACCESS_TOKEN_LIFETIME_S
        self._access[access_token] = _Access(grant.user, grant.scopes, expires_at)
        self._spent[code] = access_token
        tamper = self._tampers.popleft() if self._tampers else None
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME_S,
            "id_token": mint_id_token(self._keys, self._id_claims(grant), tamper),
            "scope": " ".join(grant.scopes),
        }

    def _authenticate_client(self, form: Mapping[str, str], authorization: str | None) -> str:
        if authorization and authorization.startswith("Basic "):
            if "client_secret" in form:
                raise OAuthError("invalid_request", "use one client authentication method")
            try:
                raw = base64.b64decode(authorization[6:], validate=True).decode()
            except ValueError as exc:
                raise OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
            raw_id, _, raw_secret = raw.partition(":")
            # RFC 6749 §2.3.1 form-encodes both; many clients don't, and providers accept both.
            pairs = [(unquote_plus(raw_id), unquote_plus(raw_secret)), (raw_id, raw_secret)]
        else:
            pairs = [(form.get("client_id", ""), form.get("client_secret", ""))]
        for client_id, secret in pairs:
            client = self._clients.get(client_id)
            if client is not None and secret and _same(client.secret, secret):
                return client_id
        raise OAuthError("invalid_client", "client authentication failed", 401)

    def _redeem(self, code: str, client_id: str) -> _Grant:
        grant = self._codes.pop(code, None)
        if grant is None:
            if code in self._spent:  # RFC 6749 §4.1.2: a replayed code revokes what it bought
                self._access.pop(self._spent[code] or "", None)
                raise OAuthError("invalid_grant", "authorization code already used")
            raise OAuthError("invalid_grant", "unknown authorization code")
        self._spent[code] = None
        if grant.expires_at <= trio.current_time():
            raise OAuthError("invalid_grant", "authorization code expired")
        if grant.client_id != client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        return grant

    def _id_claims(self, grant: _Grant) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME_S,
            "auth_time": grant.auth_time,
            **grant.user.claims(grant.scopes),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        return claims

    def userinfo(self, authorization: str | None) -> dict[str, Any]:
        """The claims for the bearer access token in ``authorization``.

        Raises:
            OAuthError: ``invalid_token`` (401): missing, unknown, revoked or expired.
        """
        token = authorization[7:] if authorization and authorization.startswith("Bearer ") else ""
        access = self._access.get(token)
        if access is None or access.expires_at <= trio.current_time():
            raise OAuthError("invalid_token", "the access token is not valid", 401)
        return access.user.claims(access.scopes)

    def end_session(self, query: Mapping[str, str]) -> str | None:
        """Answer RP-initiated logout: where to redirect, or ``None`` (a "signed out" page).

        Raises:
            OAuthError: ``post_logout_redirect_uri`` is not on a registered client's origin.
        """
        target = query.get("post_logout_redirect_uri")
        if target is None:
            return None
        origins = {_origin(u) for c in self._clients.values() for u in c.redirect_uris}
        if _origin(target) not in origins:
            raise OAuthError("invalid_request", "post_logout_redirect_uri is not registered")
        return _with_query(target, {}, query.get("state"))


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())  # str form refuses non-ASCII


def _with_query(url: str, params: dict[str, str], state: str | None) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    if state is not None:
        query.append(("state", state))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc
