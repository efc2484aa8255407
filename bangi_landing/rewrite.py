"""Streaming HTML rewriting: hidden click-id field in forms, click id on tracker links.

The middleware sees a landing page as a stream of byte chunks in whatever
ASCII-compatible charset the app used.  It must add the click id without
decoding the page (the charset may be unknown or wrong), without buffering
whole responses (pages can be large, and streaming apps must keep streaming)
and without costing noticeable CPU.  So this is not a parser: it is a small
HTML *tokenizer* that only understands what decides where a ``<form>`` or
``<a>`` start tag can really occur (quoted attribute values, comments, CDATA,
and the raw-text elements such as ``<script>``), modelled on the WHATWG
tokenizer states so that what we rewrite is what a browser would see.

Speed comes from letting one compiled regular expression skip everything that
is not interesting (text, ordinary tags with their attributes, end tags,
doctypes) inside the C regex engine; Python code runs only at the few places
that matter.  A construct cut by a chunk boundary is finished by an explicit,
resumable state machine, so no byte is scanned twice however small the chunks
are and the work stays linear in the size of the page.
"""

from __future__ import annotations

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

_WS = rb"\t\n\f\r "

# The attribute part of a tag, exactly as the WHATWG tokenizer splits it: a
# quote only opens a value right after "=", names may contain quotes and may
# start with "=", an unquoted value ends at whitespace or ">".  Possessive
# quantifiers keep the engine from backtracking (no catastrophic cases), and
# because the grammar is unambiguous they never lose a valid parse.  Followed
# by ">", it fails exactly when the tag is incomplete (at the end of the data
# or inside a value whose closing quote has not arrived yet).
_ATTRS = (
    rb"(?:[\t\n\f\r /]++"
    rb"|[^\t\n\f\r />][^\t\n\f\r />=]*+"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"
    rb"(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'][^\t\n\f\r >]*+|(?=>))"
    rb"|(?![\t\n\f\r ]*+=)))*+"
)

# One attribute of a complete tag; group 1 is the name, group 2 the raw value
# (with its quotes), absent for a bare attribute.
_ATTR_RE = re.compile(
    rb"[\t\n\f\r /]*+([^\t\n\f\r />][^\t\n\f\r />=]*+)"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"
    rb"(\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'][^\t\n\f\r >]*+|(?=>)))?"
)

_TAGNAME_RE = re.compile(rb"[^\t\n\f\r />]*+")
_COMMENT_END_RE = re.compile(rb"--!?>")

# Elements whose content is not markup: a "<form>" inside them is text.
# script has its own (escaped) states; plaintext never ends.
_RAWTEXT_NAMES = (b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes")
_SCRIPT_NAME = b"script"
_PLAINTEXT_NAME = b"plaintext"
# The longest name we react to; a longer partial name cannot be interesting,
# which bounds what we keep while waiting for the rest of a tag name.
_MAX_NAME = 9
# Longest tag we keep in memory to rewrite (an <a>) or inspect (an <input>).
_MAX_TAG = 65536

# Modes of the tokenizer.
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

# States inside a tag (WHATWG names: tag name, before attribute name,
# attribute name, after attribute name, before attribute value, quoted and
# unquoted values).  "After quoted value" and "self-closing start tag" act
# exactly like "before attribute name" for finding the end, so they share it.
_T_TAGNAME = 0
_T_BAN = 1
_T_NAME = 2
_T_AAN = 3
_T_BAV = 4
_T_DQ = 5
_T_SQ = 6
_T_UNQ = 7

_RUNS: tuple[Callable[[bytes, int], re.Match[bytes] | None], ...] = tuple(
    re.compile(p).match
    for p in (
        rb"[^\t\n\f\r />]*+",
        rb"[\t\n\f\r /]*+",
        rb"[^\t\n\f\r />=]*+",
        rb"[\t\n\f\r ]*+",
        rb"[\t\n\f\r ]*+",
        rb"[^\"]*+",
        rb"[^']*+",
        rb"[^\t\n\f\r >]*+",
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

_GT = 0x3E
_EQ = 0x3D
_SLASH = 0x2F
_DQUOTE = 0x22
_SQUOTE = 0x27
_BANG = 0x21
_QMARK = 0x3F


def _is_alpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


@cache
def _main_re(links: bool, inputs: bool) -> re.Pattern[bytes]:
    """The data-state scanner: skip the uninteresting, stop at what matters.

    ``match`` consumes text, ordinary start and end tags (attributes
    included, so a "<form>" inside a quoted value is never seen), doctypes
    and bogus comments, then optionally one interesting construct: a complete
    start tag we care about (group ``S``, name in ``N``), a complete
    ``</form>`` (``E``), a comment opener (``C``) or a CDATA opener (``D``).
    When the match ends before the data does without one of those, an
    incomplete construct starts there.  Only four variants exist (with or
    without ``<a>`` and ``<input>``), so they are compiled once per process.
    """
    names = [b"form", _SCRIPT_NAME, *_RAWTEXT_NAMES, _PLAINTEXT_NAME]
    if links:
        names.append(b"a")
    if inputs:
        names.append(b"input")
    alt = b"|".join(names)
    skip = (
        rb"(?:[^<]++"
        rb"|<(?=[^a-zA-Z!/?])"
        rb"|<(?!(?i:" + alt + rb")[\t\n\f\r />])[a-zA-Z][^\t\n\f\r />]*+" + _ATTRS + rb">"
        rb"|</(?!(?i:form)[\t\n\f\r />])[a-zA-Z][^\t\n\f\r />]*+" + _ATTRS + rb">"
        rb"|</>"
        rb"|</(?=[^a-zA-Z>])[^>]*+>"
        rb"|<!(?!--|\[CDATA\[)[^>]*+>"
        rb"|<\?[^>]*+>"
        rb")*+"
    )
    interesting = (
        rb"(?:(?P<S><(?P<N>(?i:" + alt + rb"))(?=[\t\n\f\r />])" + _ATTRS + rb">)"
        rb"|(?P<E></(?i:form)(?=[\t\n\f\r />])" + _ATTRS + rb">)"
        rb"|(?P<C><!--)"
        rb"|(?P<D><!\[CDATA\[))?"
    )
    return re.compile(skip + interesting)


@cache
def _end_tag_re(name: bytes) -> re.Pattern[bytes]:
    """Finds the end tag that closes a raw-text element (case-insensitive)."""
    return re.compile(rb"</(?i:" + re.escape(name) + rb")[\t\n\f\r />]")


_SCRIPT_RE = re.compile(rb"(<!--)|</(?i:script)[\t\n\f\r />]")
_SCRIPT_ESC_RE = re.compile(rb"(-->)|(</(?i:script)[\t\n\f\r />])|<(?i:script)[\t\n\f\r />]")
_SCRIPT_DESC_RE = re.compile(rb"(-->)|</(?i:script)[\t\n\f\r />]")

# --------------------------------------------------------------------------
# Attribute values and URLs
# --------------------------------------------------------------------------

_CHARREF_RE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
_NON_ASCII_RE = re.compile("[^\x00-\x7f\udc80-\udcff]")
_URL_STRIP = "".join(chr(i) for i in range(0x21))


def _charref(m: re.Match[str]) -> str:
    # html.unescape, except for the attribute-value rule of the HTML standard:
    # a named reference without ";" followed by "=" or an alphanumeric stays
    # literal ("?a=1&copy=2" keeps its "&copy").  Plain unescape would turn a
    # perfectly working query parameter into "(c)=2" and break the link.
    ref = m.group(1)
    if ref[0] == "#":
        return html.unescape(m.group(0))
    if ref in _HTML5_ENTITIES:
        return _HTML5_ENTITIES[ref]
    for x in range(len(ref) - 1, 1, -1):
        if ref[:x] in _HTML5_ENTITIES:
            if ref[x] == "=" or (ref[x].isascii() and ref[x].isalnum()):
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
        try:
            result.add(h.encode("idna").decode("ascii"))
        except UnicodeError:
            pass
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
    """

    __slots__ = (
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
        "_kinds_free",
        "_kinds_hold",
        "_link_param",
        "_link_suffix",
        "_mark",
        "_max_hold",
        "_mode",
        "_out",
        "_pending",
        "_raw_re",
        "_raw_tail",
        "_re_free",
        "_re_hold",
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
        # Cheap pre-check: a tag with no "&" (no character reference) can only
        # point to one of our hosts if it contains the host's name.
        self._host_needles = tuple(h.encode("ascii") for h in self._hosts if h.isascii())
        self._link_param = link_param
        self._link_suffix = quote(link_param, safe="") + "=" + quote(click_id, safe="")
        self._max_hold = max_hold
        links = bool(self._hosts)
        self._re_free = _main_re(links, False)
        self._re_hold = _main_re(links, True)
        kinds: dict[bytes, int] = {b"form": _K_FORM, _SCRIPT_NAME: _K_SCRIPT}
        kinds.update(dict.fromkeys(_RAWTEXT_NAMES, _K_RAWTEXT))
        kinds[_PLAINTEXT_NAME] = _K_PLAINTEXT
        if links:
            kinds[b"a"] = _K_A
        self._kinds_free = kinds
        self._kinds_hold = {**kinds, b"input": _K_INPUT}
        self._reset()

    def _reset(self) -> None:
        self._mode = _DATA
        self._tstate = _T_TAGNAME
        self._tkind = _K_OTHER
        self._tname = b""
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

        Returns less than was fed only while a form is held back or when the
        chunk ends inside a construct whose meaning depends on the next bytes.
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
        """Scan ``buf`` from the start, handing scanned bytes to the sink.

        On return everything from ``stop`` on is kept as ``_pending`` for the
        next call; it is never more than a handful of bytes (a partial
        "<!--", end tag or tag name), so rescanning it costs nothing.
        """
        n = len(buf)
        pos = 0
        stop = n
        self._mark = 0
        while True:
            mode = self._mode
            if mode == _DATA:
                m = (self._re_hold if self._holding else self._re_free).match(buf, pos)
                assert m is not None  # the pattern can match the empty string
                group = m.lastgroup
                if group is None:
                    pos = m.end()
                    if pos >= n:
                        break
                    nxt = self._open(buf, pos, final)
                    if nxt < 0:
                        stop = pos
                        break
                    pos = nxt
                    continue
                start = m.start(group)
                pos = m.end()
                if group == "S":
                    name = m.group("N").lower()
                    kinds = self._kinds_hold if self._holding else self._kinds_free
                    self._on_tag(buf, kinds[name], name, start, pos)
                elif group == "E":
                    self._on_form_end(buf, pos)
                elif group == "C":
                    self._mode = _COMMENT
                    self._comment_start = True
                else:
                    self._mode = _CDATA
            elif mode == _TAG:
                end = self._scan_tag(buf, pos)
                if end < 0:
                    break
                pos = end
                self._mode = _DATA
                self._on_tag(buf, self._tkind, self._tname, -1, end)
            elif mode == _COMMENT:
                if self._comment_start:
                    # "<!-->" and "<!--->" are complete (empty) comments.
                    if pos >= n:
                        break
                    if buf[pos] == _GT:
                        pos += 1
                        self._mode = _DATA
                        continue
                    if buf[pos] == 0x2D:  # "-"
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
                pos = rm.start()  # the end tag itself is skipped in data mode
                self._mode = _DATA
            elif mode == _SCRIPT:
                rm = _SCRIPT_RE.search(buf, pos)
                if rm is None:
                    stop = n if final else max(pos, n - 8)
                    break
                if rm.group(1) is not None:
                    # "<!--" enters the escaped state; its "--" may already be
                    # the start of the "-->" that leaves it ("<!-->").
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
        elif rest:
            self._sink.append(rest)
        self._mark = stop
        self._pending = buf[stop:]
        self._base += stop
        if self._holding and self._base > self._hold_limit:
            self._release(True)

    def _open(self, buf: bytes, p: int, final: bool) -> int:
        """Start an incomplete construct at ``buf[p] == "<"``.

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
            self._mode = _BOGUS
            return q
        if _is_alpha(c):
            return self._open_tag(buf, p, q, False, final)
        if c == _BANG:
            head = buf[p : p + 9]
            if b"<!--".startswith(head) or b"<![CDATA[".startswith(head):
                return wait
            self._mode = _BOGUS
            return p + 2
        if c == _QMARK:
            self._mode = _BOGUS
            return q
        return q  # a "<" that is just text (the scanner already skips those)

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
            else:
                kinds = self._kinds_hold if self._holding else self._kinds_free
                kind = kinds.get(name, _K_OTHER)
        self._mode = _TAG
        self._tstate = _T_TAGNAME
        self._tkind = kind
        self._tname = name
        if kind == _K_A or kind == _K_INPUT:
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
            if st <= _T_BAN:  # tag name, before attribute name
                if c == _GT:
                    return pos
                st = _T_BAN if st == _T_TAGNAME else _T_NAME
            elif st == _T_NAME or st == _T_AAN:
                if c == _GT:
                    return pos
                if c == _EQ:
                    st = _T_BAV
                elif c == _SLASH:
                    st = _T_BAN
                else:
                    st = _T_AAN if st == _T_NAME else _T_NAME
            elif st == _T_BAV:
                if c == _GT:
                    return pos
                st = _T_DQ if c == _DQUOTE else _T_SQ if c == _SQUOTE else _T_UNQ
            elif st == _T_UNQ:
                if c == _GT:
                    return pos
                st = _T_BAN
            else:  # closing quote
                st = _T_BAN

    # --------------------------------------------------------------- events

    def _cut(self, buf: bytes, upto: int) -> None:
        if upto > self._mark:
            self._sink.append(buf[self._mark : upto])
            self._mark = upto

    def _on_tag(self, buf: bytes, kind: int, name: bytes, start: int, end: int) -> None:
        """A start tag (or ``</form>``) ended at ``end``.

        ``start`` is its offset in ``buf`` when the whole tag is there, or -1
        when it spans chunks (then an <a>/<input> tag is in ``_keep``).
        """
        if kind == _K_OTHER:
            return
        if kind == _K_A or kind == _K_INPUT:
            if start >= 0:
                tag = buf[start:end]
            else:
                self._keep.append(buf[self._mark : end])
                tag = b"".join(self._keep)
                self._keep = []
                self._keeping = False
                self._sink.append(tag)
                self._mark = end
            if kind == _K_A:
                new = self._rewrite_link(tag) if len(tag) <= _MAX_TAG else None
                if new is not None:
                    if start >= 0:
                        self._cut(buf, start)
                        self._mark = end
                    else:
                        self._sink.pop()
                    self._sink.append(new)
            elif self._holding:
                over = self._base + end > self._hold_limit
                if over or (len(tag) <= _MAX_TAG and self._has_field(tag)):
                    self._cut(buf, end)
                    self._release(over)
        elif kind == _K_FORM:
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
        if b"&" not in tag and self._host_needles:
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
        try:
            parts = urlsplit(core)
        except ValueError:  # e.g. an unbalanced "[" in the host
            return None
        # Browsers read "\" as "/" in such URLs, so "//evil\@ours" goes to evil.
        if "\\" in parts.netloc:
            return None
        host = parts.hostname
        if host is None or host.rstrip(".") not in self._hosts:
            return None
        param = self._link_param
        if any(key == param for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
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
