"""An OpenID Connect relying party: discovery, the authorization-code flow with PKCE, and
ID-token verification against the provider's published keys.

One :class:`OidcClient` per agent. Discovery and the JWKS are fetched lazily and cached, so the
agent starts while the provider is down (logins then fail with a clear error); an ID token
signed by a key the cache does not know triggers one refresh of the JWKS (key rotation), at
most once a minute.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import attrs
import httpx
import jwt
import trio

from amicable_agent.errors import AgentError

from .cookies import LoginFlow
from .identity import User

if TYPE_CHECKING:
    from .config import AuthConfig

log = logging.getLogger(__name__)

#: Asymmetric algorithms accepted for ID tokens (``none`` and shared-secret HS* never are).
SAFE_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
DISCOVERY_TTL_S = 3600.0
JWKS_REFRESH_MIN_S = 60.0
HTTP_TIMEOUT_S = 10.0
#: Clock skew tolerated on ``exp``/``iat``/``nbf``.
LEEWAY_S = 60


class LoginError(AgentError):
    """A login could not complete; ``detail`` is safe to show to the user."""

    def __init__(self, detail: str, *, unavailable: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.unavailable = unavailable


@attrs.frozen
class Provider:
    """The parts of the discovery document the flow uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    algorithms: tuple[str, ...]
    basic_auth: bool


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcClient:
    """The agent's side of the login.

    Args:
        config: the auth settings (issuer, client, scopes, e-mail domains).
        redirect_uri: ``<PUBLIC_BASE_URL>/auth/callback``.
        http: the HTTP client (its lifetime is the caller's).
    """

    def __init__(self, config: AuthConfig, redirect_uri: str, http: httpx.AsyncClient) -> None:
        assert config.issuer_url is not None
        assert config.client_id is not None
        self._config = config
        self._issuer = config.issuer_url.rstrip("/")
        self._client_id = config.client_id
        self.redirect_uri = redirect_uri
        self._http = http
        self._provider: Provider | None = None
        self._provider_at = 0.0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at = -JWKS_REFRESH_MIN_S
        self._missing: set[str] = set()
        self._lock = trio.Lock()

    async def provider(self) -> Provider:
        """The provider's endpoints (discovery, cached for an hour).

        Raises:
            LoginError: discovery failed or names another issuer.
        """
        async with self._lock:
            now = time.monotonic()
            if self._provider is None or now - self._provider_at > DISCOVERY_TTL_S:
                self._provider = await self._discover()
                self._provider_at = now
            return self._provider

    async def _discover(self) -> Provider:
        url = f"{self._issuer}/.well-known/openid-configuration"
        doc = await self._get_json(url, "the login provider's discovery document")
        issuer = str(doc.get("issuer", "")).rstrip("/")
        if issuer != self._issuer:
            raise LoginError(f"the provider says its issuer is {issuer!r}, not {self._issuer!r}")
        try:
            algorithms = tuple(
                a
                for a in doc.get("id_token_signing_alg_values_supported", ["RS256"])
                if a in SAFE_ALGORITHMS
            ) or ("RS256",)
            methods = doc.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
            return Provider(
                issuer=issuer,
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                userinfo_endpoint=doc.get("userinfo_endpoint"),
                algorithms=algorithms,
                basic_auth="client_secret_basic" in methods or "client_secret_post" not in methods,
            )
        except (KeyError, TypeError) as exc:
            raise LoginError(f"the provider's discovery document lacks {exc}") from exc

    async def start(self, redirect: str) -> tuple[str, LoginFlow]:
        """Begin a login: the provider URL to send the browser to, and what to remember.

        Raises:
            LoginError: the provider cannot be reached.
        """
        provider = await self.provider()
        flow = LoginFlow(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            redirect=redirect,
        )
        query = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self._config.scopes),
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": pkce_challenge(flow.verifier),
            "code_challenge_method": "S256",
        }
        sep = "&" if "?" in provider.authorization_endpoint else "?"
        return provider.authorization_endpoint + sep + urlencode(query), flow

    async def finish(self, flow: LoginFlow, *, code: str, state: str) -> User:
        """Complete a login from the callback's ``code`` and ``state``.

        Raises:
            LoginError: wrong state, the code was refused, the ID token is not valid, or the
                user's e-mail domain is not allowed.
        """
        if not secrets.compare_digest(state.encode(), flow.state.encode()):
            raise LoginError("the login response does not belong to this login (state)")
        provider = await self.provider()
        tokens = await self._exchange(provider, code, flow.verifier)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise LoginError("the provider sent no ID token")
        claims = await self.verify(id_token, nonce=flow.nonce)
        if not claims.get("email") and provider.userinfo_endpoint and tokens.get("access_token"):
            info = await self._userinfo(provider, str(tokens["access_token"]))
            if info.get("sub") == claims["sub"]:
                claims = {**info, **claims}
        return self._user(claims)

    async def _exchange(self, provider: Provider, code: str, verifier: str) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
        }
        auth: httpx.Auth | httpx.USE_CLIENT_DEFAULT = httpx.USE_CLIENT_DEFAULT  # type: ignore[valid-type]
        secret = self._config.client_secret
        if secret and provider.basic_auth:
            auth = httpx.BasicAuth(self._client_id, secret)
        else:
            form["client_id"] = self._client_id
            if secret:
                form["client_secret"] = secret
        try:
            with trio.fail_after(HTTP_TIMEOUT_S):
                resp = await self._http.post(provider.token_endpoint, data=form, auth=auth)
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            raise LoginError("the login provider is unreachable", unavailable=True) from exc
        body = _json(resp)
        if resp.status_code != 200:
            error = body.get("error", resp.status_code)
            raise LoginError(f"the provider refused the login code ({error})")
        return body

    async def verify(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Check an ID token's signature, issuer, audience, times and nonce; its claims.

        Raises:
            LoginError: any check fails.
        """
        provider = await self.provider()
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise LoginError("the ID token is malformed") from exc
        alg = header.get("alg")
        if alg not in provider.algorithms:
            raise LoginError(f"the ID token is signed with {alg!r}, which is not accepted")
        key = await self._key(provider, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=[alg],
                audience=self._client_id,
                issuer=provider.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise LoginError(f"the ID token is not valid: {exc}") from exc
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self._client_id:
            raise LoginError("the ID token was issued to another client (azp)")
        if not secrets.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise LoginError("the ID token does not belong to this login (nonce)")
        return claims

    async def _key(self, provider: Provider, kid: str | None) -> jwt.PyJWK:
        async with self._lock:
            key = self._find(kid)
            now = time.monotonic()
            # A kid seen for the first time is worth one fetch (the provider rotated its
            # keys); the same unknown kid again only after the refresh interval.
            fresh = kid is not None and kid not in self._missing
            if key is None and (fresh or now - self._keys_at >= JWKS_REFRESH_MIN_S):
                if kid is not None:
                    if len(self._missing) > 100:
                        self._missing.clear()
                    self._missing.add(kid)
                doc = await self._get_json(provider.jwks_uri, "the login provider's keys")
                keys: dict[str, jwt.PyJWK] = {}
                for i, jwk in enumerate(doc.get("keys", [])):
                    try:
                        keys[str(jwk.get("kid", i))] = jwt.PyJWK(jwk)
                    except (jwt.PyJWTError, TypeError, ValueError):
                        continue  # a key type we cannot use (e.g. an encryption key)
                self._keys, self._keys_at = keys, time.monotonic()
                key = self._find(kid)
        if key is None:
            raise LoginError("the ID token is signed by a key the provider does not publish")
        return key

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _userinfo(self, provider: Provider, access_token: str) -> dict[str, Any]:
        assert provider.userinfo_endpoint is not None
        try:
            with trio.fail_after(HTTP_TIMEOUT_S):
                resp = await self._http.get(
                    provider.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
                )
        except (httpx.HTTPError, trio.TooSlowError):
            return {}
        return _json(resp) if resp.status_code == 200 else {}

    def _user(self, claims: dict[str, Any]) -> User:
        email = str(claims.get("email") or "").strip().lower()
        domains = self._config.allowed_email_domains
        if domains:
            if not email or claims.get("email_verified") is False:
                raise LoginError("this login has no verified e-mail address")
            if email.rpartition("@")[2] not in domains:
                raise LoginError("this e-mail domain may not sign in here")
        return User(
            sub=str(claims["sub"]),
            email=email,
            name=str(claims.get("name") or claims.get("preferred_username") or email)[:200],
            picture=str(claims.get("picture") or "")[:2000],
        )

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            with trio.fail_after(HTTP_TIMEOUT_S):
                resp = await self._http.get(url)
        except (httpx.HTTPError, trio.TooSlowError) as exc:
            log.warning("login: %s at %s is unreachable: %s", what, url, exc)
            raise LoginError(f"{what} cannot be fetched", unavailable=True) from exc
        if resp.status_code != 200:
            raise LoginError(f"{what} answered {resp.status_code}", unavailable=True)
        return _json(resp)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
