"""What a browser builds from a rewritten page: the original tree, plus one field per form.

The rule, checked with html5lib on every document here at every chunking
(1-byte chunks included), and on all the hand-written ones in headless
Chromium: parsing the rewritten page and taking the injected inputs out gives
the tree of the original page, and every HTML form that has no control named
sub1 owns exactly one injected field.  A field may also land in foreign
content (SVG, MathML) where the rewriter cannot be sure that it is not HTML:
there it is inert (no form control), and the tree must still be the same.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import html5lib
import pytest
from html5lib.treebuilders import getTreeBuilder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from selenium import webdriver

from bangi_landing.core.responses import classify

from . import browser as chrome
from .test_rewrite import CID, FIELD, HOSTS, every_split, rewrite

chromium = chrome.chromium
browser = chrome.browser

FIELD_ATTRS = {"type": "hidden", "name": "sub1", "value": CID}
CONTROLS = ("input", "select", "textarea", "button")

# --------------------------------------------------------------------------
# html5lib, with the form owner of every control
# --------------------------------------------------------------------------

_EtreeBuilder: Any = getTreeBuilder("etree")


class _OwnerBuilder(_EtreeBuilder):  # type: ignore[misc, valid-type]
    """html5lib's etree builder, noting the form element pointer as each element is made.

    That is how the parser gives a control its form owner (in tables, the
    control is not inside the form element).
    """

    def reset(self) -> None:
        super().reset()
        self.pointers: dict[int, Any] = {}

    def insertElementNormal(self, token: dict[str, Any]) -> Any:
        element = super().insertElementNormal(token)
        self._note(element)
        return element

    def insertElementTable(self, token: dict[str, Any]) -> Any:
        element = super().insertElementTable(token)
        self._note(element)
        return element

    def _note(self, element: Any) -> None:
        if self.formPointer is not None:
            self.pointers[id(element._element)] = self.formPointer._element


@dataclass
class Tree:
    """A document as html5lib builds it, and what its HTML forms own."""

    root: ElementTree.Element
    pointers: dict[int, ElementTree.Element]
    parents: dict[int, ElementTree.Element] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parents = {id(child): parent for parent in self.root.iter() for child in parent}

    def elements(self) -> Iterator[ElementTree.Element]:
        return self.root.iter()

    def forms(self) -> list[ElementTree.Element]:
        return [e for e in self.elements() if e.tag == "form"]  # HTML ones: no namespace

    def owner(self, control: ElementTree.Element) -> ElementTree.Element | None:
        """The form a control belongs to: its form="ID", the parser's pointer, or an ancestor."""
        if "form" in control.attrib:
            target = next((e for e in self.elements() if e.get("id") == control.get("form")), None)
            return target if target is not None and target.tag == "form" else None
        if id(control) in self.pointers:
            return self.pointers[id(control)]
        node = self.parents.get(id(control))
        while node is not None and node.tag != "form":
            node = self.parents.get(id(node))
        return node


def parse(markup: bytes) -> Tree:
    parser = html5lib.HTMLParser(tree=_OwnerBuilder, namespaceHTMLElements=False)
    root = parser.parse(markup.decode("utf-8", "surrogateescape"))
    return Tree(root, parser.tree.pointers)


def is_field(element: ElementTree.Element) -> bool:
    """An injected field, in any namespace (a foreign one is "{ns}input")."""
    return str(element.tag).rpartition("}")[2] == "input" and element.attrib == FIELD_ATTRS


def canonical(root: ElementTree.Element) -> list[Any]:
    """The tree as a list, element by element in document order with its depth.

    Not recursive: a stack of open elements may be deeper than Python's.
    """
    out = []
    todo = [(root, 0)]
    while todo:
        element, depth = todo.pop()
        attributes = sorted(element.attrib.items())
        out.append((depth, str(element.tag), attributes, element.text or "", element.tail or ""))
        todo += ((child, depth + 1) for child in reversed(element))
    return out


def without_fields(tree: Tree) -> Any:
    """The canonical tree with the injected fields taken out (their tails kept in place)."""
    for parent in list(tree.elements()):
        for child in [c for c in parent if is_field(c)]:
            index = list(parent).index(child)
            tail = child.tail or ""
            if index == 0:
                parent.text = (parent.text or "") + tail
            else:
                previous = parent[index - 1]
                previous.tail = (previous.tail or "") + tail
            parent.remove(child)
    return canonical(tree.root)


@dataclass
class Outcome:
    fields: dict[str, int]  # per HTML form (its id, action or position): the fields it owns
    foreign_fields: int  # fields that landed in foreign content (inert)


def check(page: bytes, **options: Any) -> Outcome:
    """Rewrite ``page`` at every chunking, check the rule with html5lib; what happened."""
    out = every_split(page, **options)
    before, after = parse(page), parse(out)
    fields = [e for e in after.elements() if is_field(e)]
    html_fields = [f for f in fields if f.tag == "input"]
    owned: dict[int, int] = {}
    for f in html_fields:
        form = after.owner(f)
        assert form is not None, f"a field that belongs to no form: {out!r}"
        owned[id(form)] = owned.get(id(form), 0) + 1
    result = {}
    for index, form in enumerate(after.forms()):
        has_control = any(
            e.tag in CONTROLS
            and e.get("name") == "sub1"
            and not is_field(e)
            and after.owner(e) is form
            for e in after.elements()
        )
        got = owned.get(id(form), 0)
        assert got == (0 if has_control else 1), (form.attrib, got, out)
        result[form.get("id") or form.get("action") or str(index)] = got
    assert without_fields(after) == without_fields(before), out
    return Outcome(result, len(fields) - len(html_fields))


# --------------------------------------------------------------------------
# Hand-written documents, by kind (the Chromium test below takes them all)
# --------------------------------------------------------------------------

ICON = (
    '<svg class="icon" viewBox="0 0 24 24" aria-hidden="true">'
    '<path d="M12 2l3 7h7l-6 4 2 7-6-4-6 4 2-7-6-4h7z"/></svg>'
)

# Inline SVG and MathML before, around, inside and after the form "f".
AROUND = [
    f"{ICON}<form id=f action=/order><input name=phone>{ICON}<button>{ICON}Order</button></form>"
    f"{ICON}",
    f"<a href=/x>{ICON}</a><form id=f><label>{ICON} Name <input name=q></label></form>",
    '<svg width=8 height=8><use xlink:href="#i"></use></svg><form id=f></form>',
    '<svg><path d="M0 0"></svg><form id=f></form>',  # the unclosed path ends with the svg
    "<svg><g><g><path/></g></g><text>a<tspan>b</tspan></text></svg><form id=f></form>",
    "<svg><svg><g></g></svg><form id=s></form></svg><form id=f></form>",  # nested svg
    "<svg><style>form { fill: red }</style><title>Icon</title><desc>x</desc></svg>"
    "<form id=f></form>",
    "<svg/><form id=f></form>",  # self-closing: opens nothing
    "<svg /><math/><form id=f></form>",
    "<math><mi>x</mi><mo>=</mo><mn>1</mn></math><form id=f></form>",
    "<p>E = mc<math><msup><mi>c</mi><mn>2</mn></msup></math></p><form id=f></form>",
    f"<form id=f><table><tr><td>{ICON}</td><td><input name=q></td></tr></table></form>",
]

# Forms that are SVG or MathML elements: no field, and the HTML form after gets one.
FOREIGN = [
    "<svg><form id=s><input name=q></form></svg>",
    "<svg><g><form id=s></form></g></svg>",
    "<math><form id=s></form></math>",
    "<math><mrow><form id=s></form></mrow></math>",
    "<svg><font><form id=s></form></font></svg>",  # <font> without color, face or size
    "<svg><font id=x><form id=s></form></font></svg>",
    '<math><annotation-xml encoding="text/xml"><form id=s></form></annotation-xml></math>',
    "<math><annotation-xml><form id=s></form></annotation-xml></math>",
    "<math><mi><mglyph><form id=s></form></mglyph></mi></math>",
    "<math><mrow><svg><foreignObject><form id=s></form></foreignObject></svg></mrow></math>",
    "<svg><title>t</title><form id=s></form></svg>",  # after the integration point
    "<svg><desc><p>x</p></desc><form id=s></form></svg>",
    "<svg><style>a<b>c</style></svg>",  # no raw text in SVG: <b> is a breakout
    "<svg a=b/><form id=s></form></svg>",  # the value is "b/": not self-closing
    "<svg><![CDATA[ x><form id=s> ]]></svg>",  # a CDATA section
    "<svg><script>var s = '<form id=s>';</script></svg>",  # no raw text in SVG either
]

# HTML forms in integration points: they get the field.
POINTS = [
    "<svg><foreignObject><form id=f></form></foreignObject></svg>",
    "<svg><foreignObject><div><form id=f><input name=q></form></div></foreignObject></svg>",
    "<svg><desc><form id=f></form></desc></svg>",
    "<svg><title><p><form id=f></form></p></title></svg>",
    "<svg><g><title><form id=f></form></title></g></svg>",
    '<math><annotation-xml encoding="text/html"><form id=f></form></annotation-xml></math>',
    "<math><annotation-xml encoding='Application/XHTML+XML'><form id=f></form>"
    "</annotation-xml></math>",
    "<math><annotation-xml><svg><foreignObject><form id=f></form></foreignObject></svg>"
    "</annotation-xml></math>",
    *(f"<math><{p}><form id=f></form></{p}></math>" for p in ("mi", "mo", "mn", "ms", "mtext")),
    "<svg><foreignObject><svg><desc><form id=f></form></desc></svg></foreignObject></svg>",
    "<svg><foreignObject><p>a<p>b</p></foreignObject><form id=s></form></svg>",
    "<svg><foreignObject><div><p>x</div></foreignObject><form id=s></form></svg>",
]

# Start tags that leave foreign content for HTML, in SVG and in MathML.
BREAKOUTS = [
    f"<{root}><g>{tag}<form id=f></form>"
    for root in ("svg", "math")
    for tag in ("<p>", "<div>", "<b>", "<span>", "<br>", "<h2>", "<ul>", "<img src=x>")
] + [
    "<svg><font color=red><form id=f></form>",
    "<svg><font SIZE=2><form id=f></form>",
    "<svg><g><table><form id=f></form></table>",
    "<svg><g><foreignObject><div><svg><b>x</b><form id=f></form>",
]

# The text "<form" inside something that is not a start tag.
MALFORMED = [
    "</s<form id=x action=/x>",  # an end tag named "s<form"
    "</s <form id=x>",  # an end tag with an attribute named "<form"
    "<i<form id=x>",  # a tag named "i<form"
    "<font id=<form id=x>",  # the unquoted value "<form"
    "<font id=a<form id=x>",
    "<div <form id=x>",  # an attribute named "<form"
    "<p/<form id=x>",
    "<![CDATA[ <form id=x> ]]>",  # a bogus comment, up to the first ">"
]

CDATA_AT_POINT = "<svg><foreignObject><![CDATA[ x><form id=s> ]]></foreignObject></svg>"
END_FORM_IN_SELECT = "<form id=a><select></form></select><form id=b><input name=q></form>"

# Forms inside a select: no field (an <input> would close the select).
SELECTS = [
    "<select><form id=s><option>1</select>",
    "<select><option>1<form id=s></option></select>",
    "<select><optgroup><form id=s><option>1</optgroup></select>",
    "<select></form><option>1</select>",
]


@pytest.mark.parametrize("page", AROUND)
def test_inline_svg_and_mathml_around_forms(page: str) -> None:
    outcome = check(page.encode())
    assert outcome.fields["f"] == 1
    assert outcome.foreign_fields == 0


@pytest.mark.parametrize("page", FOREIGN)
def test_forms_in_foreign_content_get_no_field(page: str) -> None:
    outcome = check(page.encode() + b"<form id=f></form>")
    assert outcome == Outcome({"f": 1}, 0)


@pytest.mark.parametrize("page", POINTS)
def test_forms_in_integration_points_get_the_field(page: str) -> None:
    outcome = check(page.encode())
    assert outcome == Outcome({"f": 1} if "id=f" in page else {}, 0)


@pytest.mark.parametrize("page", BREAKOUTS)
def test_breakout_tags_leave_foreign_content(page: str) -> None:
    assert check(page.encode()) == Outcome({"f": 1}, 0)


@pytest.mark.parametrize("end", ["</p>", "</br>", "</P >"])
def test_end_p_and_br_leave_foreign_content_as_browsers_do(end: str) -> None:
    # Browsers pop foreign content at </p> and </br> since 2023 (the Chromium
    # test checks it); html5lib stays in it, so there the field is an inert
    # SVG element.
    assert check(f"<svg><g>{end}<form id=f></form>".encode()) == Outcome({}, 1)


def test_an_end_tag_that_closes_nothing_in_svg_leaves_it_in_doubt() -> None:
    # </span> closes an HTML span if one is open around the svg (which the
    # rewriter does not know) and is ignored otherwise: it takes HTML, the
    # safe side.  Here the svg goes on, so the field is an inert SVG element,
    # self-closing so that it swallows none of what follows; until the next
    # breakout tag, "<![CDATA[" is skipped to "]]>" as in SVG.
    page = (
        b"<svg><g></span><form id=s><circle r=1></circle></form><![CDATA[ x><form> ]]>"
        b"</g></svg><div><form id=f></form></div>"
    )
    assert check(page) == Outcome({"f": 1}, 1)


def test_a_stack_too_deep_to_follow_is_dropped_for_html() -> None:
    page = b"<svg>" + b"<g>" * 600 + b"<form id=s></form>"
    out = rewrite(page)
    assert rewrite(page, [1]) == rewrite(page, [1000, 7]) == out
    assert out.count(FIELD) == 1  # inert, in SVG
    assert without_fields(parse(out)) == without_fields(parse(page))


@pytest.mark.parametrize("page", MALFORMED)
def test_form_text_inside_other_tags_is_no_form_in_the_tree(page: str) -> None:
    assert check(page.encode() + b"<form id=f></form>") == Outcome({"f": 1}, 0)


def test_cdata_is_a_section_only_in_foreign_content() -> None:
    assert check(b"<![CDATA[ x><form id=f> ]]>") == Outcome({"f": 1}, 0)
    assert check(b"<svg><![CDATA[ x><form id=s> ]]></svg><form id=f>") == Outcome({"f": 1}, 0)
    # At an integration point the current node is still an SVG element:
    # html5lib reads a CDATA section there, Chromium a bogus comment; skipping
    # to "]]>" loses at worst a field, and never writes one into text.
    assert check(CDATA_AT_POINT.encode()) == Outcome({}, 0)


@pytest.mark.parametrize("page", SELECTS)
def test_forms_inside_a_select_get_no_field(page: str) -> None:
    assert check(page.encode() + b"<form id=f></form>") == Outcome({"f": 1}, 0)


@pytest.mark.parametrize("end", ["</select>", "</SELECT>", "<select>", "<input name=q>"])
def test_a_select_ends_where_every_browser_ends_it(end: str) -> None:
    assert check(f"<select><option>1{end}<form id=f></form>".encode()) == Outcome({"f": 1}, 0)


@pytest.mark.parametrize("tag", ["<textarea></textarea>", "<keygen>"])
def test_a_select_goes_on_where_chrome_goes_on(tag: str) -> None:
    # html5lib and older browsers end the select here, Chrome 135 and later
    # does not: a field would close Chrome's select, so the form gets none.
    page = f"<select><option>1{tag}<form id=f></form>".encode()
    assert every_split(page) == page


def test_end_form_inside_a_select_is_ignored() -> None:
    # As in html5lib and Firefox: the form goes on, and the next one is nested.
    assert check(END_FORM_IN_SELECT.encode()) == Outcome({"a": 1}, 0)


@pytest.mark.parametrize(
    "control",
    [
        "<input name=sub1>",
        "<INPUT NAME=sub1 type=hidden value=x>",
        '<input name="s&#117;b1">',
        "<select name=sub1><option>x</select>",
        "<textarea name=sub1>x</textarea>",
        "<button name=sub1 value=x>Go</button>",
    ],
)
def test_a_form_with_a_sub1_control_gets_no_field(control: str) -> None:
    assert check(f"<form id=f><p>{control}</p></form>".encode()) == Outcome({"f": 0}, 0)


def test_controls_that_name_their_form_by_id() -> None:
    # Before the form, or inside another one, naming it.
    assert check(b"<input form=f name=sub1><form id=f></form>").fields == {"f": 0}
    page = b"<form id=a><button form=f name=sub1>b</button></form><form id=f></form>"
    assert check(page).fields == {"a": 1, "f": 0}
    # Inside it, naming it.
    assert check(b"<form id=f><input form=f name=sub1></form>").fields == {"f": 0}
    # form="" and an id that no form has: the control belongs to no form.
    assert check(b'<form id=f><input form="" name=sub1></form>').fields == {"f": 1}
    assert check(b"<form id=f><input form=nowhere name=sub1></form>").fields == {"f": 1}


def test_a_control_that_names_its_form_after_it_comes_too_late() -> None:
    # The documented limit: streaming cannot wait for the rest of the page.
    page = b"<form id=f></form><input form=f name=sub1>"
    assert every_split(page) == b"<form id=f>" + FIELD + b"</form><input form=f name=sub1>"


def test_a_utf16_body_is_left_alone() -> None:
    # Browsers read a body that starts with a UTF-16 byte order mark as
    # UTF-16, whatever the charset header says; there these bytes are three
    # CJK characters.
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        page = bom + b"<form>"
        assert "<" not in page[2:].decode(codec)
        assert every_split(page) == page
    assert every_split(b"\xff<form>") == b"\xff<form>" + FIELD  # half a mark is none


TRICKY_PAGE = """<!DOCTYPE html>
<html><head>
<meta charset="utf-8">
<title>Offer <form> in title</title>
<style>form > input[name="sub1"] { color: red } /* <form> */</style>
<script>
  var tpl = '<form action="/js"><input name="q"></form>';
  if (a < b && b > c) { document.write("</scr" + "ipt>"); }
</script>
<script><!-- var legacy = "<script>x</script><form>"; --></script>
</head>
<body>
<!-- <form action="/commented"> -->
<div title="<form>" data-tpl="<div class='p'><form action='/popover'></form></div>">attrs</div>
<textarea name="msg"><form action="/textarea"></textarea>
<FORM ACTION="/upper" METHOD="POST" data-x="a>b"><INPUT NAME="name"></FORM>
<form
  action="/multiline"
  class='a b'
><p>Phone <input type="tel" name="phone"></p>
<button type=submit>Go</button></form>
<form action="/has-field"><input type="hidden" name="sub1" value="already"></form>
<form action="/has-field-2"><input name=sub1 type=hidden value=x></form>
<form action="/outer"><form action="/nested-ignored"><input name="z"></form>
<div><form action="/in-div"><span>text <b>bold</b></span></form></div>
<table><tr><td><form action="/in-cell"><input name="q"></form></td></tr></table>
<p>1 &lt; 2 but 3 < 4 and <formx> is not a form, nor <form-foo></p>
<a href="http://t.example.com/c?o=1&amp;s=lp#buy">Buy</a>
<a href='https://offer.example.net'>Offer</a>
<a href=//T.EXAMPLE.COM:8443/p>Upper</a>
<a href="/relative">Rel</a> <a href="http://elsewhere.example.org/">Else</a>
<a href="http://t.example.com/?clickId=kept">Kept</a>
<svg><![CDATA[ <form action="/cdata"> ]]></svg>
<svg viewBox="0 0 8 8"><form action="/svg"></form><foreignObject><form action="/fo">
</form></foreignObject></svg>
<form action="/last"><select name="c"><option>1</option></select>
</body></html>
"""


def test_a_page_with_every_trap() -> None:
    raw = TRICKY_PAGE.encode()
    assert check(raw).fields == {
        "/upper": 1,
        "/multiline": 1,
        "/has-field": 0,
        "/has-field-2": 0,
        "/outer": 1,
        "/in-div": 1,
        "/in-cell": 1,
        "/fo": 1,
        "/last": 1,
    }
    # The links changed, and nothing else.
    out = rewrite(raw, [4096], link_hosts=HOSTS)
    for chunks in ([1], [3, 17], [100]):
        assert rewrite(raw, chunks, link_hosts=HOSTS) == out
    before, after = parse(raw), parse(out)
    links = {a.text: a.get("href") for a in after.elements() if a.tag == "a"}
    assert links == {
        "Buy": f"http://t.example.com/c?o=1&s=lp&clickId={CID}#buy",
        "Offer": f"https://offer.example.net?clickId={CID}",
        "Upper": f"//T.EXAMPLE.COM:8443/p?clickId={CID}",
        "Rel": "/relative",
        "Else": "http://elsewhere.example.org/",
        "Kept": "http://t.example.com/?clickId=kept",
    }
    original = (a for a in before.elements() if a.tag == "a")
    for a in (a for a in after.elements() if a.tag == "a"):
        a.set("href", next(original).get("href") or "")
    assert without_fields(after) == without_fields(before)


# --------------------------------------------------------------------------
# Charsets
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "charset",
    [
        "iso-2022-jp",
        "csISO2022JP",
        "ISO-2022-JP-2",
        "iso-2022-kr",
        "iso-2022-cn",
        "hz-gb-2312",
        "utf-7",
        "utf-16",
        "UTF-16BE",
        "utf-32",
        "x-no-such-charset",
    ],
)
def test_pages_in_stateful_or_wide_charsets_are_not_rewritten(charset: str) -> None:
    assert classify(200, {"content-type": f"text/html; charset={charset}"}) == (True, False)


@pytest.mark.parametrize(
    "charset", ["utf-8", "windows-1251", "koi8-r", "shift_jis", "euc-jp", "gb18030", "big5"]
)
def test_pages_in_ascii_compatible_charsets_are_rewritten(charset: str) -> None:
    assert classify(200, {"content-type": f"text/html; charset={charset}"}) == (True, True)


def test_in_iso_2022_jp_kanji_can_be_the_bytes_of_a_form() -> None:
    # Why ISO-2022-JP is refused: these three kanji are "<form>" after an escape.
    kanji = b"\x1b$B<form>\x1b(B".decode("iso-2022-jp")
    assert len(kanji) == 3
    assert "<" not in kanji
    assert b"<form>" in f"<p>{kanji}</p>".encode("iso-2022-jp")


# --------------------------------------------------------------------------
# Documents generated from fragments: HTML, inline SVG and MathML, forms
# --------------------------------------------------------------------------

# Each strategy makes markup for one context, well nested, so that the
# documents stay clear of what browsers and html5lib disagree on (stray end
# tags in foreign content, raw text in a select, formatting elements left
# open) and of the rewriter's documented limits (a sub1 control after a
# nested </form>, or naming a form by id after it).  Malformed tags,
# breakouts and CDATA are in, wherever they can be.


_TEXT = ["x", " ", "\n", "a > b", "1 < 2", "&amp;"]
_ANYWHERE = ["<!-- <form> -->", "<![CDATA[ x><form action=/cdata> ]]>", *_TEXT]
_BREAKOUTS = ["<br>", "<p>p</p>", "<font color=red>f</font>", "<div>d</div>"]
_FORMS = ["<form>", "<form action=/f method=post>", "<FORM\nclass='a>b'>"]
_SUB1 = [
    "<input name=sub1>",
    "<select name=sub1><option>1</select>",
    "<button name=sub1>b</button>",
]

# An item of a context: markup as it is, or (start, context of the content, end).
# The contexts: "html"; "svg" and "math", foreign content; "form" (HTML, whose
# first child may be a sub1 control); "point", the HTML in an integration
# point; "mi" (HTML or <mglyph>); "annotation" (MathML or <svg>).
Item = str | tuple[str, str, str]
_GRAMMAR: dict[str, list[Item]] = {
    "html": [
        *_ANYWHERE,
        *_BREAKOUTS,
        "<input name=q>",
        "<img src=x alt='<form>'>",
        "</s<form x>",  # a stray end tag named "s<form"
        "<script>var s = '<form>';</script>",
        "<style>form > b {}</style>",
        "<title>a <form> b</title>",
        "<textarea><form></textarea>",
        "<table><form action=/t><tr><td>x</td></tr></table>",
        "<select><option>1<form action=/s><input name=q></select>",
        "<select><option>1</option><form action=/s>x</form></select>",
        "<svg/>",
        ("<div>", "html", "</div>"),
        ("<span>", "html", "</span>"),
        ("<b>", "html", "</b>"),
        ("<label>", "html", "</label>"),
        ("<i<form action=/x>", "html", "</i<form>"),  # one tag, named "i<form"
        ("<font id=<form>", "html", "</font>"),  # id is "<form"
        ("<div <form>", "html", "</div>"),  # an attribute named "<form"
        ("<table><tr><td>", "html", "</td></tr></table>"),
        ("", "form", "</form>"),
        ("<svg>", "svg", "</svg>"),
        ('<svg viewBox="0 0 8 8">', "svg", "</svg>"),
        ("<math>", "math", "</math>"),
    ],
    "svg": [
        *_ANYWHERE,
        '<path d="M0 0"/>',
        "<path d='M0>1' />",
        "<circle r=1></circle>",
        "<script>var s = '<form>';</script>",  # no raw text in SVG
        "<style>.a { fill: red }</style>",
        "<form><input name=sub1></form>",  # an SVG form, an SVG input
        "<![CDATA[ <svg> ]]>",
        *(
            (start, "svg", f"</{start[1:].split()[0].rstrip('>')}>")
            for start in ("<g>", "<svg>", "<font>", "<form action=/svg>", "<math>", "<a href=#>")
        ),
        ("<foreignObject>", "point", "</foreignObject>"),
        ("<desc>", "point", "</desc>"),
        ("<title>", "point", "</title>"),
    ],
    "math": [
        *_ANYWHERE,
        "<mglyph/>",
        "<form><input name=q></form>",
        ("<mrow>", "math", "</mrow>"),
        ("<mi>", "mi", "</mi>"),
        ("<mtext>", "point", "</mtext>"),
        ('<annotation-xml encoding="text/html">', "point", "</annotation-xml>"),
        ("<annotation-xml>", "annotation", "</annotation-xml>"),
        ("<svg>", "math", "</svg>"),  # outside annotation-xml, a MathML element named svg
    ],
}


@st.composite
def _markup(draw: st.DrawFn, context: str = "html", outer: bool = True, depth: int = 0) -> str:
    """A few items of ``context``, each with its content, down to depth 5.

    Breakout tags in foreign content leave the end tags of the foreign
    elements around them astray in HTML, where html5lib closes foreign
    elements by name, unlike browsers: so breakouts only come in foreign
    content that ``outer`` HTML holds, not inside an integration point.
    """
    if context in ("point", "mi"):  # the HTML in an integration point
        outer = False
    if context in ("svg", "math"):
        items = [*_GRAMMAR[context], *(_BREAKOUTS if outer else ())]
    elif context == "annotation":
        items = [*_GRAMMAR["math"], ("<svg>", "svg", "</svg>"), *(_BREAKOUTS if outer else ())]
    else:
        items = [*_GRAMMAR["html"], *(["<mglyph>"] if context == "mi" else ())]
    parts = []
    if context == "form":
        # A sub1 control comes first, so that a nested </form> does not end
        # the form before it (a limit of the rewriter, and documented).
        parts += [draw(st.sampled_from(_FORMS)), draw(st.sampled_from(["", "", *_SUB1]))]
    for _ in range(draw(st.integers(0, 3 if depth < 5 else 0))):
        item = draw(st.sampled_from(items))
        if isinstance(item, str):
            parts.append(item)
        else:
            start, inside, end = item
            parts += [start, draw(_markup(inside, outer, depth + 1)), end]
    return "".join(parts)


DOCUMENTS = st.lists(_markup(), min_size=1, max_size=4).map("".join).filter(lambda d: len(d) < 800)


# Derandomized, so that every run tries the same documents (tens of thousands
# of random ones were tried while writing the rewriter), and no database.
@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(DOCUMENTS)
def test_generated_documents_keep_their_tree_and_every_form_gets_a_field(doc: str) -> None:
    check(doc.encode())


# --------------------------------------------------------------------------
# Headless Chromium, the same rule with the browser's own form owners
# --------------------------------------------------------------------------

# Runs in the loaded page: the tree without the injected fields (text merged
# back), and for every HTML form its fields and its other sub1 controls (a
# form's "elements" are exactly the controls it submits).
_CHROMIUM_JS = """
const cid = arguments[0], html = 'http://www.w3.org/1999/xhtml';
const isField = e => e.localName === 'input' && e.attributes.length === 3
    && e.getAttribute('type') === 'hidden' && e.getAttribute('name') === 'sub1'
    && e.getAttribute('value') === cid;
const forms = [...document.getElementsByTagName('form')]
    .filter(f => f.namespaceURI === html)
    .map(f => [f.id, [...f.elements].filter(isField).length,
               [...f.elements].filter(c => c.name === 'sub1' && !isField(c)).length,
               f.closest('select') !== null]);
const fields = [...document.getElementsByTagName('input')].filter(isField);
const foreign = fields.filter(e => e.namespaceURI !== html).length;
fields.forEach(e => e.remove());
document.normalize();
const walk = n => n.nodeType === 3 ? n.data : n.nodeType === 8 ? ['#comment', n.data]
    : [n.namespaceURI + ' ' + n.localName,
       [...n.attributes].map(a => [a.name, a.value]).sort(),
       [...(n.localName === 'template' ? n.content : n).childNodes].map(walk)];
return JSON.stringify({forms, foreign, tree: walk(document.documentElement)});
"""


# Every hand-written document above, as the tests above rewrite it.
CHROMIUM_PAGES = [
    *AROUND,
    *(page + "<form id=f></form>" for page in FOREIGN + MALFORMED + SELECTS),
    *POINTS,
    *BREAKOUTS,
    *(f"<svg><g>{end}<form id=f></form>" for end in ("</p>", "</br>")),
    *(
        f"<select><option>1{end}<form id=f></form>"
        for end in ("</select>", "<select>", "<input name=q>", "<textarea></textarea>", "<keygen>")
    ),
    CDATA_AT_POINT,
    END_FORM_IN_SELECT,
    "<svg><g></span><form id=s><circle r=1></circle></form></g></svg><div><form id=f></form></div>",
    "<form id=a><button form=f name=sub1>b</button></form><form id=f></form>",
    "<form id=f><p><select name=sub1><option>x</select></p></form>",
    TRICKY_PAGE,
]
# Where Chromium has an HTML form that html5lib has not, and the rewriter
# follows html5lib: that form gets no field (its tree stays the same).
CHROMIUM_DIFFERS = {
    CDATA_AT_POINT,  # Chromium reads a bogus comment there, html5lib a CDATA section
    END_FORM_IN_SELECT,  # Chrome 135 and later end the form at </form> in a select
}


def _in_chromium(driver: webdriver.Chrome, page: bytes) -> Any:
    driver.get("data:text/html;charset=utf-8," + urllib.parse.quote(page))
    return json.loads(driver.execute_script(_CHROMIUM_JS, CID))


@pytest.mark.slow
def test_chromium_builds_the_same_tree_with_a_field_per_form(browser: webdriver.Chrome) -> None:
    for page in CHROMIUM_PAGES:
        before = _in_chromium(browser, page.encode())
        after = _in_chromium(browser, rewrite(page.encode()))
        assert after["tree"] == before["tree"], page
        for form_id, fields, controls, in_select in after["forms"]:
            if controls:
                expected = {0}
            elif in_select or page in CHROMIUM_DIFFERS:
                expected = {0, 1}  # Chrome 135 keeps forms in a select; a field may follow
            else:
                expected = {1}
            assert fields in expected, (page, form_id, fields)
