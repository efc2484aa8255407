"""Streaming HTML rewriting: hidden click-id field in forms, click id on tracker links.

The middleware sees a landing page as a stream of byte chunks in whatever
ASCII-compatible charset the app used.  It must add the click id without
decoding the page (the charset may be unknown or wrong), without buffering
whole responses (pages can be large, and streaming apps must keep streaming)
and without costing noticeable CPU.  So this is not a parser: it is a small
HTML *tokenizer* that only understands what decides whether a ``<form>`` or
``<a>`` tag is real markup: quoted attribute values, comments, CDATA and the
raw-text elements such as ``<script>``, following the WHATWG tokenizer states.

Speed.  Touching every tag, even inside the C regex engine, costs about four
times the time budget, so the scanner never does.  One compiled regex, run on
a lower-cased copy of the chunk, jumps straight to the few *candidates*
(``<form``, ``</form``, ``<script`` and the other raw-text elements, ``<!--``,
``<![CDATA[``, and ``<input`` inside a held form); tracker links are found
with ``bytes.find`` on the host names.  Whether a candidate is real is then
decided by looking back a little, which is exact thanks to two facts:

* A bogus comment (``<!x``, ``<?x``, ``</3``, a doctype) ends at the first
  ">", so only one opened after the last ">" can still be open.
* A ``<`` in an *unquoted* part of a tag ends ("abandons") the tag there.
  Browsers would make it part of an attribute name or value instead; that
  only differs on broken markup such as ``<div class=x<form>``, and it means
  that any other "<" is a real token start unless it sits inside a quoted
  attribute value.  The opening quote of such a value is the last quote of
  its kind before the "<" and follows "=" (plus optional whitespace).  When
  no quote before the candidate looks like that (nearly always), it is real;
  when one does, the bytes since the last known data position are tokenized
  exactly by a full-grammar regex (rare, and still linear).

A construct cut by a chunk boundary is finished by a resumable state machine,
so no byte is scanned twice however small the chunks are: the cost is linear
in the size of the page.  Every decision depends on the bytes only, never on
where the chunks were cut, so the output does not depend on the chunking.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable, Collection
from functools import cache
from html.entities import html5 as _HTML5_ENTITIES
from urllib.parse import parse_qsl, quote, urlsplit

__all__ = ["HtmlRewriter"]

# --------------------------------------------------------------------------
# Tokenizer grammar (bytes).  HTML whitespace is TAB, LF, FF, CR and SPACE.
# --------------------------------------------------------------------------

# The attribute part of a tag as the WHATWG tokenizer splits it (a quote only
# opens a value right after "=", names may contain quotes and start with "=",
# an unquoted value ends at whitespace or ">"), plus the abandon rule: a "<"
# outside quotes ends the tag.  Possessive quantifiers mean no backtracking,
# and since the grammar is unambiguous they never lose a valid parse.  With
# _TAG_END after it, it fails exactly when the tag is incomplete: the data
# ends, or a quoted value has not been closed yet.
_ATTRS = (
    rb"(?:[\t\n\f\r /]++"
    rb"|[^\t\n\f\r /><][^\t\n\f\r /><=]*+"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"
    rb"(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'<][^\t\n\f\r ><]*+|(?=[><]))"
    rb"|(?![\t\n\f\r ]*+=)))*+"
)
_TAG_END = rb"(?:(>)|(?=<))"  # group 1 is None when the tag was abandoned
_TAG_REST_RE = re.compile(_ATTRS + _TAG_END)

# Everything up to a position, tokenized exactly (used with endpos when the
# fast check is not sure): text, tags, end tags and bogus comments.  Comments
# and CDATA never occur there (they are candidates, handled before).
_TOKENS_RE = re.compile(
    rb"(?:[^<]++"
    rb"|<(?=[^a-zA-Z!/?])"
    rb"|</?[a-zA-Z][^\t\n\f\r /><]*+" + _ATTRS + rb"(?:>|(?=<))"
    rb"|</>"
    rb"|<(?:!(?!--|\[CDATA\[)|\?|/(?=[^a-zA-Z>]))[^>]*+>"
    rb")*+"
)

# One attribute of a complete tag; group 1 is the name, group 2 the raw value
# (with its quotes), None for a bare attribute.
_ATTR_RE = re.compile(
    rb"[\t\n\f\r /]*+([^\t\n\f\r /><][^\t\n\f\r /><=]*+)"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"
    rb"(\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'<][^\t\n\f\r ><]*+|(?=[><])))?"
)

_TAGNAME_RE = re.compile(rb"[^\t\n\f\r /><]*+")
_COMMENT_END_RE = re.compile(rb"--!?>")
# "<!", "<?" and "</" not followed by a letter open a bogus comment (a
# doctype is one too, for our purposes): it ends at the first ">", period.
_BOGUS_OPEN_RE = re.compile(rb"<(?:!|\?|/(?![a-zA-Z>]))")

# Elements whose content is not markup, so a "<form>" in them is text.
# script has its own escaped states; plaintext never ends.
_RAWTEXT_NAMES = (b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes")
# A longer partial tag name cannot be one we react to; this bounds what waits
# for the next chunk.
_MAX_NAME = 9
# Longest tag kept in memory to rewrite (an <a>) or inspect (an <input>).
_MAX_TAG = 65536

_DELIM = rb"(?=[\t\n\f\r /><])"


def _candidates_re(with_input: bool) -> re.Pattern[bytes]:
    """Finds, in the lower-cased buffer, every place where something may happen.

    Alternatives are grouped by their first letter: the regex engine then
    rejects most "<" after a single comparison, which is what makes the scan
    fast (a flat alternation or IGNORECASE is two to three times slower).
    """
    names = [b"form", b"/form", b"script", *_RAWTEXT_NAMES, b"plaintext"]
    if with_input:
        names.append(b"input")
    groups: dict[bytes, list[bytes]] = {}
    for name in names:
        groups.setdefault(name[:1], []).append(re.escape(name[1:]) + _DELIM)
    alts = [re.escape(first) + b"(?:" + b"|".join(rest) + b")" for first, rest in groups.items()]
    alts.append(rb"!(?:--|\[cdata\[)")
    return re.compile(b"<(?:" + b"|".join(alts) + b")")


_CANDIDATES_FREE = _candidates_re(False)
_CANDIDATES_HOLD = _candidates_re(True)


@cache
def _end_tag_re(name: bytes) -> re.Pattern[bytes]:
    """Finds the end tag that closes a raw-text element (case-insensitive)."""
    return re.compile(rb"</(?i:" + re.escape(name) + rb")[\t\n\f\r />]")


# Script data: "<!--" enters the escaped state, where "<script" enters the
# double-escaped one, where "</script" only goes back to escaped.  "-->"
# returns to plain script data from both.  Only "</script" in the plain or
# escaped state ends the element.
_SCRIPT_RE = re.compile(rb"(<!--)|</(?i:script)[\t\n\f\r />]")
_SCRIPT_ESC_RE = re.compile(rb"(-->)|(</(?i:script)[\t\n\f\r />])|<(?i:script)[\t\n\f\r />]")
_SCRIPT_DESC_RE = re.compile(rb"(-->)|</(?i:script)[\t\n\f\r />]")

# Tokenizer modes.
_DATA = 0
_TAG = 1
_COMMENT = 2
_BOGUS = 3
_CDATA = 4
_RAWTEXT = 5
_SCRIPT = 6
_SCRIPT_ESC = 7
_SCRIPT_DESC = 8
_PLAINTEXT = 9

# States inside a tag (WHATWG: tag name, before attribute name, attribute
# name, after attribute name, before attribute value, double-quoted,
# single-quoted and unquoted value).  "After quoted value" and "self-closing
# start tag" find the end exactly like "before attribute name", so they share it.
_T_TAGNAME = 0
_T_BAN = 1
_T_NAME = 2
_T_AAN = 3
_T_BAV = 4
_T_DQ = 5
_T_SQ = 6
_T_UNQ = 7

# For each state, the run of bytes that does not change it.
_RUNS: tuple[Callable[[bytes, int], re.Match[bytes] | None], ...] = tuple(
    re.compile(p).match
    for p in (
        rb"[^\t\n\f\r /><]*+",
        rb"[\t\n\f\r /]*+",
        rb"[^\t\n\f\r /><=]*+",
        rb"[\t\n\f\r ]*+",
        rb"[\t\n\f\r ]*+",
        rb"[^\"]*+",
        rb"[^']*+",
        rb"[^\t\n\f\r ><]*+",
    )
)

# What a tag means to us.
_K_OTHER = 0
_K_FORM = 1
_K_ENDFORM = 2
_K_A = 3
_K_INPUT = 4
_K_SCRIPT = 5
_K_RAWTEXT = 6
_K_PLAINTEXT = 7

_START_KINDS: dict[bytes, int] = {
    b"form": _K_FORM,
    b"script": _K_SCRIPT,
    **dict.fromkeys(_RAWTEXT_NAMES, _K_RAWTEXT),
    b"plaintext": _K_PLAINTEXT,
}

_LT = 0x3C
_GT = 0x3E
_EQ = 0x3D
_SLASH = 0x2F
_DQUOTE = 0x22
_SQUOTE = 0x27
_BANG = 0x21
_QMARK = 0x3F
_DASH = 0x2D
_WS_BYTES = frozenset(b"\t\n\f\r ")
_OPENER_BYTES = frozenset(b"!/?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _is_alpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _last_opener(buf: bytes, lo: int, hi: int) -> int:
    """Offset of the last "<" in ``buf[lo:hi]`` that can start a construct, or -1.

    A "<" as the very last byte of ``buf`` counts (its meaning is not known yet).
    """
    n = len(buf)
    i = hi
    while (i := buf.rfind(b"<", lo, i)) >= 0:
        if i + 1 >= n or buf[i + 1] in _OPENER_BYTES:
            return i
    return -1


def _may_be_quoted(buf: bytes, lo: int, x: int) -> bool:
    """False when ``x`` is certainly not inside a quoted attribute value.

    ``lo`` must be a position in the data state.  If ``x`` is inside a quoted
    value, that value's opening quote is the last quote of its kind before
    ``x`` and follows "=" and optional whitespace.  Usually the last quote
    before a "<" closes the value before it, so this cheap test settles it.
    """
    ws = _WS_BYTES
    for q in (buf.rfind(b'"', lo, x), buf.rfind(b"'", lo, x)):
        j = q - 1
        while j >= lo and buf[j] in ws:
            j -= 1
        if j >= lo and buf[j] == _EQ:
            return True
    return False


def _open_bogus(buf: bytes, lo: int, x: int) -> int:
    """Offset of a bogus comment that is still open at ``x``, or -1.

    A bogus comment ends at the first ">", so only one opened after the last
    ">" before ``x`` can still be open, and then the first such opener is it
    (unless it sits inside a quoted value: the caller checks that).
    """
    m = _BOGUS_OPEN_RE.search(buf, max(lo, buf.rfind(b">", lo, x) + 1), x)
    return -1 if m is None else m.start()


def _tag_around(buf: bytes, o: int, x: int) -> int:
    """``o`` if the real construct opened at ``o`` is still open at ``x``, else -1.

    No bogus comment is open at ``x`` (the caller checked), so a bogus opener
    at ``o`` is closed.
    """
    n = len(buf)
    if o + 1 >= n:
        return o  # a lone "<" at the very end
    c = buf[o + 1]
    if _is_alpha(c):
        start = o + 1
    elif c == _SLASH:
        if o + 2 >= n:
            return o  # "</" at the very end
        if not _is_alpha(buf[o + 2]):
            return -1  # "</>" or a closed bogus comment
        start = o + 2
    else:
        return -1
    tn = _TAGNAME_RE.match(buf, start)
    assert tn is not None
    if tn.end() >= n:
        return o
    rm = _TAG_REST_RE.match(buf, tn.end())
    return o if rm is None or rm.end() > x else -1


def _container(buf: bytes, lo: int, x: int, any_byte: bool) -> int:
    """Offset of the construct (tag or bogus comment) that ``x`` is inside, or -1.

    ``lo`` is a position in the data state with no comment, CDATA or raw-text
    element between it and ``x``.  A bogus comment still open at ``x`` is the
    one opened after the last ">".  Otherwise only the last "<" that opens
    something can still be open at ``x``, and it is real unless it sits in a
    quoted value or a bogus comment itself, which cheap checks rule out.  With
    ``any_byte`` false, ``x`` is a "<", which would end (abandon) any tag it is
    not quoted in, so when no quote can be open there is nothing to look at.
    When a check is not sure, the bytes are tokenized exactly instead.
    """
    b = _open_bogus(buf, lo, x)
    if b >= 0:
        if not _may_be_quoted(buf, lo, b):
            return b
    elif not any_byte and not _may_be_quoted(buf, lo, x):
        return -1
    else:
        o = _last_opener(buf, lo, x)
        if o < 0:
            return -1
        if not _may_be_quoted(buf, lo, o):
            b = _open_bogus(buf, lo, o)
            if b < 0:
                return _tag_around(buf, o, x)
            if not _may_be_quoted(buf, lo, b):
                # o is inside a bogus comment, which ends at the first ">".
                end = buf.find(b">", o)
                return b if end < 0 or end >= x else -1
    tm = _TOKENS_RE.match(buf, lo, x)
    assert tm is not None
    p = tm.end()
    return -1 if p >= x else p


# --------------------------------------------------------------------------
# Attribute values and URLs
# --------------------------------------------------------------------------

_CHARREF_RE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_NON_ASCII_RE = re.compile("[^\x00-\x7f\udc80-\udcff]")
# Scheme and a plain authority (host and port only), the shape of nearly every
# link; anything else goes through urllib.parse.urlsplit.
_AUTHORITY_RE = re.compile(
    r"(?:[hH][tT][tT][pP][sS]?:)?//([0-9A-Za-z.:_~!$&'()*+,;=-]*)(?=[/?#]|\Z)"
)
_TAB_NL_RE = re.compile("[\t\n\r]")
_URL_STRIP = "".join(chr(i) for i in range(0x21))


def _charref(m: re.Match[str]) -> str:
    # html.unescape, except for the attribute-value rule of the HTML standard:
    # a named reference without ";" followed by "=" or an alphanumeric stays
    # literal ("?a=1&copy=2" keeps its "&copy").  Plain unescape would turn a
    # working query parameter into "(c)=2" and break the link.
    ref = m.group(1)
    if ref[0] == "#":
        return html.unescape(m.group(0))
    if ref in _HTML5_ENTITIES:
        return _HTML5_ENTITIES[ref]
    for x in range(len(ref) - 1, 1, -1):
        if ref[:x] in _HTML5_ENTITIES:
            nxt = ref[x]
            if nxt == "=" or (nxt.isascii() and nxt.isalnum()):
                return m.group(0)
            return _HTML5_ENTITIES[ref[:x]] + ref[x:]
    return m.group(0)


def _decode_attr(raw: bytes) -> str:
    """Decode a raw attribute value (quotes included) to the string a browser sees.

    Bytes >= 0x80 become lone surrogates so that ``_encode_attr`` gives back
    exactly the original bytes whatever the page's charset is.
    """
    if raw[:1] in (b'"', b"'"):
        raw = raw[1:-1]
    text = raw.decode("ascii", "surrogateescape")
    return _CHARREF_RE.sub(_charref, text) if "&" in text else text


def _encode_attr(value: str) -> bytes:
    """Encode a value for a double-quoted attribute in any ASCII-compatible charset.

    Characters that came from character references (not from the page's own
    bytes) are written back as numeric references, never as raw bytes in a
    charset we do not know.
    """
    text = html.escape(value, quote=True)
    text = _NON_ASCII_RE.sub(lambda m: f"&#{ord(m.group())};", text)
    return text.encode("ascii", "surrogateescape")


def _find_attr(tag: bytes, want: bytes) -> tuple[int, int] | None:
    """Span of the raw value of the first attribute named ``want`` in a complete tag.

    The first one counts, as in browsers, which drop later duplicates.  None
    when the attribute is absent or has no value.
    """
    tname = _TAGNAME_RE.match(tag, 1)
    assert tname is not None
    pos = tname.end()
    match = _ATTR_RE.match
    while (m := match(tag, pos)) is not None:
        if m.group(1).lower() == want:
            return m.span(2) if m.group(2) is not None else None
        pos = m.end()
    return None


def _normalize_hosts(hosts: Collection[str]) -> frozenset[str]:
    if isinstance(hosts, str):  # a lone host is a Collection[str] too
        hosts = (hosts,)
    result: set[str] = set()
    for host in hosts:
        h = host.strip().lower().rstrip(".")
        if not h:
            continue
        result.add(h)
        with contextlib.suppress(UnicodeError):  # not a valid IDN: keep it as given
            result.add(h.encode("idna").decode("ascii"))
    return frozenset(result)


class HtmlRewriter:
    """Rewrite one HTML response body, chunk by chunk.

    * After every real ``<form ...>`` start tag, insert
      ``<input type="hidden" name="FIELD" value="CLICK_ID">`` unless the form
      already has an ``<input>`` of that name (a template or a hand-written
      field).  To know that, the form's bytes are held back from its start tag
      until ``</form>`` or until ``max_hold`` bytes have been held, after
      which the field is inserted anyway and streaming resumes.
    * When ``link_hosts`` is given, add ``LINK_PARAM=CLICK_ID`` to the query of
      every absolute ``<a href>`` pointing to one of those hosts, unless the
      parameter is already there.

    Concatenating what ``feed`` returns for every chunk and then what
    ``finish`` returns gives the same bytes however the body was chunked, and
    exactly the input when there is nothing to change.  After ``finish`` the
    object is reset and can rewrite another body.

    Memory: a held form costs at most ``max_hold`` bytes plus one chunk, an
    incomplete ``<a>`` tag at most 64 KiB (longer ones are passed through
    unchanged); anything else still undecided at a chunk boundary is a few
    bytes, however long the tag, comment or script it belongs to.
    """

    __slots__ = (
        "_abandoned",
        "_base",
        "_comment_start",
        "_field_html",
        "_field_name",
        "_held",
        "_hold_limit",
        "_holding",
        "_host_needles",
        "_hosts",
        "_in_form",
        "_keep",
        "_keep_size",
        "_keeping",
        "_link_param",
        "_link_suffix",
        "_mark",
        "_max_hold",
        "_mode",
        "_out",
        "_pending",
        "_raw_re",
        "_raw_tail",
        "_sink",
        "_tkind",
        "_tname",
        "_tstate",
    )

    def __init__(
        self,
        click_id: str,
        *,
        field_name: str = "sub1",
        link_hosts: Collection[str] = (),
        link_param: str = "clickId",
        max_hold: int = 65536,
    ) -> None:
        if not field_name:
            raise ValueError("field_name must not be empty")
        if not link_param:
            raise ValueError("link_param must not be empty")
        if max_hold < 0:
            raise ValueError("max_hold must be >= 0")
        self._field_name = field_name
        # Escaped although a click id is a UUID: the value is caller-supplied
        # and ends up in markup.  Non-ASCII becomes character references so
        # the bytes are right in any ASCII-compatible charset.
        self._field_html = (
            f'<input type="hidden" name="{html.escape(field_name)}"'
            f' value="{html.escape(click_id)}">'
        ).encode("ascii", "xmlcharrefreplace")
        self._hosts = _normalize_hosts(link_hosts)
        # A tag can only point to one of our hosts if it contains the host's
        # name, so links are found by searching for the names themselves.
        self._host_needles = tuple(h.encode("ascii") for h in self._hosts if h.isascii())
        self._link_param = link_param
        self._link_suffix = quote(link_param, safe="") + "=" + quote(click_id, safe="")
        self._max_hold = max_hold
        self._reset()

    def _reset(self) -> None:
        self._mode = _DATA
        self._tstate = _T_TAGNAME
        self._tkind = _K_OTHER
        self._tname = b""
        self._abandoned = False
        self._comment_start = False
        self._raw_re = _SCRIPT_RE
        self._raw_tail = 0
        self._pending = b""  # unscanned tail: at most a few bytes of an undecided construct
        self._out: list[bytes] = []
        self._held: list[bytes] = []
        self._sink = self._out  # where scanned bytes go: _out, or _held while holding a form
        self._holding = False
        self._in_form = False
        self._hold_limit = 0
        self._base = 0  # stream offset of the current buffer's first byte
        self._mark = 0  # first byte of the current buffer not yet given to the sink
        self._keeping = False  # bytes of the current tag go to _keep (an <a> or <input>)
        self._keep: list[bytes] = []
        self._keep_size = 0

    # ------------------------------------------------------------------ API

    def feed(self, chunk: bytes) -> bytes:
        """Scan the next chunk; return the bytes that can be sent now (maybe ``b""``).

        Returns less than was fed only while a form is held back, while an
        ``<a>`` tag that may need rewriting is incomplete, or when the chunk
        ends with a few bytes whose meaning depends on the next ones.
        """
        if not chunk:
            return b""
        buf = self._pending + chunk if self._pending else bytes(chunk)
        self._run(buf, False)
        out = self._out
        if not out:
            return b""
        result = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return result

    def finish(self) -> bytes:
        """End of the body: return everything still held back, then reset.

        An unterminated tag, comment or similar is passed through unchanged
        (browsers drop or ignore it too); a form whose ``</form>`` never came
        gets its field.
        """
        self._run(self._pending, True)
        if self._holding:
            self._release(True)
        result = b"".join(self._out)
        self._reset()
        return result

    # ------------------------------------------------------------- scanning

    def _run(self, buf: bytes, final: bool) -> None:
        """Scan ``buf``, handing scanned (and rewritten) bytes to the sink.

        Whatever cannot be decided yet is kept in ``_pending`` for the next
        call: a partial "<!--", end tag or tag name, never more than a few
        bytes, so scanning it again costs nothing.
        """
        n = len(buf)
        pos = 0
        stop = n
        self._mark = 0
        low = b""
        host_next: list[int] = []  # per host name: next offset, -1 none, -2 not searched
        host = -1
        # The last candidate search, reused while still ahead (a link rewrite
        # or a skipped tag must not make us scan the same bytes again).
        m: re.Match[bytes] | None = None
        m_for = -1  # 0/1: the holding state it was searched with; -1: none yet
        while True:
            mode = self._mode
            if mode == _DATA:
                if not low:
                    low = buf.lower()  # same offsets; lets the scan ignore case cheaply
                    host_next = [-2] * len(self._host_needles) if self._hosts else []
                holding = self._holding
                if m_for != holding or (m is not None and m.start() < pos):
                    m = (_CANDIDATES_HOLD if holding else _CANDIDATES_FREE).search(low, pos)
                    m_for = holding
                cand = n if m is None else m.start()
                if host_next:
                    if host < pos:
                        # Next occurrence of a tracker host name (n: none).
                        host = n
                        for i, needle in enumerate(self._host_needles):
                            h = host_next[i]
                            if -1 < h < pos or h == -2:
                                h = host_next[i] = low.find(needle, pos)
                            if 0 <= h < host:
                                host = h
                    if host < cand:
                        nxt = self._on_host(buf, low, pos, host, final)
                        if nxt < 0:
                            stop = -nxt - 2
                            break
                        pos = nxt
                        continue
                if m is None:
                    nxt = self._at_end(buf, pos, final)
                    if nxt < 0:
                        if nxt < -1:
                            stop = -nxt - 2
                        break
                    pos = nxt
                    continue
                p = _container(buf, pos, cand, False)
                if p >= 0:
                    # Not real: the candidate is inside the construct starting at p.
                    nxt = self._open(buf, p, final)
                    if nxt < 0:
                        stop = p
                        break
                    pos = nxt
                    continue
                pos = self._on_candidate(buf, low, cand, m.end(), final)
                if pos < 0:
                    stop = cand
                    break
            elif mode == _TAG:
                end = self._scan_tag(buf, pos)
                if end < 0:
                    break
                pos = end
                self._mode = _DATA
                self._on_tag(buf, self._tkind, self._tname, -1, end, self._abandoned)
            elif mode == _COMMENT:
                if self._comment_start:
                    # "<!-->" and "<!--->" are complete (empty) comments.
                    if pos >= n:
                        break
                    if buf[pos] == _GT:
                        pos += 1
                        self._mode = _DATA
                        continue
                    if buf[pos] == _DASH:
                        if pos + 1 >= n:
                            stop = n if final else pos
                            break
                        if buf[pos + 1] == _GT:
                            pos += 2
                            self._mode = _DATA
                            continue
                    self._comment_start = False
                cm = _COMMENT_END_RE.search(buf, pos)
                if cm is None:
                    stop = n if final else max(pos, n - 3)
                    break
                pos = cm.end()
                self._mode = _DATA
            elif mode == _RAWTEXT:
                rm = self._raw_re.search(buf, pos)
                if rm is None:
                    stop = n if final else max(pos, n - self._raw_tail)
                    break
                pos = rm.start()  # the end tag itself is an ordinary tag
                self._mode = _DATA
            elif mode == _SCRIPT:
                rm = _SCRIPT_RE.search(buf, pos)
                if rm is None:
                    stop = n if final else max(pos, n - 8)
                    break
                if rm.group(1) is not None:
                    # The "--" of "<!--" may already start the "-->" that
                    # leaves the escaped state ("<!-->").
                    pos = rm.start() + 2
                    self._mode = _SCRIPT_ESC
                else:
                    pos = rm.start()
                    self._mode = _DATA
            elif mode == _SCRIPT_ESC:
                rm = _SCRIPT_ESC_RE.search(buf, pos)
                if rm is None:
                    stop = n if final else max(pos, n - 8)
                    break
                if rm.group(1) is not None:
                    pos = rm.end()
                    self._mode = _SCRIPT
                elif rm.group(2) is not None:
                    pos = rm.start()
                    self._mode = _DATA
                else:
                    pos = rm.end()
                    self._mode = _SCRIPT_DESC
            elif mode == _SCRIPT_DESC:
                rm = _SCRIPT_DESC_RE.search(buf, pos)
                if rm is None:
                    stop = n if final else max(pos, n - 8)
                    break
                pos = rm.end()
                self._mode = _SCRIPT if rm.group(1) is not None else _SCRIPT_ESC
            elif mode == _BOGUS:
                i = buf.find(b">", pos)
                if i < 0:
                    break
                pos = i + 1
                self._mode = _DATA
            elif mode == _CDATA:
                i = buf.find(b"]]>", pos)
                if i < 0:
                    stop = n if final else max(pos, n - 2)
                    break
                pos = i + 3
                self._mode = _DATA
            else:  # _PLAINTEXT: the rest of the body is text
                break

        if final:
            stop = n
        rest = buf[self._mark : stop]
        if self._keeping:
            self._keep.append(rest)
            self._keep_size += len(rest)
            if final or self._keep_size > _MAX_TAG:
                # Too long (or never ended): pass it through untouched.
                self._sink.extend(self._keep)
                self._keep = []
                self._keeping = False
                self._tkind = _K_OTHER
        elif rest:
            self._sink.append(rest)
        self._mark = stop
        self._pending = buf[stop:]
        self._base += stop
        # Any tag still to come ends after this point, so past the limit no
        # field can count any more: stop holding.
        if self._holding and self._base >= self._hold_limit:
            self._release(True)

    def _at_end(self, buf: bytes, pos: int, final: bool) -> int:
        """No candidate in ``buf[pos:]``: settle the state at the end of the buffer.

        Only the last construct can still be open.  Returns where to go on
        scanning (after switching mode), -1 when the rest is plain data, or
        ``-2 - offset`` when the bytes from ``offset`` must wait for more data.
        """
        o = _container(buf, pos, len(buf), True)
        if o < 0:
            return -1
        nxt = self._open(buf, o, final)
        return -2 - o if nxt < 0 else nxt

    def _on_host(self, buf: bytes, low: bytes, pos: int, host: int, final: bool) -> int:
        """A tracker host name occurs at ``host``: rewrite the ``<a>`` tag around it, if any.

        Returns where to go on scanning, or ``-2 - offset`` to wait for more data.
        """
        # The usual case first: the host is in an <a> tag opened by the last
        # "<" before it, which is real (not quoted, not in a bogus comment).
        o = _last_opener(buf, pos, host)
        if o < 0:
            return host + 1  # in text
        if (
            low.startswith(b"<a", o)
            and buf[o + 2] in b"\t\n\f\r /><"
            and not _may_be_quoted(buf, pos, o)
            and _open_bogus(buf, pos, o) < 0
        ):
            rm = _TAG_REST_RE.match(buf, o + 2)
            if rm is not None and rm.end() > host:
                self._on_tag(buf, _K_A, b"a", o, rm.end(), rm.group(1) is None)
                return rm.end()
        o = _container(buf, pos, host, True)
        if o < 0:
            return host + 1  # in text
        nxt = self._open(buf, o, final)
        return -2 - o if nxt < 0 else nxt

    def _on_candidate(self, buf: bytes, low: bytes, c: int, name_end: int, final: bool) -> int:
        """Handle the real candidate at ``c``; return where to go on, -1 to wait."""
        key = low[c + 1 : name_end]
        if key == b"!--":
            self._mode = _COMMENT
            self._comment_start = True
            return name_end
        if key == b"![cdata[":
            if buf[c : c + 9] == b"<![CDATA[":
                self._mode = _CDATA
                return name_end
            self._mode = _BOGUS  # CDATA is case-sensitive
            return c + 2
        rm = _TAG_REST_RE.match(buf, name_end)
        if rm is None:
            return self._open(buf, c, final)
        end = rm.end()
        if key == b"/form":
            self._on_tag(buf, _K_ENDFORM, key, c, end, rm.group(1) is None)
        else:
            kind = _K_INPUT if key == b"input" else _START_KINDS[key]
            self._on_tag(buf, kind, key, c, end, rm.group(1) is None)
        return end

    def _open(self, buf: bytes, p: int, final: bool) -> int:
        """Start the construct at ``buf[p] == "<"`` with the resumable machinery.

        Returns where to continue, or -1 when the bytes so far cannot tell what
        the construct is (then they wait for the next chunk).
        """
        n = len(buf)
        wait = n if final else -1
        q = p + 1
        if q >= n:
            return wait
        c = buf[q]
        if c == _SLASH:
            q += 1
            if q >= n:
                return wait
            if _is_alpha(buf[q]):
                return self._open_tag(buf, p, q, True, final)
            if buf[q] == _GT:
                return q + 1  # "</>" is nothing
            self._mode = _BOGUS
            return q
        if _is_alpha(c):
            return self._open_tag(buf, p, q, False, final)
        if c == _BANG:
            head = buf[p : p + 9]
            if head.startswith(b"<!--"):
                self._mode = _COMMENT
                self._comment_start = True
                return p + 4
            if head == b"<![CDATA[":
                self._mode = _CDATA
                return p + 9
            if b"<!--".startswith(head) or b"<![CDATA[".startswith(head):
                return wait
            self._mode = _BOGUS
            return p + 2
        if c == _QMARK:
            self._mode = _BOGUS
            return q
        return q  # a "<" that is just text

    def _open_tag(self, buf: bytes, p: int, name_start: int, is_end: bool, final: bool) -> int:
        n = len(buf)
        tm = _TAGNAME_RE.match(buf, name_start)
        assert tm is not None
        name_end = tm.end()
        name = b""
        if name_end >= n:
            if name_end - name_start <= _MAX_NAME:
                return n if final else -1
            kind = _K_OTHER
        else:
            name = buf[name_start:name_end].lower()
            if is_end:
                kind = _K_ENDFORM if name == b"form" else _K_OTHER
            elif name == b"a":
                kind = _K_A if self._hosts else _K_OTHER
            elif name == b"input":
                kind = _K_INPUT if self._holding else _K_OTHER
            else:
                kind = _START_KINDS.get(name, _K_OTHER)
        self._mode = _TAG
        self._tstate = _T_TAGNAME
        self._tkind = kind
        self._tname = name
        if kind in (_K_A, _K_INPUT):
            self._cut(buf, p)
            self._keeping = True
            self._keep = []
            self._keep_size = 0
        return name_end

    def _scan_tag(self, buf: bytes, pos: int) -> int:
        """Advance the in-tag state machine; the tag's end offset, or -1 if not yet."""
        st = self._tstate
        n = len(buf)
        runs = _RUNS
        while True:
            rm = runs[st](buf, pos)
            assert rm is not None
            i = rm.end()
            if i >= n:
                self._tstate = st
                return -1
            c = buf[i]
            pos = i + 1
            if st in (_T_DQ, _T_SQ):  # closing quote
                st = _T_BAN
                continue
            if c == _GT:
                self._abandoned = False
                return pos
            if c == _LT:  # the abandon rule: "<" outside quotes ends the tag
                self._abandoned = True
                return i
            if st <= _T_BAN:  # tag name, before attribute name
                st = _T_BAN if st == _T_TAGNAME or c == _SLASH else _T_NAME
            elif st in (_T_NAME, _T_AAN):
                if c == _EQ:
                    st = _T_BAV
                elif c == _SLASH:
                    st = _T_BAN
                else:
                    st = _T_AAN if st == _T_NAME else _T_NAME
            elif st == _T_BAV:
                st = _T_DQ if c == _DQUOTE else _T_SQ if c == _SQUOTE else _T_UNQ
            else:  # unquoted value ended by whitespace
                st = _T_BAN

    # --------------------------------------------------------------- events

    def _cut(self, buf: bytes, upto: int) -> None:
        if upto > self._mark:
            self._sink.append(buf[self._mark : upto])
            self._mark = upto

    def _on_tag(
        self, buf: bytes, kind: int, name: bytes, start: int, end: int, abandoned: bool
    ) -> None:
        """A tag ended at ``end``.

        ``start`` is its offset in ``buf`` when the whole tag is there, or -1
        when it spans chunks (then an <a>/<input> tag is in ``_keep``).  An
        abandoned tag (cut short by a "<") is left alone, except that a
        raw-text element still starts: skipping its content is the safe side.
        """
        if kind == _K_OTHER:
            return
        if kind in (_K_A, _K_INPUT):
            if start >= 0:
                tag = buf[start:end]
            else:
                self._keep.append(buf[self._mark : end])
                tag = b"".join(self._keep)
                self._keep = []
                self._keeping = False
                self._sink.append(tag)
                self._mark = end
            if abandoned or len(tag) > _MAX_TAG:
                return
            if kind == _K_A:
                new = self._rewrite_link(tag)
                if new is not None:
                    if start >= 0:
                        self._cut(buf, start)
                        self._mark = end
                    else:
                        self._sink.pop()
                    self._sink.append(new)
            elif self._holding:
                over = self._base + end > self._hold_limit
                if over or self._has_field(tag):
                    self._cut(buf, end)
                    self._release(over)
        elif kind == _K_FORM:
            if not abandoned:
                self._on_form_start(buf, end)
        elif kind == _K_ENDFORM:
            self._on_form_end(buf, end)
        elif kind == _K_SCRIPT:
            self._mode = _SCRIPT
        elif kind == _K_RAWTEXT:
            self._mode = _RAWTEXT
            self._raw_re = _end_tag_re(name)
            self._raw_tail = len(name) + 2
        else:
            self._mode = _PLAINTEXT

    def _on_form_start(self, buf: bytes, end: int) -> None:
        # A <form> inside an open form is ignored by the HTML parser (the form
        # element pointer is set until </form>), so it gets no field of its own.
        if self._in_form:
            return
        self._in_form = True
        self._cut(buf, end)
        self._holding = True
        self._sink = self._held
        self._hold_limit = self._base + end + self._max_hold

    def _on_form_end(self, buf: bytes, end: int) -> None:
        if self._holding:
            self._cut(buf, end)
            self._release(True)
        self._in_form = False

    def _release(self, inject: bool) -> None:
        """Stop holding the current form: send the field (if needed) and the held bytes."""
        out = self._out
        if inject:
            out.append(self._field_html)
        out.extend(self._held)
        self._held = []
        self._holding = False
        self._sink = out

    def _has_field(self, tag: bytes) -> bool:
        span = _find_attr(tag, b"name")
        return span is not None and _decode_attr(tag[span[0] : span[1]]) == self._field_name

    def _rewrite_link(self, tag: bytes) -> bytes | None:
        """The ``<a>`` tag with the click id added to its href, or None to keep it."""
        low = tag.lower()
        if not any(h in low for h in self._host_needles):
            return None
        span = _find_attr(tag, b"href")
        if span is None:
            return None
        url = self._decorate(_decode_attr(tag[span[0] : span[1]]))
        if url is None:
            return None
        return b"".join((tag[: span[0]], b'"', _encode_attr(url), b'"', tag[span[1] :]))

    def _decorate(self, url: str) -> str | None:
        """``url`` with the click-id parameter, or None if it is not ours to change."""
        core = url.strip(_URL_STRIP)  # browsers ignore leading/trailing C0 and spaces
        head = core[:8].lower()
        if not (head.startswith(("http://", "https://")) or core.startswith("//")):
            return None
        fast = None if _TAB_NL_RE.search(core) else _AUTHORITY_RE.match(core)
        if fast is not None:
            # The common case, without the cost of urlsplit (same answer: no
            # userinfo, IPv6, escapes, backslashes or tabs/newlines to undo).
            host = fast.group(1).partition(":")[0].lower()
            query = core[fast.end() :].partition("#")[0].partition("?")[2]
        else:
            try:
                parts = urlsplit(core)
            except ValueError:  # e.g. an unbalanced "[" in the host
                return None
            # Browsers read "\" as "/" in such URLs, so "//evil\@ours" goes to evil.
            if "\\" in parts.netloc:
                return None
            host = parts.hostname or ""
            query = parts.query
        if host.rstrip(".") not in self._hosts:
            return None
        param = self._link_param
        if (param in query or "%" in query) and any(
            key == param for key, _ in parse_qsl(query, keep_blank_values=True)
        ):
            return None
        # Splice instead of urlunsplit so every other character stays as it was.
        hash_at = core.find("#")
        base, frag = (core, "") if hash_at < 0 else (core[:hash_at], core[hash_at:])
        if "?" not in base:
            sep = "?"
        elif base.endswith(("?", "&")):
            sep = ""
        else:
            sep = "&"
        lead = url[: len(url) - len(url.lstrip(_URL_STRIP))]
        trail = url[len(url.rstrip(_URL_STRIP)) :]
        return lead + base + sep + self._link_suffix + frag + trail
