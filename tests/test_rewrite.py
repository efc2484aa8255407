"""Tests for bangi_landing.core.rewrite: form injection and link decoration on byte streams."""

from __future__ import annotations

import random
import re
import tracemalloc
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from bangi_landing.core import rewrite as rewrite_module
from bangi_landing.core.rewrite import HtmlRewriter

CID = "0b8e4c1a-6f2d-4e3b-9a7c-5d1e2f3a4b5c"
FIELD = f'<input type="hidden" name="sub1" value="{CID}" />'.encode()
HOSTS = ("t.example.com", "offer.example.net")


def rewrite(
    data: bytes, chunks: Iterable[int] | None = None, *, click_id: str = CID, **kwargs: Any
) -> bytes:
    """Feed ``data`` cut at the given chunk sizes (cycled), or in one piece."""
    rewriter = HtmlRewriter(click_id, **kwargs)
    if chunks is None:
        return rewriter.feed(data) + rewriter.finish()
    sizes = list(chunks)
    out = []
    pos = i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(rewriter.feed(data[pos : pos + size]))
        pos += size
        i += 1
    out.append(rewriter.finish())
    return b"".join(out)


def every_split(data: bytes, **kwargs: Any) -> bytes:
    """The result, after checking that cutting ``data`` anywhere changes nothing."""
    whole = rewrite(data, **kwargs)
    for cut in range(len(data) + 1):
        rewriter = HtmlRewriter(CID, **kwargs)
        got = rewriter.feed(data[:cut]) + rewriter.feed(data[cut:]) + rewriter.finish()
        assert got == whole, f"split at {cut}: {got!r}"
    assert rewrite(data, [1], **kwargs) == whole
    return whole


# --------------------------------------------------------------------------
# Form injection
# --------------------------------------------------------------------------


def test_basic_injection() -> None:
    page = b'<p>Hi</p><form action="/order" method="post"><input name="phone"></form>'
    assert every_split(page) == (
        b'<p>Hi</p><form action="/order" method="post">' + FIELD + b'<input name="phone"></form>'
    )


def test_field_html_is_exact_and_escaped() -> None:
    assert rewrite(b"<form>", click_id='a"<b>&') == (
        b'<form><input type="hidden" name="sub1" value="a&quot;&lt;b&gt;&amp;" />'
    )
    assert rewrite(b"<form>", field_name="s&1") == (
        b'<form><input type="hidden" name="s&amp;1" value="' + CID.encode() + b'" />'
    )


def test_custom_field_name() -> None:
    out = every_split(b"<form><input name=sub1></form>", field_name="aff_sub")
    assert out == (
        b'<form><input type="hidden" name="aff_sub" value="'
        + CID.encode()
        + b'" /><input name=sub1></form>'
    )


def test_uppercase_form() -> None:
    assert every_split(b"<FORM METHOD=POST>x</FORM>") == b"<FORM METHOD=POST>" + FIELD + b"x</FORM>"
    assert every_split(b"<Form>x</fOrM>") == b"<Form>" + FIELD + b"x</fOrM>"


def test_quoted_gt_in_attributes() -> None:
    page = b"<form data-x=\"a>b\" data-y='c>d' action=/x>body</form>"
    assert every_split(page) == (
        b"<form data-x=\"a>b\" data-y='c>d' action=/x>" + FIELD + b"body</form>"
    )


def test_multiline_tag() -> None:
    page = b'<form\n  action="/x"\r\n\tmethod="post"\n>\n<input name=a>\n</form>'
    assert every_split(page) == (
        b'<form\n  action="/x"\r\n\tmethod="post"\n>' + FIELD + b"\n<input name=a>\n</form>"
    )


def test_self_closing_and_bare_form() -> None:
    assert every_split(b"<form/>x") == b"<form/>" + FIELD + b"x"
    assert every_split(b"<form>") == b"<form>" + FIELD


def test_tag_split_at_every_offset() -> None:
    page = b"ab<form class='a b' data-x=\"1>2\"\n id=f>cd<input name=x value='y'></form>ef"
    expected = page.replace(b"id=f>", b"id=f>" + FIELD)
    assert every_split(page) == expected


@pytest.mark.parametrize(
    "page",
    [b"<formx>", b"<form-foo>", b"<forms action=x>", b"<xform>", b"<form:x>", b"< form>"],
)
def test_not_a_form(page: bytes) -> None:
    assert every_split(page + b"</form>") == page + b"</form>"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"<!-- <form> -->", b""),
        (b"<!--<form>-->", b""),
        (b"<script>document.write('<form>')</script>", b""),
        (b'<script type="text/template"><form action="x"></form></script>', b""),
        (b"<style>/* <form> */ a > b {}</style>", b""),
        (b"<textarea name=t><form></textarea>", b""),
        (b"<title>Buy <form> now</title>", b""),
        (b"<xmp><form></xmp>", b""),
        (b"<iframe><form></iframe>", b""),
        (b"<noembed><form></noembed>", b""),
        (b"<noframes><form></noframes>", b""),
        (b"<![CDATA[ <form> ]]>", b""),
        (b"<!DOCTYPE html>", b""),
        (b"<!bogus <form>", b""),
        (b"<?php <form> ?>", b""),
        (b"</ <form>", b""),
        (b'<div title="<form>">', b""),
        (b"<div title='<form>' data-x=\"<form>\">", b""),
        (b"<div data-tpl=\"<div class='x'><form action='/y'></form></div>\">", b""),
        (b"<a onclick=\"document.write('<form>')\" href=#>", b""),
    ],
)
def test_form_in_non_markup_untouched_and_next_form_injected(before: bytes, after: bytes) -> None:
    page = before + after + b"<form>x</form>"
    assert every_split(page) == before + after + b"<form>" + FIELD + b"x</form>"


@pytest.mark.parametrize(
    "end_tag",
    [b"</script>", b"</SCRIPT>", b"</script >", b"</Script\n>", b"</script/>", b"</script x=y>"],
)
def test_script_end_tag_variants(end_tag: bytes) -> None:
    page = b"<script>var s = '<form>';" + end_tag + b"<form>"
    assert every_split(page) == page + FIELD


def test_script_end_tag_lookalikes_do_not_end_script() -> None:
    page = b"<script>a = '</scripts><form>'; b = '</script-x><form>';</script>"
    assert every_split(page) == page


def test_script_escaped_states() -> None:
    # Inside "<!--" a nested "<script>" makes the next "</script>" not the end.
    page = b"<script><!-- <script> x </script> <form> --></script><form>"
    assert every_split(page) == page + FIELD
    # "-->" leaves the escaped state; the next "</script>" ends the element.
    page = b"<script><!-- a --> '<script>' </script><form>"
    assert every_split(page) == page + FIELD
    page = b"<script><!--></script><form>"
    assert every_split(page) == page + FIELD


def test_comment_forms() -> None:
    # "<!-->" and "<!--->" are complete comments; "--!>" also closes one.
    for comment in (b"<!-->", b"<!--->", b"<!-- a --!>", b"<!---->", b"<!-- -- -->"):
        assert every_split(comment + b"<form>") == comment + b"<form>" + FIELD
    assert every_split(b"<!--!><form>-->") == b"<!--!><form>-->"


def test_cdata_is_a_bogus_comment_outside_foreign_content() -> None:
    # In HTML "<![CDATA[" is a bogus comment, ended by the first ">" (and it
    # hid every later form until "]]>" once).
    page = b"<![CDATA[ x><form> ]]>"
    assert every_split(page) == b"<![CDATA[ x><form>" + FIELD + b" ]]>"
    assert every_split(b"<![cdata[ x><form>") == b"<![cdata[ x><form>" + FIELD
    # In foreign content it is a CDATA section, ended by "]]>" (case-sensitive).
    page = b"<svg><![CDATA[ x><form> ]]></svg><form>"
    assert every_split(page) == page + FIELD
    page = b"<svg><![cdata[ x></svg><form>"
    assert every_split(page) == page + FIELD


@pytest.mark.parametrize(
    "page",
    [
        b"<i<form action=/x>",  # one tag, named "i<form"
        b"<I<FORM>",
        b"</s<form action=/x>",  # one end tag, named "s<form"
        b"</s <form>",  # an end tag with an attribute named "<form"
        b"<font id=<form action=/x>",  # an unquoted value "<form"
        b"<font id=a<form>",
        b"<div <form>",  # an attribute named "<form"
        b"<div a='x'<form>",
        b"<form<form>",  # one tag, named "form<form"
        b"<p/<form>",
    ],
)
def test_form_text_inside_another_tag_is_no_form(page: bytes) -> None:
    assert every_split(page + b"x</form>") == page + b"x</form>"
    assert every_split(page + b"x><form>") == page + b"x><form>" + FIELD


@pytest.mark.parametrize(
    "field",
    [
        b'<input type="hidden" name="sub1" value="abc">',
        b"<input type='hidden' name='sub1' value='abc'>",
        b"<input type=hidden name=sub1 value=abc>",
        b'<INPUT TYPE="HIDDEN" NAME="sub1" VALUE="abc">',
        b'<input\n  name = "sub1"\n>',
        b'<input name="s&#117;b1">',
        b"<input name=sub1 />",
        b"<input/name=sub1>",
    ],
)
def test_existing_field_is_not_duplicated(field: bytes) -> None:
    page = b'<form action="/x"><label>a <input name="a"></label><div>' + field + b"</div></form>"
    assert every_split(page) == page


@pytest.mark.parametrize(
    "not_field",
    [
        b'<input name="sub10">',
        b'<input name="SUB1">',
        b'<input data-name="sub1">',
        b'<input name="x" data-y="sub1">',
        b'<input name="other" name="sub1">',
        b"<!-- <input name=sub1> -->",
        b"<textarea><input name=sub1></textarea>",
        b"<inputs name=sub1>",
        b"<input name=sub1/>",  # the unquoted value is "sub1/"
        b"<input title=\"<input name='sub1'>\">",
    ],
)
def test_lookalike_field_does_not_count(not_field: bytes) -> None:
    page = b"<form>" + not_field + b"</form>"
    assert every_split(page) == b"<form>" + FIELD + not_field + b"</form>"


def test_existing_field_in_one_form_does_not_suppress_the_next() -> None:
    page = b"<form><input name=sub1></form><p>x</p><form><input name=a></form>"
    assert every_split(page) == (
        b"<form><input name=sub1></form><p>x</p><form>" + FIELD + b"<input name=a></form>"
    )


def test_existing_field_after_inner_markup_and_links() -> None:
    page = (
        b'<form><a href="http://t.example.com/x">l</a><!-- c --><script>1</script>'
        b"<input name=sub1></form>"
    )
    assert every_split(page, link_hosts=HOSTS) == page.replace(b"/x", b"/x?clickId=" + CID.encode())


def test_nested_form_is_ignored_like_browsers_do() -> None:
    page = b"<form id=a><form id=b><input name=x></form><form id=c></form>"
    assert every_split(page) == (
        b"<form id=a>" + FIELD + b"<form id=b><input name=x></form><form id=c>" + FIELD + b"</form>"
    )


def test_unclosed_form_gets_field_at_finish() -> None:
    rewriter = HtmlRewriter(CID)
    assert rewriter.feed(b"<p>a</p><form method=post>") == b"<p>a</p><form method=post>"
    assert rewriter.feed(b"<input name=a>") == b""  # held back until we know
    assert rewriter.finish() == FIELD + b"<input name=a>"


def test_form_is_released_as_soon_as_the_field_is_seen() -> None:
    rewriter = HtmlRewriter(CID)
    assert rewriter.feed(b"<form><input name=sub1>") == b"<form><input name=sub1>"
    assert rewriter.feed(b"<p>rest") == b"<p>rest"
    assert rewriter.finish() == b""


def test_max_hold_exceeded_injects_and_streams() -> None:
    body = b"<p>" + b"x" * 100 + b"</p>"
    page = b"<form>" + body * 10 + b"<input name=sub1></form>"
    rewriter = HtmlRewriter(CID, max_hold=300)
    out = []
    fed = sent = worst = 0
    for i in range(0, len(page), 50):
        out.append(rewriter.feed(page[i : i + 50]))
        fed += len(page[i : i + 50])
        sent += len(out[-1]) - (len(FIELD) if FIELD in out[-1] else 0)
        worst = max(worst, fed - sent)
    assert worst <= 300 + 50  # never more than the cap plus one chunk held back
    result = b"".join(out) + rewriter.finish()
    # The field came after the cap: too late, so ours is added (a duplicate is
    # better than a lost click id).
    assert result == b"<form>" + FIELD + body * 10 + b"<input name=sub1></form>"
    assert every_split(page, max_hold=300) == result
    assert rewrite(page, [7, 1, 300], max_hold=300) == result


def test_field_just_inside_max_hold_counts() -> None:
    field = b"<input name=sub1>"
    for hold in (len(field) - 1, len(field), len(field) + 1):
        out = every_split(b"<form>" + field + b"</form>", max_hold=hold)
        assert (FIELD in out) == (hold < len(field))


def test_max_hold_zero_never_holds() -> None:
    rewriter = HtmlRewriter(CID, max_hold=0)
    assert rewriter.feed(b"<form>") == b"<form>" + FIELD
    assert rewriter.feed(b"<input name=sub1>") == b"<input name=sub1>"


def test_unterminated_constructs_at_end_pass_through() -> None:
    for tail in (
        b"<form action='/x",
        b'<div title="<form>',
        b"<!-- <form>",
        b"<!-",
        b"<",
        b"</",
        b"<fo",
        b"<![CDATA[<form>",
        b"<script><form>",
        b"<a href='http://t.example.com/",
        b"<!DOCTYPE",
    ):
        page = b"<p>a</p>" + tail
        assert every_split(page, link_hosts=HOSTS) == page


def test_plain_text_lt_gt() -> None:
    page = b"<p>1 < 2 and 3 > 2, a<b, x <= y, <3 <-- </ 3></p><form>"
    assert every_split(page) == page + FIELD


def test_plaintext_swallows_the_rest() -> None:
    page = b"<plaintext><form></plaintext><form>"
    assert every_split(page) == page


def test_output_is_streamed_not_buffered() -> None:
    rewriter = HtmlRewriter(CID)
    for piece in (b"<html><body>", b"<div class='a b'>text</div>", b"<p>more</p>"):
        assert rewriter.feed(piece) == piece
    assert rewriter.feed(b"<di") == b""  # an undecided tag name waits
    assert rewriter.feed(b"v>") == b"<div>"
    assert rewriter.finish() == b""


def test_reusable_after_finish() -> None:
    rewriter = HtmlRewriter(CID)
    assert rewriter.feed(b"<form><!-- x") + rewriter.finish() == b"<form>" + FIELD + b"<!-- x"
    assert rewriter.feed(b"<form>") + rewriter.finish() == b"<form>" + FIELD


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        HtmlRewriter(CID, field_name="")
    with pytest.raises(ValueError):
        HtmlRewriter(CID, link_param="")
    with pytest.raises(ValueError):
        HtmlRewriter(CID, max_hold=-1)


def test_charsets_are_left_alone() -> None:
    for text in ("Привет, <b>мир</b>", "Grüße & naïve café"):
        for charset in ("utf-8", "cp1251", "latin-1"):
            try:
                encoded = text.encode(charset)
            except UnicodeEncodeError:
                continue
            page = b"<p>" + encoded + b"</p><form>" + encoded + b"</form>"
            out = every_split(page)
            assert out == b"<p>" + encoded + b"</p><form>" + FIELD + encoded + b"</form>"


# --------------------------------------------------------------------------
# Memory bounds
# --------------------------------------------------------------------------


def _peak_memory(chunks: Iterable[bytes], **kwargs: Any) -> tuple[int, int]:
    """The most memory the rewriter held between chunks (its own allocations only: other
    threads of the test run allocate meanwhile), and how many bytes it gave out."""
    rewriter = HtmlRewriter(CID, **kwargs)
    own = [tracemalloc.Filter(True, rewrite_module.__file__)]
    total_out = peak = 0
    tracemalloc.start()
    try:
        for chunk in chunks:
            total_out += len(rewriter.feed(chunk))
            held = tracemalloc.take_snapshot().filter_traces(own).statistics("filename")
            peak = max(peak, sum(stat.size for stat in held))
    finally:
        tracemalloc.stop()
    return peak, total_out


def test_memory_bound_never_closing_comment() -> None:
    chunk = b"<form> -- > x" * 630  # about 8 KiB, with no "-->"
    peak, out = _peak_memory([b"<!--"] + [chunk] * 200)
    assert peak < 200_000
    assert out >= 4 + len(chunk) * 199  # streamed, only a few bytes kept


@pytest.mark.parametrize(
    "opening",
    [b'<div title="', b"<a href='http://t.example.com/", b"<![CDATA[", b"<script>", b"<!x"],
)
def test_memory_bound_never_closing_constructs(opening: bytes) -> None:
    chunk = b"<form>x a=b " * 680
    peak, out = _peak_memory([opening] + [chunk] * 100, link_hosts=HOSTS)
    assert peak < 250_000
    assert out >= len(chunk) * 90


def test_memory_bound_never_closing_form() -> None:
    chunk = b"<p>x</p>" * 1024
    peak, out = _peak_memory([b"<form>"] + [chunk] * 100)
    assert peak < 300_000
    assert out >= len(chunk) * 90


# --------------------------------------------------------------------------
# Link decoration
# --------------------------------------------------------------------------

Q = b"clickId=" + CID.encode()


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (b'<a href="http://t.example.com/x">', b'<a href="http://t.example.com/x?' + Q + b'">'),
        (b'<a href="https://T.Example.COM">', b'<a href="https://T.Example.COM?' + Q + b'">'),
        (b'<a href="//t.example.com/p?a=1">', b'<a href="//t.example.com/p?a=1&amp;' + Q + b'">'),
        (
            b'<a href="http://t.example.com:8080/">',
            b'<a href="http://t.example.com:8080/?' + Q + b'">',
        ),
        (
            b'<a href="http://u:p@t.example.com/">',
            b'<a href="http://u:p@t.example.com/?' + Q + b'">',
        ),
        (
            b'<a href="https://offer.example.net/o?x=1#top">',
            b'<a href="https://offer.example.net/o?x=1&amp;' + Q + b'#top">',
        ),
        (b'<a href="http://t.example.com/?">', b'<a href="http://t.example.com/?' + Q + b'">'),
        (
            b'<a href="http://t.example.com/?a&amp;">',
            b'<a href="http://t.example.com/?a&amp;' + Q + b'">',
        ),
        (
            b'<a href="http://t.example.com/?a=1&amp;b=2&copy=3&lt=4">',
            b'<a href="http://t.example.com/?a=1&amp;b=2&amp;copy=3&amp;lt=4&amp;' + Q + b'">',
        ),
        (b"<a href='http://t.example.com/s'>", b'<a href="http://t.example.com/s?' + Q + b'">'),
        (b"<a href=http://t.example.com/u>", b'<a href="http://t.example.com/u?' + Q + b'">'),
        (b"<a href=http://t.example.com/u/>", b'<a href="http://t.example.com/u/?' + Q + b'">'),
        (
            b'<A CLASS="cta" HREF = "http://t.example.com/" target=_blank>',
            b'<A CLASS="cta" HREF = "http://t.example.com/?' + Q + b'" target=_blank>',
        ),
        (
            b'<a\n title="a>b"\n href="http://t.example.com/"\n>',
            b'<a\n title="a>b"\n href="http://t.example.com/?' + Q + b'"\n>',
        ),
        (b'<a href=" http://t.example.com/ ">', b'<a href=" http://t.example.com/?' + Q + b' ">'),
        (b'<a href="http://t.example.com./">', b'<a href="http://t.example.com./?' + Q + b'">'),
        (
            b'<a href="http://t.example.com/caf\xc3\xa9?q=&#8364;">',
            b'<a href="http://t.example.com/caf\xc3\xa9?q=&#8364;&amp;' + Q + b'">',
        ),
        (
            b'<a href="http://t.example.com/?q=&quot;x&#39;">',
            b'<a href="http://t.example.com/?q=&quot;x&#x27;&amp;' + Q + b'">',
        ),
    ],
)
def test_link_decorated(tag: bytes, expected: bytes) -> None:
    assert every_split(tag + b"link</a>", link_hosts=HOSTS) == expected + b"link</a>"


@pytest.mark.parametrize(
    "tag",
    [
        b'<a href="http://other.example.com/t.example.com">',
        b'<a href="http://t.example.com.evil.com/">',
        b'<a href="http://evil.com/?u=http://t.example.com/">',
        b'<a href="http://xt.example.com/">',
        b'<a href="/relative/t.example.com">',
        b'<a href="t.example.com/x">',
        b'<a href="ftp://t.example.com/">',
        b"<a href=\"javascript:go('http://t.example.com')\">",
        b'<a href="http://t.example.com/?clickId=1">',
        b'<a href="http://t.example.com/?a=1&amp;clickId=">',
        b'<a href="http://t.example.com/?click%49d=1">',
        b'<a href="https://t.example.com\\@evil.com/">',
        b'<a href="http://[t.example.com/">',
        b'<a href="http://[::1]/t.example.com">',
        b'<a href="http://t.example.com%2eevil.com/">',
        b'<a href="http://t.exa\nmple.com/?clickId=1">',
        b"<a href>",
        b"<a href=>",
        b'<a data-href="http://t.example.com/">',
        b'<a title="http://t.example.com/">',
        b'<area href="http://t.example.com/">',
        b'<link href="http://t.example.com/">',
        b'<img src="http://t.example.com/p.png">',
        b'<abbr title="http://t.example.com/">',
    ],
)
def test_link_untouched(tag: bytes) -> None:
    page = tag + b"http://t.example.com/</a>"
    assert every_split(page, link_hosts=HOSTS) == page


def test_only_first_href_counts() -> None:
    page = b'<a href="/x" href="http://t.example.com/">'
    assert every_split(page, link_hosts=HOSTS) == page
    page = b'<a href="http://t.example.com/" href="/x">'
    assert every_split(page, link_hosts=HOSTS) == (
        b'<a href="http://t.example.com/?' + Q + b'" href="/x">'
    )


def test_huge_link_tag_passes_through_unchanged() -> None:
    # Past 64 KiB an <a> tag is no longer kept in memory to be rewritten.
    page = b'<a data-x="' + b"x" * 70_000 + b'" href="http://t.example.com/">l</a><form>'
    expected = page + FIELD
    assert rewrite(page, link_hosts=HOSTS) == expected
    for chunks in ([8192], [1], [70_000], [65_000, 10], [65_537, 1]):
        assert rewrite(page, chunks, link_hosts=HOSTS) == expected


def test_huge_input_tag_is_not_inspected() -> None:
    # Too long to be kept and looked at: the field is added (harmless).
    field = b'<input data-x="' + b"x" * 70_000 + b'" name="sub1">'
    page = b"<form>" + field + b"</form>"
    expected = b"<form>" + FIELD + field + b"</form>"
    for chunks in (None, [8192], [1], [70_000], [65_000, 10]):
        assert rewrite(page, chunks, max_hold=200_000) == expected


def test_host_name_elsewhere_is_ignored() -> None:
    page = (
        b"<p>Visit t.example.com or http://t.example.com/ today</p>"
        b'<img alt="t.example.com" src="http://t.example.com/i.png">'
        b'<a href="/x" title="http://t.example.com/">x</a>'
    )
    assert every_split(page, link_hosts=HOSTS) == page


def test_links_off_by_default() -> None:
    page = b'<a href="http://t.example.com/">'
    assert every_split(page) == page


def test_link_param_and_hosts_options() -> None:
    page = b'<a href="http://T.example.com/?cid=1"><a href="http://t.example.com/">'
    out = every_split(page, link_hosts="t.example.com", link_param="cid")
    assert out == (
        b'<a href="http://T.example.com/?cid=1"><a href="http://t.example.com/?cid='
        + CID.encode()
        + b'">'
    )
    assert every_split(page, link_hosts=["T.EXAMPLE.COM."], link_param="cid") == out


def test_idn_host_given_in_unicode() -> None:
    page = b'<a href="https://xn--e1afmkfd.xn--p1ai/">'
    out = every_split(page, link_hosts=["пример.рф"])
    assert out == b'<a href="https://xn--e1afmkfd.xn--p1ai/?' + Q + b'">'


def test_links_inside_non_markup_untouched() -> None:
    link = b'<a href="http://t.example.com/">'
    for wrap in (
        b"<!--%s-->",
        b"<script>%s</script>",
        b"<textarea>%s</textarea>",
        b'<b title="%s">',
    ):
        page = wrap % link
        assert every_split(page, link_hosts=HOSTS) == page


def test_link_inside_held_form() -> None:
    page = b'<form><a href="http://t.example.com/">x</a></form>'
    assert every_split(page, link_hosts=HOSTS) == (
        b"<form>" + FIELD + b'<a href="http://t.example.com/?' + Q + b'">x</a></form>'
    )


# --------------------------------------------------------------------------
# Chunking invariance against an independent reference tokenizer
# --------------------------------------------------------------------------

_WS = b"\t\n\f\r "
_RAW = {b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes"}


def _alpha(c: int) -> bool:
    return chr(c).isascii() and chr(c).isalpha()


Attrs = list[tuple[bytes, bytes | None]]


def _ref_tag(data: bytes, i: int) -> tuple[int, bytes, Attrs] | None:
    """Character by character: (end, name, attributes) of the tag at ``i``.

    As in the WHATWG tokenizer, only ">" outside quotes ends it: a "<" is just
    a character of the name or value it is in.
    """
    n = len(data)
    j = i + 1 + (data[i + 1] == ord("/"))
    k = j
    while k < n and data[k] not in _WS + b"/>":
        k += 1
    name = data[j:k].lower()
    attrs: Attrs = []
    state = "before_name"
    attr_start = value_start = 0
    while k < n:
        ch = data[k : k + 1]
        if state in ("dq", "sq"):
            quote = b'"' if state == "dq" else b"'"
            end = data.find(quote, k)
            if end < 0:
                return None
            attrs[-1] = (attrs[-1][0], data[value_start : end + 1])
            state, k = "before_name", end + 1
            continue
        if ch == b">":
            if state == "unquoted":
                attrs[-1] = (attrs[-1][0], data[value_start:k])
            elif state in ("name",):
                attrs.append((data[attr_start:k], None))
            elif state == "before_value":
                attrs[-1] = (attrs[-1][0], b"")
            return k + 1, name, attrs
        if state == "before_name":
            if ch in (b"/",) or ch in [bytes([c]) for c in _WS]:
                pass
            else:
                state, attr_start = "name", k
        elif state == "name":
            if ch == b"=":
                attrs.append((data[attr_start:k], None))
                state = "before_value"
            elif ch == b"/":
                attrs.append((data[attr_start:k], None))
                state = "before_name"
            elif ch[0] in _WS:
                attrs.append((data[attr_start:k], None))
                state = "after_name"
        elif state == "after_name":
            if ch == b"=":
                state = "before_value"
            elif ch == b"/":
                state = "before_name"
            elif ch[0] not in _WS:
                state, attr_start = "name", k
        elif state == "before_value":
            if ch == b'"':
                state, value_start = "dq", k
            elif ch == b"'":
                state, value_start = "sq", k
            elif ch[0] not in _WS:
                state, value_start = "unquoted", k
        elif state == "unquoted" and ch[0] in _WS:
            attrs[-1] = (attrs[-1][0], data[value_start:k])
            state = "before_name"
        k += 1
    return None


def _ref_script_end(data: bytes, i: int) -> int:
    """Where the script data starting at ``i`` ends (the "<" of its end tag), or -1."""
    state = "data"
    n = len(data)
    tag = re.compile(rb"(?i:script)[\t\n\f\r />]")
    while i < n:
        if state == "data":
            if data.startswith(b"<!--", i):
                state, i = "escaped", i + 2
                continue
            if data.startswith(b"</", i) and tag.match(data, i + 2):
                return i
        elif data.startswith(b"-->", i):
            state, i = "data", i + 3
            continue
        elif state == "escaped":
            if data.startswith(b"</", i) and tag.match(data, i + 2):
                return i
            if data.startswith(b"<", i) and tag.match(data, i + 1):
                state, i = "double", i + 7
                continue
        elif data.startswith(b"</", i) and tag.match(data, i + 2):
            state, i = "escaped", i + 9
            continue
        i += 1
    return -1


def _ref_value(attrs: Attrs, want: bytes) -> str | None:
    """The first ``want`` attribute's value: None when absent, "" when bare."""
    for key, raw in attrs:
        if key.lower() == want:
            value = raw[1:-1] if raw and raw[:1] in b"'\"" else raw or b""
            return value.decode("latin-1").replace("&#117;", "u")
    return None


def reference(data: bytes, *, link_hosts: Sequence[str] = (), max_hold: int = 65536) -> bytes:
    """A slow, straightforward model of the rewriter, sharing none of its scanning code."""
    linker = HtmlRewriter(CID, link_hosts=link_hosts)  # only for the URL logic
    edits: list[tuple[int, int, bytes]] = []
    forms: list[dict[str, Any]] = []
    form: dict[str, Any] | None = None
    field_ids: set[str] = set()
    n = len(data)
    i = 0
    while (i := data.find(b"<", i)) >= 0 and i + 1 < n:
        c = data[i + 1]
        if _alpha(c) or (c == ord("/") and i + 2 < n and _alpha(data[i + 2])):
            parsed = _ref_tag(data, i)
            if parsed is None:
                break
            end, name, attrs = parsed
            is_end = c == ord("/")
            if (
                not is_end
                and name in (b"input", b"button", b"textarea")
                and end - i <= 65536
                and _ref_value(attrs, b"name") == "sub1"
            ):
                owner = _ref_value(attrs, b"form")
                if owner == "":
                    pass  # belongs to no form
                elif owner is None or (form is not None and owner == form["id"]):
                    if form is not None:
                        form.setdefault("field", end)
                else:
                    field_ids.add(owner)
            if is_end:
                if name == b"form":
                    form = None
            elif name == b"form":
                if form is None:
                    long = end - i > 65536
                    form = {"start": end, "id": "" if long else _ref_value(attrs, b"id") or ""}
                    if form["id"] not in field_ids:
                        forms.append(form)
            elif name == b"a" and link_hosts and end - i <= 65536:
                new = linker._rewrite_link(data[i:end])
                if new is not None:
                    edits.append((i, end, new))
            elif name == b"script":
                i = _ref_script_end(data, end)
                if i < 0:
                    break
                continue
            elif name in _RAW:
                m = re.compile(rb"</(?i:" + name + rb")[\t\n\f\r />]").search(data, end)
                if m is None:
                    break
                i = m.start()
                continue
            elif name == b"plaintext":
                break
            i = end
        elif c == ord("/") and i + 2 < n and data[i + 2] == ord(">"):
            i += 3
        elif data.startswith(b"<!--", i):
            k = i + 4
            if data[k : k + 1] == b">":
                i = k + 1
            elif data[k : k + 2] == b"->":
                i = k + 2
            else:
                m = re.compile(rb"--!?>").search(data, k)
                if m is None:
                    break
                i = m.end()
        elif c in b"!/?":  # a bogus comment, "<![CDATA[" too outside foreign content
            if (c == ord("/") and i + 2 >= n) or (
                c == ord("!")
                and (b"<!--".startswith(data[i:]) or b"<![CDATA[".startswith(data[i:]))
            ):
                break
            k = data.find(b">", i + 1 + (c != ord("?")))
            if k < 0:
                break
            i = k + 1
        else:
            i += 1
    for form in forms:
        field = form.get("field")
        if field is None or field - form["start"] > max_hold:
            edits.append((form["start"], form["start"], FIELD))
    out = []
    pos = 0
    for start, end, new in sorted(edits):
        out += [data[pos:start], new]
        pos = end
    out.append(data[pos:])
    return b"".join(out)


FRAGMENTS = [
    b"<form>",
    b"<FORM action='/x' data-x=\"a>b\">",
    b"<form\nmethod=post>",
    b"</form>",
    b"</FORM >",
    b"<input name=sub1>",
    b'<input type="hidden" name="sub1" value="v">',
    b"<input name='other'>",
    b"<input name=sub10>",
    b"<!--",
    b"-->",
    b"--!>",
    b"<!-- c -->",
    b"<!-->",
    b"<script>",
    b"</script>",
    b"<SCRIPT type=x>",
    b"</script >",
    b"<script><!--",
    b"<style>",
    b"</style>",
    b"<textarea>",
    b"</textarea>",
    b"<title>",
    b"</title>",
    b"<xmp>",
    b"</xmp>",
    b"<![CDATA[",
    b"]]>",
    b'<div title="',
    b"<div title='",
    b'">',
    b"'>",
    b"'",
    b'"',
    b"=",
    b" a=",
    b"<b ",
    b"<p>",
    b"</p>",
    b"text ",
    b"x",
    b" ",
    b"\n",
    b"<",
    b">",
    b"</",
    b"<!",
    b"<!-",
    b"<?x?>",
    b"<!DOCTYPE html>",
    b"</>",
    b"<formx>",
    b"<form-foo>",
    b"<img src=x alt='<form>'>",
    b'<a href="http://t.example.com/x?y=1&amp;z">',
    b"</a>",
    b"<a href=//t.example.com>",
    b"<a title='x>y' href='https://T.EXAMPLE.COM:81/#f'>",
    b"t.example.com",
    b"<a href='/rel'>",
    b'<a href="http://t.example.com/?clickId=1">',
    b"<div data-t=\"<form><input name='sub1'>\">",
    b"<!bogus <form>",
    b"<i<form>",
    b"</s<form x>",
    b"<font id=<form>",
    b"<div <form>",
    b"<form id=f>",
    b"<form id='g' class=x>",
    b"<button name=sub1>",
    b"<textarea name='sub1'>",
    b"<input form=f name=sub1>",
    b"<button name=sub1 form='g'>",
    b"<input name=sub1 form>",
    b"<input name=sub1 form=h>",
]


def random_page(rnd: random.Random, size: int) -> bytes:
    return b"".join(rnd.choice(FRAGMENTS) for _ in range(rnd.randrange(size)))


def random_chunks(rnd: random.Random) -> list[int]:
    style = rnd.randrange(4)
    if style == 0:
        return [1]
    if style == 1:
        return [rnd.randrange(1, 8) for _ in range(rnd.randrange(1, 10))]
    if style == 2:
        return [rnd.randrange(1, 64) for _ in range(rnd.randrange(1, 10))]
    return [rnd.randrange(64, 1024)]


@pytest.mark.parametrize("seed", range(40))
def test_random_pages_match_reference_for_any_chunking(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(25):
        page = random_page(rnd, 60)
        hosts = HOSTS if rnd.random() < 0.5 else ()
        hold = rnd.choice([65536, 65536, 0, 10, 40, 100])
        expected = reference(page, link_hosts=hosts, max_hold=hold)
        assert rewrite(page, link_hosts=hosts, max_hold=hold) == expected, page
        for _ in range(4):
            chunks = random_chunks(rnd)
            got = rewrite(page, chunks, link_hosts=hosts, max_hold=hold)
            assert got == expected, (page, chunks)


@pytest.mark.parametrize("seed", range(10))
def test_without_forms_or_links_output_is_identical(seed: int) -> None:
    rnd = random.Random(1000 + seed)
    plain = [f for f in FRAGMENTS if b"example" not in f.lower()]
    for _ in range(25):
        page = b"".join(rnd.choice(plain) for _ in range(rnd.randrange(80)))
        page = re.sub(rb"(?i)form", b"from", page)
        for chunks in ([1], random_chunks(rnd), random_chunks(rnd)):
            assert rewrite(page, chunks, link_hosts=HOSTS) == page


def test_random_bytes_are_passed_through() -> None:
    rnd = random.Random(7)
    for _ in range(200):
        page = bytes(rnd.choice(b"<>/!-'\"= aAfFormxsciptl\n\x00\xff") for _ in range(120))
        page = page.replace(b"orm", b"orn")
        assert rewrite(page, random_chunks(rnd)) == page
