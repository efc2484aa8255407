"""bangi_landing.core.page_cache: remembered pages, exactly the streaming rewriter's bytes."""

from __future__ import annotations

import random
import threading
import uuid

from bangi_landing.core.journey import new_click_id
from bangi_landing.core.page_cache import PageCache
from bangi_landing.core.rewrite import HtmlRewriter
from tests.test_rewrite import HOSTS, random_page

PAGE = (
    b'<html><title>Order</title><form action="/submit"><input name="phone"></form>'
    b'<a href="https://t.example.com/go?x=1">go</a><!-- <form> --></html>'
)


def streamed(page: bytes, click_id: str, **options: object) -> bytes:
    rewriter = HtmlRewriter(click_id, **options)  # type: ignore[arg-type]
    return rewriter.feed(page) + rewriter.finish()


def test_a_page_is_remembered_the_second_time_it_is_seen() -> None:
    cache = PageCache(link_hosts=HOSTS)
    first, second, third = new_click_id(), new_click_id(), new_click_id()
    assert cache.rewrite(PAGE, first) == streamed(PAGE, first, link_hosts=HOSTS)
    assert len(cache) == 0
    assert cache.rewrite(PAGE, second) == streamed(PAGE, second, link_hosts=HOSTS)
    assert len(cache) == 1
    assert cache.rewrite(PAGE, third) == streamed(PAGE, third, link_hosts=HOSTS)
    assert first.encode() not in cache.rewrite(PAGE, third)


def test_remembered_pages_match_the_streaming_rewriter() -> None:
    rnd = random.Random(7)
    for _ in range(300):
        page = random_page(rnd, 60)
        hosts = HOSTS if rnd.random() < 0.5 else ()
        cache = PageCache(link_hosts=hosts)
        for _ in range(3):
            click_id = new_click_id()
            assert cache.rewrite(page, click_id) == streamed(page, click_id, link_hosts=hosts)


def test_pages_that_differ_per_visitor_are_never_remembered() -> None:
    cache = PageCache()
    for i in range(100):
        page = f'<form><input name="csrf" value="{uuid.uuid4()}">{i}</form>'.encode()
        cache.rewrite(page, new_click_id())
    assert len(cache) == 0


def test_memory_is_bounded_oldest_pages_go_first() -> None:
    cache = PageCache(max_bytes=10_000)
    pages = [b"<form></form>" + bytes([65 + i]) * 1000 for i in range(10)]
    for page in pages:
        cache.rewrite(page, new_click_id())
        cache.rewrite(page, new_click_id())
    assert 0 < len(cache) < len(pages)
    assert cache._size <= cache.max_bytes
    assert pages[-1] in cache._pieces and pages[0] not in cache._pieces
    # Same-length pages share a lookup bucket: each is still served as itself.
    assert sum(len(bucket) for bucket in cache._by_length.values()) == len(cache)
    for page in pages:
        click_id = new_click_id()
        assert cache.rewrite(page, click_id) == streamed(page, click_id)


def test_large_pages_are_rewritten_but_not_remembered() -> None:
    cache = PageCache(max_page=1000)
    page = b"<form></form>" + b"x" * 1000
    for _ in range(3):
        click_id = new_click_id()
        assert cache.rewrite(page, click_id) == streamed(page, click_id)
    assert len(cache) == 0


def test_a_page_containing_the_placeholder_is_not_remembered() -> None:
    cache = PageCache()
    page = b"<form></form><p>" + cache._placeholder.encode() + b"</p>"
    for _ in range(3):
        click_id = new_click_id()
        assert cache.rewrite(page, click_id) == streamed(page, click_id)
    assert len(cache) == 0


def test_a_click_id_that_is_not_a_canonical_uuid_is_not_spliced() -> None:
    cache = PageCache()
    cache.rewrite(PAGE, new_click_id())
    cache.rewrite(PAGE, new_click_id())  # remembered now
    odd = '"><script>x</script>'
    assert cache.rewrite(PAGE, odd) == streamed(PAGE, odd)
    assert b"<script>" not in cache.rewrite(PAGE, odd)


def test_threads_share_the_cache_safely() -> None:
    cache = PageCache(link_hosts=HOSTS, max_bytes=2_000)
    rnd = random.Random(3)
    pages = [random_page(rnd, 40) for _ in range(20)]
    errors: list[bytes] = []

    def visit(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(300):
            page, click_id = local.choice(pages), new_click_id()
            if cache.rewrite(page, click_id) != streamed(page, click_id, link_hosts=HOSTS):
                errors.append(page)

    threads = [threading.Thread(target=visit, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
