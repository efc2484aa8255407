"""Whole-page rewriting with memory: a landing page is the same bytes for every visitor.

Rewriting a page means finding where its forms and tracker links are, and
that depends on the page's bytes only, never on the clickId. So the first
time a page is seen twice it is rewritten once with a placeholder clickId and
kept as the pieces between placeholders; from then on serving it to any
visitor is a lookup by length, a ``bytes`` comparison and a ``bytes.join``.
That takes the rewriting cost of a typical 4 KB landing from tens of
microseconds to about one. (Looked up by length, not by hash: the app makes
a new ``bytes`` for each response, and hashing 4 KB costs more than
comparing it.)

Pages that differ per visitor (a CSRF token in the form, the visitor's name)
never repeat, so they must not push the repeating ones out: a page is only
kept the second time it is seen (the first sighting leaves a hash in a
bounded set), and the whole cache is bounded in bytes.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Collection

from .rewrite import HtmlRewriter

__all__ = ["PageCache"]

# The placeholder and every real clickId are canonical lowercase UUIDs, which
# HTML and URL escaping leave as they are: splicing one in for the other gives
# exactly the bytes the rewriter would have written.
_CLICK_ID = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")


class PageCache:
    """Rewrite complete pages (see :class:`~bangi_landing.rewrite.HtmlRewriter`), remembering them.

    Thread-safe. Lookups take no lock; adding and evicting do.

    :param field_name: passed to the rewriter.
    :param link_hosts: passed to the rewriter.
    :param max_bytes: memory for remembered pages (each costs about twice its size).
    :param max_page: larger pages are rewritten every time, never remembered.
    """

    SEEN_SIZE = 4096  # hashes of pages seen once

    def __init__(
        self,
        *,
        field_name: str = "sub1",
        link_hosts: Collection[str] = (),
        max_bytes: int = 8 * 1024 * 1024,  # 8 MiB
        max_page: int = 256 * 1024,  # 256 KiB
    ) -> None:
        self.field_name = field_name
        self.link_hosts = tuple(link_hosts)
        self.max_bytes = max_bytes
        self.max_page = max_page
        # Random, so no page can contain it by accident or on purpose; checked anyway.
        self._placeholder = str(uuid.uuid4())
        self._pieces: dict[bytes, list[bytes]] = {}  # page -> rewritten page split at the clickId
        # The same, by page length, for lookups; each bucket is replaced, never changed.
        self._by_length: dict[int, tuple[tuple[bytes, list[bytes]], ...]] = {}
        self._seen: set[int] = set()
        self._size = 0
        self._lock = threading.Lock()

    def rewriter(self, click_id: str) -> HtmlRewriter:
        """A streaming rewriter with this cache's settings, for pages that come in chunks."""
        return HtmlRewriter(click_id, field_name=self.field_name, link_hosts=self.link_hosts)

    def rewrite(self, page: bytes, click_id: str) -> bytes:
        """``page`` (a whole body) as the streaming rewriter would write it for ``click_id``."""
        if not _CLICK_ID.fullmatch(click_id):
            return self._rewrite(page, click_id)
        for known, pieces in self._by_length.get(len(page), ()):
            if known == page:
                return click_id.encode("ascii").join(pieces)
        if len(page) > self.max_page or not self._seen_before(page):
            return self._rewrite(page, click_id)
        placeholder = self._placeholder
        if placeholder.encode("ascii") in page:
            return self._rewrite(page, click_id)
        pieces = self._rewrite(page, placeholder).split(placeholder.encode("ascii"))
        self._remember(page, pieces)
        return click_id.encode("ascii").join(pieces)

    def __len__(self) -> int:
        return len(self._pieces)

    def _rewrite(self, page: bytes, click_id: str) -> bytes:
        rewriter = self.rewriter(click_id)
        return rewriter.feed(page) + rewriter.finish()

    def _seen_before(self, page: bytes) -> bool:
        key = hash(page)
        with self._lock:
            if key in self._seen:
                self._seen.discard(key)
                return True
            if len(self._seen) >= self.SEEN_SIZE:
                self._seen.clear()  # cheaper than an LRU, and a page seen often comes back
            self._seen.add(key)
            return False

    def _remember(self, page: bytes, pieces: list[bytes]) -> None:
        cost = 2 * len(page) + 64 * len(pieces)
        if cost > self.max_bytes:
            return
        with self._lock:
            if page in self._pieces:
                return
            # Oldest first: dicts keep insertion order.
            while self._size + cost > self.max_bytes and self._pieces:
                old = next(iter(self._pieces))
                self._size -= 2 * len(old) + 64 * len(self._pieces.pop(old))
                bucket = tuple(e for e in self._by_length[len(old)] if e[0] is not old)
                if bucket:
                    self._by_length[len(old)] = bucket
                else:
                    del self._by_length[len(old)]
            self._pieces[page] = pieces
            self._size += cost
            self._by_length[len(page)] = (*self._by_length.get(len(page), ()), (page, pieces))
