"""clickId parsing and the journey cookie."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import types
import uuid
from collections.abc import Callable

import pytest
from itsdangerous import TimestampSigner
from werkzeug.http import dump_cookie

from bangi_landing.core.journey import (
    JourneyCookie,
    SavedJourney,
    _KeyedBlake2b,
    _mac,
    new_click_id,
    parse_click_id,
)

SECRET = "cookie-secret-0123456789"
CLICK = "8f1b5c6e-7a3d-4d20-a7f1-12a2b8f7a9c1"


def request_with(cookie: JourneyCookie, header: str) -> dict[str, str]:
    return {"HTTP_COOKIE": f"other=1; {header.split(';', 1)[0]}"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (CLICK, CLICK),
        (CLICK.upper(), CLICK),
        (" " + CLICK, None),
        ("urn:uuid:" + CLICK, None),
        (CLICK.replace("-", ""), None),
        (None, None),
        (42, None),
        ("", None),
    ],
)
def test_parse_click_id(value: object, expected: str | None) -> None:
    assert parse_click_id(value) == expected


def test_cookie_round_trip_and_flags() -> None:
    cookie = JourneyCookie(SECRET)
    header = cookie.header(CLICK, secure=True)
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header
    assert cookie.load(request_with(cookie, header)) == SavedJourney(CLICK, ())


def test_cookie_from_another_key_is_refused() -> None:
    header = JourneyCookie("another-secret-0123456789").header(CLICK, secure=False)
    assert JourneyCookie(SECRET).load(request_with(JourneyCookie(SECRET), header)) is None


def test_expiry_is_checked_even_for_a_remembered_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    cookie = JourneyCookie(SECRET, max_age=100)
    environ = request_with(cookie, cookie.header(CLICK, secure=False))
    assert cookie.load(environ) == SavedJourney(CLICK, ())  # verified and remembered
    later = time.time() + 101
    monkeypatch.setattr(
        "bangi_landing.core.journey.time", types.SimpleNamespace(time=lambda: later)
    )
    assert cookie.load(environ) is None


def test_each_visitor_gets_their_own_click_id() -> None:
    cookie = JourneyCookie(SECRET)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    for click_id in (first, second):
        header = cookie.header(click_id, secure=False)
        assert cookie.load(request_with(cookie, header)) == SavedJourney(click_id, ())


def test_the_cookie_keeps_the_journey_params() -> None:
    cookie = JourneyCookie(SECRET)
    params = (("click", "PRO 123&x=1"), ("source", "фейсбук"))
    header = cookie.header(CLICK, params, secure=False)
    value = header.split(";", 1)[0].split("=", 1)[1]
    assert header.startswith(f"bangi_journey={value};") and '"' not in value  # never quoted
    assert cookie.load(request_with(cookie, header)) == SavedJourney(CLICK, params)


def test_journey_params_cannot_be_swapped_under_a_valid_signature() -> None:
    cookie = JourneyCookie(SECRET)
    good = cookie.header(CLICK, (("click", "PRO1"),), secure=False).split(";", 1)[0]
    payload, _, signature = good.partition("~")
    other = cookie.header(CLICK, (("click", "PRO2"),), secure=False).split(";", 1)[0]
    forged = f"{payload}~{other.partition('~')[2].split('.', 1)[0]}.{signature.split('.', 1)[1]}"
    assert cookie.load({"HTTP_COOKIE": forged}) is None


def test_new_click_ids_are_random_version_4_uuids() -> None:
    ids = [new_click_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for click_id in ids:
        parsed = uuid.UUID(click_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == click_id == parse_click_id(click_id)
    # Every random bit shows up both ways: nothing is stuck at 0 or 1.
    bits = [uuid.UUID(click_id).int for click_id in ids]
    fixed = (0xF000 << 64) | (0xC000 << 48)  # version and variant
    assert all(
        (any(b >> i & 1 for b in bits) and not all(b >> i & 1 for b in bits))
        for i in range(128)
        if not fixed >> i & 1
    )


def test_threads_never_share_a_click_id() -> None:
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda: ids.extend(new_click_id() for _ in range(2000)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == len(ids) == 8000


COOKIE = JourneyCookie(SECRET)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize(
    "make", [new_click_id, lambda: COOKIE.new_journey()[0]], ids=["new_click_id", "new_journey"]
)
def test_a_forked_child_never_repeats_its_parents_click_ids(make: Callable[[], str]) -> None:
    make()  # the parent now holds clickIds made in advance
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write_end, ",".join(make() for _ in range(10)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = set(pipe.read().split(","))
    assert os.waitpid(pid, 0)[1] == 0
    parent = {make() for _ in range(10)}
    assert len(child) == 10 and not child & parent


def test_a_new_journey_is_a_fresh_click_id_and_its_signed_cookie() -> None:
    cookie = JourneyCookie(SECRET)
    journeys = [cookie.new_journey() for _ in range(200)]  # several batches
    assert len({click_id for click_id, _ in journeys}) == 200
    for click_id, value in journeys:
        assert uuid.UUID(click_id).version == 4
        assert cookie.load({"HTTP_COOKIE": f"bangi_journey={value}"}) == SavedJourney(click_id, ())
    assert cookie.header_with(value, secure=False).startswith(f"bangi_journey={value}; Expires=")


def test_values_signed_ahead_are_not_used_once_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    cookie = JourneyCookie(SECRET)
    start = time.time()
    cookie.new_journey()  # the rest of the batch waits, signed now
    monkeypatch.setattr(time, "time", lambda: start + cookie.FRESH_FOR + 2)
    _, value = cookie.new_journey()
    _, signed_at = cookie._signer.unsign(value, return_timestamp=True)
    assert signed_at.timestamp() >= start + cookie.FRESH_FOR + 1


def test_cookie_header_is_what_werkzeug_writes() -> None:
    cookie = JourneyCookie(SECRET, domain="example.com")
    for secure in (True, False):
        header = cookie.header(CLICK, secure=secure)
        value = header.split(";", 1)[0].split("=", 1)[1]
        assert header == dump_cookie(
            "bangi_journey", value, max_age=cookie.max_age, path="/", domain="example.com",
            secure=secure, httponly=True, samesite="Lax",
        )  # fmt: skip


def test_a_cookie_signed_with_itsdangerous_defaults_is_refused() -> None:
    # e.g. Flask's own signing with the same secret and salt: a different MAC.
    value = TimestampSigner(SECRET, salt=JourneyCookie.SALT).sign(CLICK).decode()
    assert JourneyCookie(SECRET).load({"HTTP_COOKIE": f"bangi_journey={value}"}) is None


def test_the_cookie_is_signed_exactly_as_itsdangerous_signs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cookie = JourneyCookie(SECRET)
    reference = TimestampSigner(
        SECRET, salt=JourneyCookie.SALT, digest_method=hashlib.sha256, algorithm=_KeyedBlake2b()
    )
    for now in (1_700_000_000, 1_700_000_000, 1_700_000_001):  # the second's stamp is reused
        monkeypatch.setattr(time, "time", lambda now=now: now + 0.5)
        for params in ((), (("click", "PRO-1"),)):
            value = cookie.value(CLICK, params)
            payload, signed_at = reference.unsign(value, return_timestamp=True)
            assert signed_at.timestamp() == now
            assert reference.sign(payload).decode() == value


def test_the_mac_is_keyed_blake2b_every_time() -> None:
    for value in (b"first", b"second", b"first"):  # the remembered keyed state is never changed
        assert _mac(b"key", value) == hashlib.blake2b(value, key=b"key", digest_size=32).digest()
