"""Streaming HTML rewriting: hidden click-id field in forms, click id on tracker links.

The middleware sees a landing page as a stream of byte chunks in whatever
ASCII-compatible charset the app used.  It must add the click id without
decoding the page (the charset may be unknown or wrong), without buffering
whole responses (pages can be large, and streaming apps must keep streaming)
and without costing noticeable CPU.  So this is not a parser: it is the WHATWG
HTML *tokenizer*, reduced to what decides whether a ``<form>`` or ``<a>`` tag
is real markup (tags and their quoted attribute values, comments, CDATA, the
raw-text elements such as ``<script>``), plus the few decisions of the tree
builder that say whether a form is an HTML form and whether a field may go
after it (see "Tree" below).

Speed.  Touching every tag, even inside the C regex engine, costs about four
times the time budget, so in ordinary HTML the scanner never does.  One
compiled regex, run on a lower-cased copy of the chunk, jumps straight to the
few *candidates* (``<form``, ``</form``, the form controls, ``<svg``,
``<math``, ``<select``, ``<script`` and the other raw-text elements,
``<!--``); tracker links are found with ``bytes.find`` on the host names.
Whether a candidate is real is then decided by looking back a little, which
is exact thanks to two facts:

* A tag or a bogus comment (``<!x``, ``<?x``, ``</3``, a doctype, and
  ``<![CDATA[`` outside foreign content) ends at the first ">" that is not in
  a quoted attribute value, and nothing else in it ends it: a "<" there is
  just a character (``<i<form>`` is one tag named "i<form", ``</s<form>``
  one end tag, ``<font id=<form>`` one tag with the value "<form").  So right
  after a ">" that is not in a quoted value the tokenizer is in the data
  state, and the first "<" after it that opens something (followed by a
  letter, "!", "/" or "?") is real: a candidate is real exactly when no such
  "<" lies between it and the last ">" before it.
* That ">" is in a quoted value only if the last quote of its kind before it
  opened the value, so follows "=" (plus optional whitespace).  When no quote
  looks like that (nearly always), the check above is all; when one does,
  the bytes since the last known data position are tokenized exactly by a
  full-grammar regex (rare, and still linear).

Tree.  A ``<form>`` start tag makes an HTML form, and an ``<input>`` after it
is a void HTML element, only where the tree builder says so.  The rewriter
follows the rules that decide it:

* Foreign content.  Inside ``<svg>`` and ``<math>`` tags make SVG and MathML
  elements: a ``<form>`` there is no form, no element is raw text, and
  ``<![CDATA[`` starts a CDATA section ended by ``]]>``.  So the rewriter
  keeps a stack of the open foreign elements, and of the HTML elements opened
  in their *integration points* (svg ``foreignObject``, ``desc`` and
  ``title``, MathML ``annotation-xml`` with an HTML encoding, where start tags
  are HTML again, and MathML ``mi``, ``mo``, ``mn``, ``ms`` and ``mtext``,
  where they are but for ``mglyph`` and ``malignmark``).  End tags pop it as
  the tree builder does; the "breakout" start tags (``<p>``, ``<div>``,
  ``<b>``... and ``<font>`` with color, face or size) and ``</p>`` and
  ``</br>`` leave foreign content, as in browsers.  Only while the stack is
  not empty is every tag looked at, and inline SVG has few tags.
* Select.  Inside ``<select>`` a ``<form>`` is ignored (since Chrome 135:
  kept inside the select) and an ``<input>`` closes the select: no field is
  added there, and ``</form>`` changes nothing there (as in html5lib and
  Firefox).  The select ends where every browser ends it: ``</select>``,
  ``<select>``, ``<input>``.  Where markup forgot ``</select>``, older
  parsers also end it at ``<textarea>``, ``<keygen>`` and, in a table, the
  table tags; the forms after that get no field rather than one that would
  close a select in Chrome.
* The form element pointer: a ``<form>`` inside an open form is ignored.

When in doubt, ordinary HTML is the safe side, and the rewriter takes it.
Taking foreign content for HTML could miss every later form and read scripts
as markup; taking HTML for foreign content only gives a field to a form that
is no form, and written self-closing (``<input ... />``) the field is then an
inert element that swallows nothing (a foreign element is no form control).
So an end tag that matches no open foreign element is taken to close an HTML
element of its name, which a browser does if one is open around the SVG (the
rewriter does not keep the whole tree to know): that leaves foreign content.
So does a stack deeper than 512 elements, and a foreign start tag too long
to look at (64 KiB) is taken as self-closing.  After such a guess, and until
the next breakout tag (which would take a browser out of foreign content
too), every tag is looked at and ``<![CDATA[`` is skipped to ``]]>``, which
is safe either way.  Inside integration points, the HTML elements are
followed by their end tags and by the start tags that close them most often
(a block closes a ``<p>``); an element closed otherwise keeps the rewriter
in HTML until the end of the SVG.

One change the field can still make: after markup that left a formatting
element (``<b>``, ``<font>``...) open across the end of a block, an
``<input>`` re-opens it ("reconstructs the active formatting elements") in
the form, around what follows.  Browsers do the same at the next text or
inline element, which on nearly every page is the whitespace after
``<form ...>``; the tree only differs when a block element follows the start
tag directly.  Knowing would take the whole tree builder.

A construct cut by a chunk boundary is finished by a resumable state machine,
so no byte is scanned twice however small the chunks are: the cost is linear
in the size of the page.  Every decision depends on the bytes only, never on
where the chunks were cut, so the output does not depend on the chunking.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from functools import cache
from html.entities import html5 as _HTML5_ENTITIES
from urllib.parse import parse_qsl, quote, urlsplit

__all__ = ["HtmlRewriter"]

# --------------------------------------------------------------------------
# Tokenizer grammar (bytes).  HTML whitespace is TAB, LF, FF, CR and SPACE.
# --------------------------------------------------------------------------

# The attribute part of a tag as the WHATWG tokenizer splits it: a quote only
# opens a value right after "=", a name may contain quotes and "<" and start
# with "=", an unquoted value ends at whitespace or ">" and may contain "<".
# Possessive quantifiers mean no backtracking, and since the grammar is
# unambiguous they never lose a valid parse.  Followed by ">", it fails
# exactly when the tag is incomplete: the data ends, or a quoted value has
# not been closed yet.
_ATTRS = (
    rb"(?:[\t\n\f\r /]++"
    rb"|[^\t\n\f\r />][^\t\n\f\r />=]*+"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"
    rb"(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'][^\t\n\f\r >]*+|(?=>))"
    rb"|(?![\t\n\f\r ]*+=)))*+"
)
_TAG_REST_RE = re.compile(_ATTRS + rb">")

# Everything up to a position, tokenized exactly (used with endpos when the
# fast check is not sure): text, tags, end tags and bogus comments.  Comments
# and CDATA sections never occur there (they are candidates, handled before).
_TOKENS_RE = re.compile(
    rb"(?:[^<]++"
    rb"|<(?=[^a-zA-Z!/?])"
    rb"|</?[a-zA-Z][^\t\n\f\r />]*+" + _ATTRS + rb">"
    rb"|</>"
    rb"|<(?:!(?!--)|\?|/(?=[^a-zA-Z>]))[^>]*+>"
    rb")*+"
)

# One attribute of a complete tag; group 1 is the name, group 2 the raw value
# (with its quotes), None for a bare attribute.
_ATTR_RE = re.compile(
    rb"[\t\n\f\r /]*+([^\t\n\f\r />][^\t\n\f\r />=]*+)"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+"
    rb"(\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'][^\t\n\f\r >]*+|(?=>)))?"
)

_TAGNAME_RE = re.compile(rb"[^\t\n\f\r />]*+")
_COMMENT_END_RE = re.compile(rb"--!?>")

# A longer tag name is taken as unknown (b""): no element we react to has
# one, and it bounds what waits for the next chunk.
_MAX_NAME = 64
# Longest tag kept in memory to rewrite (an <a>) or inspect (its attributes).
_MAX_TAG = 65536
# Deepest stack of elements followed in and around foreign content.
_MAX_DEPTH = 512
# Most ids of forms named by an earlier control's form="..." attribute.
_MAX_IDS = 256

# --------------------------------------------------------------------------
# Element names (lowercase, as the tokenizer makes them)
# --------------------------------------------------------------------------

# Namespaces of the elements on the stack.
_HTML = 0
_SVG = 1
_MATH = 2

# Elements whose content is not markup, so a "<form>" in them is text.
# script has its own escaped states; plaintext never ends.
_RAWTEXT_NAMES = frozenset(
    (b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes")
)
# Form controls: one named like the field means the form has it already.
_CONTROLS = frozenset((b"input", b"select", b"textarea", b"button"))
_FOREIGN_ROOTS = {b"svg": _SVG, b"math": _MATH}  # name -> namespace
# Start tags whose attributes matter in ordinary HTML.
_INSPECTED = frozenset((b"form", *_CONTROLS, *_FOREIGN_ROOTS))
# In foreign content these start tags pop back out to HTML ("any other start
# tag" in the tree builder's rules for foreign content); so does <font> with
# a color, face or size attribute.
_BREAKOUT = frozenset(
    b"b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i"
    b" img li listing menu meta nobr ol p pre ruby s small span strong strike sub sup table"
    b" tt u ul var".split()
)
_FONT_BREAKOUT = frozenset((b"color", b"face", b"size"))
# Their end tags close the stack of elements up to the cell or table,
# wherever foreign content is.
_TABLE = frozenset((b"caption", b"table", b"tbody", b"tfoot", b"thead", b"tr", b"td", b"th"))
# HTML elements that are never on the stack of open elements after their
# start tag: void elements, and those whose start tag only changes the
# document's own html, head or body element.
_NOT_OPENED = frozenset(
    b"area base basefont bgsound br col embed frame hr image img input keygen link meta param"
    b" source track wbr html head body frameset".split()
)
# What the tree builder needs to close HTML elements (followed only inside
# integration points): the "special" elements, which stop an end tag that
# names an element above them, the boundaries of the element scopes, and the
# start tags that close an open <p>.
_SPECIAL = frozenset(
    b"address applet area article aside base basefont bgsound blockquote body br button caption"
    b" center col colgroup dd details dir div dl dt embed fieldset figcaption figure footer form"
    b" frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html iframe img input keygen li"
    b" link listing main marquee menu meta nav noembed noframes noscript object ol p param"
    b" plaintext pre script search section select source style summary table tbody td template"
    b" textarea tfoot th thead title tr track ul wbr xmp".split()
)
_SCOPE = frozenset(b"applet caption html table td th marquee object template".split())
_HEADINGS = frozenset((b"h1", b"h2", b"h3", b"h4", b"h5", b"h6"))
# End tags that close their element when it is in scope, whatever is above it.
_SCOPED_END = frozenset(
    b"address applet article aside blockquote button center dd details dialog dir div dl dt"
    b" fieldset figcaption figure footer header hgroup listing main marquee menu nav object ol"
    b" pre search section summary ul".split()
)
_CLOSES_P = frozenset(
    b"address article aside blockquote center details dialog dir div dl fieldset figcaption"
    b" figure footer header hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5"
    b" h6 pre listing form plaintext table hr xmp li dd dt".split()
)
_SVG_HTML_POINTS = frozenset((b"foreignobject", b"desc", b"title"))
_MATH_TEXT_POINTS = frozenset((b"mi", b"mo", b"mn", b"ms", b"mtext"))
_HTML_ENCODINGS = ("text/html", "application/xhtml+xml")

_DELIM = rb"(?=[\t\n\f\r />])"


def _candidates_re(names: Iterable[bytes]) -> re.Pattern[bytes]:
    """Finds, in the lower-cased buffer, every tag with one of ``names``, and "<!--".

    Alternatives are grouped by their first letter: the regex engine then
    rejects most "<" after a single comparison, which is what makes the scan
    fast (a flat alternation or IGNORECASE is two to three times slower).
    """
    groups: dict[bytes, list[bytes]] = {}
    for name in sorted(set(names)):
        groups.setdefault(name[:1], []).append(re.escape(name[1:]) + _DELIM)
    alts = [re.escape(first) + b"(?:" + b"|".join(rest) + b")" for first, rest in groups.items()]
    alts.append(b"!--")
    return re.compile(b"<(?:" + b"|".join(alts) + b")")


# Ordinary HTML: forms, their controls, foreign content and raw text.
_CANDIDATES_HTML = _candidates_re(
    [b"form", b"/form", b"script", b"plaintext", *_RAWTEXT_NAMES, *_INSPECTED]
)
# Inside a select: what ends it, form controls, raw text.
_CANDIDATES_SELECT = _candidates_re(
    [b"select", b"/select", b"input", b"script", b"plaintext", *_RAWTEXT_NAMES]
)
# In and around foreign content: every tag, and CDATA sections.
_CANDIDATES_NESTED = re.compile(rb"<(?:/?[a-z]|!--|!\[cdata\[)")


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

# What an element on the stack makes of the start tags inside it.
_R_FOREIGN = 0  # a foreign element: they are foreign too
_R_HTML_POINT = 1  # an HTML integration point: they are HTML
_R_TEXT_POINT = 2  # a MathML text integration point: HTML but for mglyph, malignmark
_R_ANNOTATION = 3  # annotation-xml without an HTML encoding: <svg> is HTML there
_R_HTML = 4  # an HTML element (inside an integration point): they are HTML

Entry = tuple[int, int, bytes]  # (role, namespace, name) of an open element

_SLASH = 0x2F
_GT = 0x3E
_EQ = 0x3D
_DQUOTE = 0x22
_SQUOTE = 0x27
_BANG = 0x21
_QMARK = 0x3F
_DASH = 0x2D
_WS_BYTES = frozenset(b"\t\n\f\r ")
_OPENER_BYTES = frozenset(b"!/?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_UTF16_BOMS = (b"\xfe\xff", b"\xff\xfe")


def _is_alpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _first_opener(buf: bytes, lo: int, hi: int) -> int:
    """Offset of the first "<" in ``buf[lo:hi]`` that can start a construct, or -1.

    A "<" as the very last byte of ``buf`` counts (its meaning is not known yet).
    """
    n = len(buf)
    i = lo
    while (i := buf.find(b"<", i, hi)) >= 0:
        if i + 1 >= n or buf[i + 1] in _OPENER_BYTES:
            return i
        i += 1
    return -1


def _may_be_quoted(buf: bytes, lo: int, x: int) -> bool:
    """False when ``x`` is certainly not inside a quoted attribute value.

    ``lo`` must be a position in the data state.  If ``x`` is inside a quoted
    value, that value's opening quote is the last quote of its kind before
    ``x`` and follows "=" and optional whitespace.  Usually the last quote
    before a ">" closes the value before it, so this cheap test settles it.
    """
    ws = _WS_BYTES
    for q in (buf.rfind(b'"', lo, x), buf.rfind(b"'", lo, x)):
        j = q - 1
        while j >= lo and buf[j] in ws:
            j -= 1
        if j >= lo and buf[j] == _EQ:
            return True
    return False


def _container(buf: bytes, lo: int, x: int) -> int:
    """Offset of the construct (tag or bogus comment) still open at ``x``, or -1.

    ``lo`` is a position in the data state with no comment, CDATA section or
    raw-text element between it and ``x``.  Then every construct there ends
    at the first ">" outside quoted values, so right after the last ">" before
    ``x`` the tokenizer is in the data state, unless that ">" is in a quoted
    value; and the first "<" after it that opens something is still open at
    ``x``.  When a quote might be open, the bytes are tokenized exactly instead.
    """
    g = buf.rfind(b">", lo, x)
    if g < 0 or not _may_be_quoted(buf, lo, g):
        return _first_opener(buf, max(lo, g + 1), x)
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


def _attributes(tag: bytes) -> Iterator[re.Match[bytes]]:
    """The attributes of a complete start tag, in order, duplicates included."""
    tname = _TAGNAME_RE.match(tag, 1)
    assert tname is not None
    pos = tname.end()
    match = _ATTR_RE.match
    while (m := match(tag, pos)) is not None:
        yield m
        pos = m.end()


def _attr(tag: bytes, want: bytes) -> re.Match[bytes] | None:
    """The first attribute named ``want``, as browsers drop later duplicates; or None."""
    for m in _attributes(tag):
        if m.group(1).lower() == want:
            return m
    return None


def _find_attr(tag: bytes, want: bytes) -> tuple[int, int] | None:
    """Span of the raw value of the first attribute named ``want`` in a complete tag.

    None when the attribute is absent or has no value.
    """
    m = _attr(tag, want)
    return None if m is None or m.group(2) is None else m.span(2)


def _attr_text(tag: bytes, want: bytes) -> str | None:
    """The value a browser sees for attribute ``want``: None when absent, "" when bare."""
    m = _attr(tag, want)
    if m is None:
        return None
    raw = m.group(2)
    return "" if raw is None else _decode_attr(raw)


def _self_closing(tag: bytes) -> bool:
    """Whether a complete start tag has the self-closing flag (``<svg/>``, ``<path d=x />``).

    It ends with "/>", and that "/" does not end an unquoted value: in
    ``<path d=x/>`` the value is "x/".
    """
    if not tag.endswith(b"/>"):
        return False
    last = None
    for last in _attributes(tag):  # noqa: B007 (only the last one matters)
        pass
    return last is None or last.end() < len(tag) - 1


def _foreign_role(ns: int, name: bytes, tag: bytes) -> int:
    """What a foreign element makes of the start tags inside it (see the ``_R_`` constants)."""
    if ns == _SVG:
        return _R_HTML_POINT if name in _SVG_HTML_POINTS else _R_FOREIGN
    if name in _MATH_TEXT_POINTS:
        return _R_TEXT_POINT
    if name == b"annotation-xml":
        encoding = _attr_text(tag, b"encoding") or ""
        # An ASCII case-insensitive match: str.lower() alone maps some
        # non-ASCII letters to ASCII ones.
        if encoding.isascii() and encoding.lower() in _HTML_ENCODINGS:
            return _R_HTML_POINT
        return _R_ANNOTATION
    return _R_FOREIGN


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

    * After every ``<form ...>`` start tag that makes an HTML form, insert
      ``<input type="hidden" name="FIELD" value="CLICK_ID" />``, unless the
      form already has a control of that name (a second one would make the
      submit carry FIELD twice): an ``<input>``, ``<select>``, ``<textarea>``
      or ``<button>`` inside it (and not given to another form by a ``form``
      attribute), or one before it whose ``form`` attribute names the form's
      id.  Forms in foreign content (SVG, MathML) and inside a ``<select>``
      get no field: they are no HTML forms, or an ``<input>`` there would
      close the select.

      How the controls are seen, streaming and in linear time: the ones
      before the form leave the id they name in a set (up to 256 ids); for
      the ones inside, the form's bytes are held back from its start tag
      until ``</form>``, the field, or ``max_hold`` bytes, after which the
      field is inserted anyway and streaming resumes.  (A pre-scan of the
      page would see every control, but means holding the whole page back.)
      So a control after ``</form>`` comes too late: one that names the form
      with ``form="ID"``, or one that is still inside the form element
      because markup left an element open in it.  That form gets the field
      too.
    * When ``link_hosts`` is given, add ``LINK_PARAM=CLICK_ID`` to the query of
      every absolute ``<a href>`` pointing to one of those hosts, unless the
      parameter is already there.

    A body that starts with a UTF-16 byte order mark is passed through
    unchanged: browsers decode it as UTF-16 whatever the charset header says.

    Concatenating what ``feed`` returns for every chunk and then what
    ``finish`` returns gives the same bytes however the body was chunked, and
    exactly the input when there is nothing to change.  After ``finish`` the
    object is reset and can rewrite another body.

    Memory: a held form costs at most ``max_hold`` bytes plus one chunk, an
    incomplete tag whose attributes matter at most 64 KiB (longer ones are
    passed through unchanged), the stack of elements in and around foreign
    content at most 512 entries; anything else still undecided at a chunk
    boundary is a few bytes, however long the tag, comment or script it
    belongs to.
    """

    __slots__ = (
        "_base",
        "_comment_start",
        "_field_html",
        "_field_ids",
        "_field_name",
        "_field_needle",
        "_form_tag",
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
        "_maybe_foreign",
        "_mode",
        "_out",
        "_pending",
        "_raw_re",
        "_raw_tail",
        "_select",
        "_sink",
        "_stack",
        "_tend",
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
        self._field_needle = field_name.encode("utf-8")
        # Escaped although a click id is a UUID: the value is caller-supplied
        # and ends up in markup.  Non-ASCII becomes character references so
        # the bytes are right in any ASCII-compatible charset.  Self-closing:
        # the same void element in HTML, and if it lands in foreign content
        # anyway it closes itself instead of swallowing what follows (XHTML
        # needs it too).
        self._field_html = (
            f'<input type="hidden" name="{html.escape(field_name)}"'
            f' value="{html.escape(click_id)}" />'
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
        self._tname = b""  # the current tag's lowercase name (b"": too long to matter)
        self._tend = False  # ... and whether it is an end tag
        self._comment_start = False
        self._raw_re = _SCRIPT_RE
        self._raw_tail = 0
        self._pending = b""  # unscanned tail: at most a few bytes of an undecided construct
        self._out: list[bytes] = []
        self._held: list[bytes] = []
        self._sink = self._out  # where scanned bytes go: _out, or _held while holding a form
        self._holding = False
        self._hold_limit = 0
        self._in_form = False  # the parser's form element pointer is set
        self._form_tag: bytes | None = None  # the current form's start tag (None: too long)
        self._field_ids: set[str] = set()  # form ids named by an earlier control with the field
        # Open elements in and around foreign content, innermost last; empty
        # in ordinary HTML.
        self._stack: list[Entry] = []
        self._select = False  # inside a <select>
        # Foreign content was left on a guess (see _end_tag): a browser may
        # still be in it until a breakout tag, which would take it out too.
        self._maybe_foreign = False
        self._base = 0  # stream offset of the current buffer's first byte
        self._mark = 0  # first byte of the current buffer not yet given to the sink
        self._keeping = False  # bytes of the current tag go to _keep (their attributes matter)
        self._keep: list[bytes] = []
        self._keep_size = 0

    # ------------------------------------------------------------------ API

    def feed(self, chunk: bytes) -> bytes:
        """Scan the next chunk; return the bytes that can be sent now (maybe ``b""``).

        Returns less than was fed only while a form is held back, while a tag
        whose attributes matter is incomplete, or when the chunk ends with a
        few bytes whose meaning depends on the next ones.
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
        if self._base == 0 and self._mode == _DATA:
            if buf[:2] in _UTF16_BOMS:
                self._mode = _PLAINTEXT  # UTF-16: no byte of it is markup to us
            elif n < 2 and buf[:1] in (b"\xfe", b"\xff") and not final:
                self._pending = buf  # half a byte order mark, maybe
                return
        pos = 0
        stop = n
        self._mark = 0
        low = b""
        host_next: list[int] = []  # per host name: next offset, -1 none, -2 not searched
        host = -1
        # The last candidate search, reused while still ahead and made with
        # the candidates of the current state (a link rewrite or a skipped
        # tag must not make us scan the same bytes again).
        m: re.Match[bytes] | None = None
        m_by: re.Pattern[bytes] | None = None
        while True:
            mode = self._mode
            if mode == _DATA:
                if not low:
                    low = buf.lower()  # same offsets; lets the scan ignore case cheaply
                    host_next = [-2] * len(self._host_needles) if self._hosts else []
                candidates = self._candidates()
                if m_by is not candidates or (m is not None and m.start() < pos):
                    m = candidates.search(low, pos)
                    m_by = candidates
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
                        nxt = self._on_host(buf, pos, host, final)
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
                p = _container(buf, pos, cand)
                if p >= 0:
                    # Not real: the candidate is inside the construct starting at p.
                    nxt = self._open(buf, p, final)
                    if nxt < 0:
                        stop = p
                        break
                    pos = nxt
                    continue
                pos = self._on_candidate(buf, low, cand, final)
                if pos < 0:
                    stop = cand
                    break
            elif mode == _TAG:
                end = self._scan_tag(buf, pos)
                if end < 0:
                    break
                pos = end
                self._mode = _DATA
                self._on_tag(buf, self._tname, self._tend, -1, end)
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
        elif rest:
            self._sink.append(rest)
        self._mark = stop
        self._pending = buf[stop:]
        self._base += stop
        # Any tag still to come ends after this point, so past the limit no
        # field can count any more: stop holding.
        if self._holding and self._base >= self._hold_limit:
            self._release(True)

    def _candidates(self) -> re.Pattern[bytes]:
        """The regex that finds every tag that matters where the scanner is now."""
        if self._maybe_foreign or (self._stack and not self._select):
            return _CANDIDATES_NESTED
        return _CANDIDATES_SELECT if self._select else _CANDIDATES_HTML

    def _cdata_section(self) -> bool:
        """Whether "<![CDATA[" starts a CDATA section here, not a bogus comment.

        It does when the current node is a foreign element; when a browser may
        still be in foreign content, taking it as one skips more, the safe side.
        """
        if self._maybe_foreign:
            return True
        return bool(self._stack) and not self._select and self._stack[-1][0] != _R_HTML

    def _at_end(self, buf: bytes, pos: int, final: bool) -> int:
        """No candidate in ``buf[pos:]``: settle the state at the end of the buffer.

        Only the last construct can still be open.  Returns where to go on
        scanning (after switching mode), -1 when the rest is plain data, or
        ``-2 - offset`` when the bytes from ``offset`` must wait for more data.
        """
        o = _container(buf, pos, len(buf))
        if o < 0:
            return -1
        nxt = self._open(buf, o, final)
        return -2 - o if nxt < 0 else nxt

    def _on_host(self, buf: bytes, pos: int, host: int, final: bool) -> int:
        """A tracker host name occurs at ``host``: rewrite the ``<a>`` tag around it, if any.

        Returns where to go on scanning, or ``-2 - offset`` to wait for more data.
        """
        o = _container(buf, pos, host)
        if o < 0:
            return host + 1  # in text
        if buf[o + 1] in b"aA" and o + 2 < len(buf) and buf[o + 2] in b"\t\n\f\r />":
            rm = _TAG_REST_RE.match(buf, o + 2)
            if rm is not None:
                self._on_tag(buf, b"a", False, o, rm.end())
                return rm.end()
        nxt = self._open(buf, o, final)
        return -2 - o if nxt < 0 else nxt

    def _on_candidate(self, buf: bytes, low: bytes, c: int, final: bool) -> int:
        """Handle the real candidate at ``c``; return where to go on, -1 to wait."""
        if low[c + 1] == _BANG:
            if low[c + 2] == _DASH:  # "<!--"
                self._mode = _COMMENT
                self._comment_start = True
                return c + 4
            # "<![cdata[": CDATA is case-sensitive, and only foreign content has it.
            if buf.startswith(b"<![CDATA[", c) and self._cdata_section():
                self._mode = _CDATA
                return c + 9
            self._mode = _BOGUS
            return c + 2
        is_end = buf[c + 1] == _SLASH
        name_start = c + 1 + is_end
        tn = _TAGNAME_RE.match(buf, name_start)
        assert tn is not None
        name_end = tn.end()
        rm = _TAG_REST_RE.match(buf, name_end) if name_end < len(buf) else None
        if rm is None:
            return self._open(buf, c, final)
        name = low[name_start:name_end] if name_end - name_start <= _MAX_NAME else b""
        self._on_tag(buf, name, is_end, c, rm.end())
        return rm.end()

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
                # CDATA sections exist in foreign content only; elsewhere
                # this is a bogus comment, which ends at the first ">".
                if self._cdata_section():
                    self._mode = _CDATA
                    return p + 9
            elif b"<!--".startswith(head) or b"<![CDATA[".startswith(head):
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
        if name_end - name_start > _MAX_NAME:
            name = b""
        elif name_end >= n:
            return n if final else -1  # the name may go on: wait for it
        else:
            name = buf[name_start:name_end].lower()
        self._mode = _TAG
        self._tstate = _T_TAGNAME
        self._tname = name
        self._tend = is_end
        if self._wants_bytes(name, is_end):
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
                return pos
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

    # ----------------------------------------------------------------- tags

    def _wants_bytes(self, name: bytes, is_end: bool) -> bool:
        """Whether the attributes of this tag matter, so its bytes must be kept."""
        if is_end:
            return False
        if name == b"a" and self._hosts:
            return True
        if self._select:
            return name in (b"input", b"textarea")
        # In and around foreign content every start tag may be self-closing.
        return bool(self._stack) or name in _INSPECTED

    def _cut(self, buf: bytes, upto: int) -> None:
        if upto > self._mark:
            self._sink.append(buf[self._mark : upto])
            self._mark = upto

    def _tag_bytes(
        self, buf: bytes, name: bytes, is_end: bool, start: int, end: int
    ) -> bytes | None:
        """The complete tag, if its attributes matter and it is not too long to look at.

        ``start`` is its offset in ``buf`` when the whole tag is there, or -1
        when it spans chunks (then its bytes, if kept, are in ``_keep``).
        """
        if start < 0:
            if not self._keeping:
                return None
            self._keep.append(buf[self._mark : end])
            tag = b"".join(self._keep)
            self._keep = []
            self._keeping = False
            self._sink.append(tag)
            self._mark = end
        elif self._wants_bytes(name, is_end):
            tag = buf[start:end]
        else:
            return None
        # The same limit whether or not the tag spans chunks, so the result
        # does not depend on the chunking.
        return tag if len(tag) <= _MAX_TAG else None

    def _on_tag(self, buf: bytes, name: bytes, is_end: bool, start: int, end: int) -> None:
        """A tag ended at ``end`` (see ``_tag_bytes`` for ``start``)."""
        tag = self._tag_bytes(buf, name, is_end, start, end)
        if is_end:
            self._end_tag(name, buf, end)
            return
        if tag is not None and name == b"a" and self._hosts:
            new = self._rewrite_link(tag)
            if new is not None:
                if start >= 0:
                    self._cut(buf, start)
                    self._mark = end
                else:
                    self._sink.pop()
                self._sink.append(new)
        if self._stack or self._select:
            self._start_tag(name, tag, buf, end)
        else:
            self._html_start(name, tag, buf, end)  # the usual case, directly

    def _start_tag(self, name: bytes, tag: bytes | None, buf: bytes, end: int) -> None:
        """Dispatch a start tag as the tree builder does: select, foreign or HTML rules."""
        if self._select:
            self._select_start(name, tag, buf, end)
        elif self._stack and not self._html_rules(name):
            self._foreign_start(name, tag, buf, end)
        else:
            self._html_start(name, tag, buf, end)

    def _html_rules(self, name: bytes) -> bool:
        """Whether a start tag inside the current (non-empty) stack is HTML."""
        role = self._stack[-1][0]
        if role == _R_FOREIGN:
            return False
        if role == _R_TEXT_POINT:
            return name not in (b"mglyph", b"malignmark")
        if role == _R_ANNOTATION:
            return name == b"svg"
        return True  # an HTML element or an HTML integration point

    def _html_start(self, name: bytes, tag: bytes | None, buf: bytes, end: int) -> None:
        if name in _BREAKOUT:
            self._maybe_foreign = False  # a browser in foreign content leaves it here too
        if name == b"form" and self._in_form:
            return  # ignored by the parser (see _on_form_start)
        if name in _CONTROLS:
            self._on_control(tag, buf, end)
            if name == b"select":
                self._select = True
                return
        if name == b"form":
            self._on_form_start(tag, buf, end)
        elif name in _FOREIGN_ROOTS:
            if tag is None:
                self._maybe_foreign = True  # too long to look at: taken as self-closing
            elif not _self_closing(tag):
                self._push(_R_FOREIGN, _FOREIGN_ROOTS[name], name)
            return
        if self._stack:
            self._open_html(name)
        self._raw_start(name)

    def _raw_start(self, name: bytes) -> bool:
        """Enter raw text if ``name`` is an HTML element whose content is text."""
        if name == b"script":
            self._mode = _SCRIPT
        elif name in _RAWTEXT_NAMES:
            self._mode = _RAWTEXT
            self._raw_re = _end_tag_re(name)
            self._raw_tail = len(name) + 2
        elif name == b"plaintext":
            self._mode = _PLAINTEXT
        else:
            return False
        return True

    def _select_start(self, name: bytes, tag: bytes | None, buf: bytes, end: int) -> None:
        # Every other start tag is dropped by the "in select" rules (Chrome
        # 135 and later keep some inside the select, which stays open).
        if name in (b"select", b"input"):
            self._select = False
            if name != b"select":  # a <select> in a select only closes it
                self._start_tag(name, tag, buf, end)
            return
        if name == b"textarea":
            self._on_control(tag, buf, end)
        self._raw_start(name)

    def _foreign_start(self, name: bytes, tag: bytes | None, buf: bytes, end: int) -> None:
        if name in _BREAKOUT or (
            name == b"font"
            and (tag is None or any(m.group(1).lower() in _FONT_BREAKOUT for m in _attributes(tag)))
        ):
            # Back to HTML: pop up to an integration point or HTML element.
            stack = self._stack
            while stack and stack[-1][0] in (_R_FOREIGN, _R_ANNOTATION):
                stack.pop()
            self._html_start(name, tag, buf, end)
        elif tag is None:
            self._maybe_foreign = True  # too long to look at: taken as self-closing
        elif not _self_closing(tag):
            ns = self._stack[-1][1]  # a foreign element takes its parent's namespace
            self._push(_foreign_role(ns, name, tag), ns, name)

    # HTML inside integration points.  The stack holds the HTML elements
    # opened there so that the rewriter knows when the integration point is
    # the current node again, and these follow the tree builder's rules that
    # close them closely enough: an end tag closes its element when it is in
    # scope (or, for most, when no special element is above it), a block
    # start tag closes an open <p>, <li> an open <li>.  What they miss
    # (tables, the adoption agency) leaves elements on the stack that a
    # browser closed: the rewriter then stays in HTML for longer.

    def _open_index(self, names: Collection[bytes], barriers: Collection[bytes]) -> int:
        """Index of the innermost open HTML element named in ``names``, or -1.

        -1 too when an element in ``barriers`` or a foreign element comes first.
        """
        stack = self._stack
        for i in range(len(stack) - 1, -1, -1):
            role, _, name = stack[i]
            if role != _R_HTML:
                return -1
            if name in names:
                return i
            if name in barriers:
                return -1
        return -1

    def _close_html(self, name: bytes) -> None:
        """An end tag in the HTML inside an integration point."""
        if name == b"form":
            # The form leaves the stack wherever it is; the current node stays.
            i = self._open_index((b"form",), _SCOPE)
            if i >= 0:
                del self._stack[i]
            return
        if name == b"p":
            i = self._open_index((b"p",), _SCOPE | {b"button"})
        elif name == b"li":
            i = self._open_index((b"li",), _SCOPE | {b"ol", b"ul"})
        elif name in _HEADINGS:
            i = self._open_index(_HEADINGS, _SCOPE)
        elif name in _SCOPED_END:
            i = self._open_index((name,), _SCOPE)
        elif name in _TABLE:
            i = self._open_index((name,), () if name == b"table" else (b"table",))
        else:  # any other end tag, formatting elements included
            i = self._open_index((name,), _SPECIAL)
        if i >= 0:
            del self._stack[i:]

    def _open_html(self, name: bytes) -> None:
        """A start tag in the HTML inside an integration point: close what it closes, open it."""
        stack = self._stack
        if name in (b"li", b"dd", b"dt"):
            same = (b"li",) if name == b"li" else (b"dd", b"dt")
            i = self._open_index(same, _SPECIAL - {b"address", b"div", b"p"})
            if i >= 0:
                del stack[i:]
        elif name in _HEADINGS and stack[-1][0] == _R_HTML and stack[-1][2] in _HEADINGS:
            stack.pop()  # a heading closes a heading that is the current node
        if name in _CLOSES_P:
            i = self._open_index((b"p",), _SCOPE | {b"button"})
            if i >= 0:
                del stack[i:]
        if name not in _NOT_OPENED:
            self._push(_R_HTML, _HTML, name)

    def _push(self, role: int, ns: int, name: bytes) -> None:
        if len(self._stack) >= _MAX_DEPTH:
            self._stack.clear()  # too deep to follow: ordinary HTML, the safe side
            self._maybe_foreign = True
        else:
            self._stack.append((role, ns, name))

    def _end_tag(self, name: bytes, buf: bytes, end: int) -> None:
        stack = self._stack
        if self._select:
            if name == b"select":
                self._select = False
            return  # the "in select" rules drop every other end tag, </form> too
        if not stack or stack[-1][0] == _R_HTML:
            # HTML rules: </form> unsets the form element pointer, and closes
            # nothing when that was not set.
            if name == b"form":
                pointer = self._in_form
                self._on_form_end(buf, end)
                if not pointer:
                    return
            if stack:
                self._close_html(name)
            return
        # The current node is a foreign element.
        if name in (b"p", b"br"):
            # Like a breakout start tag (browsers since 2023; html5lib stays).
            while stack and stack[-1][0] in (_R_FOREIGN, _R_ANNOTATION):
                stack.pop()
            if name == b"p" and stack and stack[-1][0] == _R_HTML:
                self._close_html(name)
            return
        # Close the innermost open foreign element of that name, looking
        # through foreign elements only.
        at_point = False
        i = len(stack) - 1
        while i >= 0 and stack[i][0] != _R_HTML:
            if stack[i][2] == name:
                del stack[i:]
                return
            at_point = at_point or stack[i][0] in (_R_HTML_POINT, _R_TEXT_POINT)
            i -= 1
        # None: the HTML rules get it.  </form> only unsets the form element
        # pointer and takes the form off the stack, the current node stays.
        if name == b"form":
            self._on_form_end(buf, end)
            return
        # Element scopes end at integration points, except the table scope.
        if at_point and name not in _TABLE:
            return
        # It pops up to an open HTML element of that name, if there is one,
        # which only a full tree builder knows: take it that there is, and
        # leave foreign content (the safe side), in doubt.
        del stack[i + 1 :]
        self._maybe_foreign = True
        if stack:  # the HTML inside an integration point
            self._close_html(name)

    # ---------------------------------------------------------------- forms

    def _on_form_start(self, tag: bytes | None, buf: bytes, end: int) -> None:
        # A <form> inside an open form is ignored by the HTML parser (the form
        # element pointer is set until </form>), so it gets no field of its own.
        if self._in_form:
            return
        self._in_form = True
        self._form_tag = tag
        if self._field_ids and self._form_id() in self._field_ids:
            return  # a control before the form carries the field for it
        self._cut(buf, end)
        self._holding = True
        self._sink = self._held
        self._hold_limit = self._base + end + self._max_hold

    def _form_id(self) -> str:
        """The current form's id (read only when a control names a form: rare)."""
        tag = self._form_tag
        return "" if tag is None else _attr_text(tag, b"id") or ""

    def _on_form_end(self, buf: bytes, end: int) -> None:
        if self._holding:
            self._cut(buf, end)
            self._release(True)
        self._in_form = False

    def _on_control(self, tag: bytes | None, buf: bytes, end: int) -> None:
        """An HTML form control: does it carry the field, and for which form?"""
        if tag is None:
            return
        # Most controls are not the field: skip parsing their attributes when
        # the name cannot be there (written with a character reference, it
        # needs an "&").
        if self._field_needle not in tag and b"&" not in tag:
            return
        if _attr_text(tag, b"name") != self._field_name:
            return
        owner = _attr_text(tag, b"form")
        if owner == "":
            return  # form="" names no form: the control belongs to none
        if owner is None or (self._in_form and owner == self._form_id()):
            # The current form's (if any); it counts while the form is held.
            # Past the limit the field is already decided on (a duplicate is
            # better than a lost click id): where the control ends decides,
            # however the chunks were cut.
            if self._holding:
                over = self._base + end > self._hold_limit
                self._cut(buf, end)
                self._release(over)
        elif len(self._field_ids) < _MAX_IDS:
            self._field_ids.add(owner)  # another form's, named by id: it may come later

    def _release(self, inject: bool) -> None:
        """Stop holding the current form: send the field (if needed) and the held bytes."""
        out = self._out
        if inject:
            out.append(self._field_html)
        out.extend(self._held)
        self._held = []
        self._holding = False
        self._sink = out

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
