"""The clickId: one UUID that ties a visitor's click, lead and postbacks together."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import time
import weakref
from binascii import b2a_base64
from collections import deque
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

from itsdangerous import BadData, TimestampSigner
from itsdangerous.encoding import base64_encode, int_to_bytes
from itsdangerous.signer import SigningAlgorithm
from werkzeug.http import dump_cookie
from werkzeug.sansio.http import parse_cookie

# The seed's examples are canonical hyphenated UUIDs. Only that form is accepted
# (any case) so that "{...}", "urn:uuid:..." or bare hex never become a second
# spelling of the same journey.
EXAMPLE_CLICK_ID = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"  # the seed's, for error messages
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def parse_click_id(value: object) -> str | None:
    """Return ``value`` as a lowercase canonical UUID string, or ``None`` if it is not one."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value.lower()
    return None


def new_click_id() -> str:
    """A fresh random clickId: a UUID version 4, as ``str(uuid.uuid4())`` would give.

    Drawn from clickIds made ``_BATCH`` at a time from one ``os.urandom`` call
    and formatted together: a system call per page view, and ``uuid.UUID``'s
    constructor and ``str``, cost a new visitor's page view more than anything
    else here. A forked child starts with none of its parent's.
    """
    while True:
        try:
            return _fresh_ids.popleft()
        except IndexError:  # deque operations are atomic: threads need no lock
            _fresh_ids.extend(_uuid4_batch())


_BATCH = 64
_fresh_ids: deque[str] = deque()

# The version (4) and variant (RFC 4122) bits of _BATCH UUIDs, as one big integer's masks.
_UUID4_CLEAR = int.from_bytes(bytes.fromhex("ffffffffffff0fff3fffffffffffffff") * _BATCH, "big")
_UUID4_SET = int.from_bytes(bytes.fromhex("00000000000040008000000000000000") * _BATCH, "big")
_UUID_GROUPS = re.compile(r"(.{8})(.{4})(.{4})(.{4})(.{12})")


def _uuid4_batch() -> list[str]:
    """``_BATCH`` random UUIDs version 4, canonical text."""
    random = int.from_bytes(os.urandom(16 * _BATCH), "big")
    digits = ((random & _UUID4_CLEAR) | _UUID4_SET).to_bytes(16 * _BATCH, "big").hex()
    return ["-".join(groups) for groups in _UUID_GROUPS.findall(digits)]


def _forget_fresh_ids() -> None:
    """In a forked child: none of the parent's unused clickIds, which the parent may still use."""
    _fresh_ids.clear()
    for cookie in list(_cookies):
        cookie._fresh.clear()
        cookie._fresh_by_variant.clear()


_cookies: weakref.WeakSet[JourneyCookie] = weakref.WeakSet()
os.register_at_fork(after_in_child=_forget_fresh_ids)  # uWSGI's C-level fork runs it too


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hashlib.blake2b:
    # Copying a keyed state skips hashing the key block again on every MAC.
    return hashlib.blake2b(key=key, digest_size=32)


def _mac(key: bytes, value: bytes) -> bytes:
    mac = _keyed(key).copy()
    mac.update(value)
    return mac.digest()


class _KeyedBlake2b(SigningAlgorithm):
    """Keyed BLAKE2b (RFC 7693), a MAC by design, as itsdangerous's signing algorithm.

    Chosen over the default HMAC-SHA1 for speed: through OpenSSL 3 each HMAC
    sets up a fresh context, which costs a new visitor's page view about
    10 µs; BLAKE2b is built into Python and costs about 1 µs.
    """

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return _mac(key, value)


class _JourneySigner(TimestampSigner):
    """itsdangerous's timed signer with keyed BLAKE2b, for one key.

    Signing, on every new visitor's page, is ``TimestampSigner.sign`` with
    the work that repeats done once and no helper calls: the key is derived
    once, and the timestamp (whole seconds) is encoded once per second. The
    bytes are exactly itsdangerous's, and verifying is itsdangerous's own.
    """

    def __init__(self, secret_key: str, salt: str) -> None:
        super().__init__(secret_key, salt=salt, digest_method=hashlib.sha256)
        self.algorithm = _KeyedBlake2b()
        self._key = super().derive_key()
        self.second = 0  # of the last signature
        self._stamp = b""  # ".<the second in base64>"

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._key if secret_key is None else super().derive_key(secret_key)

    def sign(self, value: str | bytes) -> bytes:
        now = self.get_timestamp()
        if now != self.second:
            self._stamp = self.sep + base64_encode(int_to_bytes(now))
            self.second = now
        payload = (value.encode() if isinstance(value, str) else value) + self._stamp
        mac = b2a_base64(_mac(self._key, payload), newline=False).rstrip(b"=")
        return payload + self.sep + mac.translate(_URLSAFE_BASE64)


_URLSAFE_BASE64 = bytes.maketrans(b"+/", b"-_")


JourneyParams = tuple[tuple[str, str], ...]  # (name, value) pairs, hashable for the cache
MAX_PARAM_LENGTH = 128  # a journey parameter's value: an id, not a document


class SavedJourney(NamedTuple):
    """What the journey cookie holds: the clickId, the kept URL parameters, the variant."""

    click_id: str
    params: JourneyParams
    variant: str | None = None  # of the landing's split test, if it has one


class JourneyCookie:
    """The signed cookie that keeps a visitor's clickId between requests.

    The value is the clickId, followed by ``~`` and the journey's kept URL
    parameters (AlterCPA Pro's click id), URL-encoded then base64url, when it
    has any, then by ``~`` and the journey's split-test variant, when it has
    one (``<clickId>~~b`` without parameters). It is signed by itsdangerous's ``TimestampSigner``
    (with keyed BLAKE2b, see ``_KeyedBlake2b``) under its own salt (so the
    secret key can be shared with the application without one signature
    standing in for another) and timed (so an old or stolen
    cookie expires server-side too). Verified values are remembered in a
    bounded cache keyed by the exact ``Cookie`` header: a returning visitor
    costs a dict lookup, and the age is still checked on every request.

    A new visitor's clickId and its cookie value come together from
    :meth:`new_journey`, made ahead in batches (one queue per variant).
    """

    SALT = "bangi-landing.journey"
    MAX_LENGTH = 768  # a clickId alone is about 80 characters; longer ones are not even verified
    CACHE_SIZE = 4096
    SIGNED_AHEAD = 16  # cookie values signed in one go
    FRESH_FOR = 10  # seconds a value signed ahead may wait for its page

    def __init__(
        self,
        secret_key: str,
        *,
        name: str = "bangi_journey",
        max_age: int = 30 * 24 * 3600,
        path: str = "/",
        domain: str | None = None,
    ) -> None:
        self.name = name
        self.max_age = max_age
        self.path = path
        self.domain = domain
        self._signer = _JourneySigner(secret_key, salt=self.SALT)
        self._read = lru_cache(maxsize=self.CACHE_SIZE)(self._read_header)
        self._attributes: dict[bool, tuple[int, str]] = {}  # by secure: (second, "; Expires=...")
        self._fresh: deque[tuple[str, str, int]] = deque()  # (clickId, value, signed at)
        self._fresh_by_variant: dict[str, deque[tuple[str, str, int]]] = {}  # the same, per variant
        _cookies.add(self)

    def load(self, environ: Mapping[str, Any]) -> SavedJourney | None:
        """The journey in the request's cookie, or None when absent, forged or expired."""
        header = environ.get("HTTP_COOKIE", "")
        if self.name not in header or len(header) > 8192:
            return None
        verified = self._read(header)
        if verified is None:
            return None
        journey, signed_at = verified
        return journey if 0 <= time.time() - signed_at <= self.max_age else None

    def _read_header(self, header: str) -> tuple[SavedJourney, float] | None:
        # The header as the server decoded it (latin-1 under WSGI), not as UTF-8: another
        # site cookie's bytes (theme=été in latin-1) are no business of ours, and ours is ASCII.
        value = parse_cookie(header).get(self.name)
        if not value or len(value) > self.MAX_LENGTH:
            return None
        try:
            payload, signed_at = self._signer.unsign(value, return_timestamp=True)
        except BadData:
            return None
        text, _, rest = payload.decode("ascii", "replace").partition("~")
        click_id = parse_click_id(text)
        if click_id is None:
            return None
        encoded, _, variant = rest.partition("~")
        saved = SavedJourney(click_id, _decode_params(encoded), variant or None)
        return saved, signed_at.timestamp()

    def new_journey(self, variant: str | None = None) -> tuple[str, str]:
        """A fresh clickId (see :func:`new_click_id`) and the cookie value carrying it.

        With ``variant``, the value carries it too (a queue of its own).

        Made ``_BATCH`` at a time and signed in one go: a new visitor's page
        then takes a pair off a queue instead of running the MAC and its
        encoding, whose code, cold on every page, costs a page several times
        what it costs in a loop. A value is used at most ``FRESH_FOR`` seconds
        after it was signed (so a cookie expires at most that much early);
        older ones are dropped. A forked child starts with none of its parent's.
        """
        now = time.time()
        queue = self._fresh
        if variant is not None:
            queue = self._fresh_by_variant.setdefault(variant, deque())
        while True:
            try:
                click_id, value, signed_at = queue.popleft()
            except IndexError:  # deque operations are atomic: threads need no lock
                fresh = [new_click_id() for _ in range(self.SIGNED_AHEAD)]
                queue.extend((c, self.value(c, (), variant), self._signer.second) for c in fresh)
                continue
            if now - signed_at <= self.FRESH_FOR:
                return click_id, value
            queue.clear()

    def header(
        self,
        click_id: str,
        params: JourneyParams = (),
        *,
        secure: bool,
        variant: str | None = None,
    ) -> str:
        """A ``Set-Cookie`` value carrying ``click_id``, the journey's ``params`` and variant."""
        return self.header_with(self.value(click_id, params, variant), secure=secure)

    def header_with(self, value: str, *, secure: bool) -> str:
        """A ``Set-Cookie`` value carrying a signed ``value`` (from :meth:`value`)."""
        # The signed value is base64url, a UUID and "~", which werkzeug never
        # quotes, so it can go in front of the attributes it writes once a second.
        now = int(time.time())
        cached = self._attributes.get(secure)
        if cached is None or cached[0] != now:
            cached = self._attributes[secure] = (now, self._dump_attributes(secure))
        return f"{self.name}={value}{cached[1]}"

    def value(self, click_id: str, params: JourneyParams = (), variant: str | None = None) -> str:
        """The cookie's signed value (a framework's own cookie API can set it)."""
        payload = f"{click_id}~{_encode_params(params)}" if params or variant else click_id
        if variant:
            payload = f"{payload}~{variant}"
        return self._signer.sign(payload).decode("ascii")

    def _dump_attributes(self, secure: bool) -> str:
        header = dump_cookie(
            self.name,
            "v",
            max_age=self.max_age,
            path=self.path,
            domain=self.domain,
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
        return header[len(self.name) + 2 :]  # after "name=v"


def _encode_params(params: JourneyParams) -> str:
    return base64.urlsafe_b64encode(urlencode(params).encode()).decode("ascii").rstrip("=")


def _decode_params(encoded: str) -> JourneyParams:
    if not encoded:
        return ()
    try:
        text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ()  # signed by us, so never; but a key shared with an older format could
    return tuple(parse_qsl(text))
