"""Benchmark bangi_landing.core.rewrite.HtmlRewriter on a realistic landing page.

Run: python bench/bench_rewrite.py [--quick]

Prints throughput at 8 KiB chunks (forms only, and forms + link decoration)
and the time to rewrite 1, 2 and 4 MB pages at 8 KiB and at 1-byte chunks, to
show that the cost is linear in the page size whatever the chunking.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bangi_landing.core.rewrite import HtmlRewriter

CLICK_ID = "3f1c2a9e-8b7d-4c65-9a10-2b3c4d5e6f70"
HOSTS = ("offer.example.com", "trk.example.net")

HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Miracle Cream &amp; Co. | Official site</title>
<link rel="stylesheet" href="/static/css/main.css?v=1729">
<style>
body { font: 16px/1.4 Arial, sans-serif; margin: 0 }
.hero > .cta { color: #fff; background: linear-gradient(#e66465, #9198e5) }
.card:hover > a[href^="http"] { text-decoration: underline }
</style>
<script>
window.dataLayer = window.dataLayer || [];
function gtag(){ dataLayer.push(arguments); }
if (a < b && c > d) { document.write("<form></form>"); }
</script>
</head>
<body class="landing">
"""

FORM = """<form action="/order" method="post" class="order-form" data-validate="a>b">
  <label for="name{i}">Name</label>
  <input id="name{i}" type="text" name="name" placeholder="Your name" required>
  <input type="tel" name="phone" placeholder="+1 ___ ___ ____" required>
  <select name="country"><option value="us">US</option><option value="ca">CA</option></select>
  <button type="submit" class="btn btn-primary">Order now &raquo;</button>
</form>
"""


def make_page(size: int, seed: int = 1, tracker_every: int = 10) -> bytes:
    """A landing page of about ``size`` bytes: mostly ordinary markup."""
    rnd = random.Random(seed)

    def buy_url(i: int) -> str:
        # One "buy" link in ``tracker_every`` goes to a tracker host (a real
        # lander has a few dozen of those); the others go to the shop itself.
        if i % tracker_every == 0:
            return f"https://{rnd.choice(HOSTS)}/click?o={i}&amp;s=lp"
        return f"/buy?item={i}&amp;ref=lp"

    parts = [HEAD]
    total = len(HEAD)
    i = 0
    while total < size:
        i += 1
        block = [
            f'<div class="section section-{i}" id="s{i}">\n',
            '  <div class="container"><div class="row"><div class="col-md-6 col-sm-12">\n',
            f'    <h2 class="title">Reason #{i}: it <em>really</em> works</h2>\n',
            "    <p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do "
            "eiusmod tempor incididunt ut labore et dolore magna aliqua. "
            '<span class="hl">Ut enim</span> ad minim veniam, quis nostrud '
            "exercitation ullamco laboris nisi ut aliquip ex ea commodo.</p>\n",
            f'    <img src="/static/img/photo{i}.jpg" alt="Photo {i}" width="320" '
            f'height="240" loading="lazy" class="img-fluid rounded">\n',
            f'    <p>Read <a href="/reviews/{i}" class="link">the reviews</a> or '
            f'<a href="{buy_url(i)}" class="cta" rel="nofollow">buy it here</a>, see also '
            f'<a href="https://www.wikipedia.org/wiki/Item_{i}">Wikipedia</a>.</p>\n',
            '    <ul class="features"><li><span>Fast</span></li><li><span>Safe</span></li>'
            "<li><span>Cheap</span></li></ul>\n",
            "  </div></div></div>\n",
            "</div>\n",
        ]
        if i % 10 == 0:
            block.append("<!-- testimonial block: <form> is not a form here -->\n")
        if i % 25 == 0:
            block.append(
                "<script>\n(function(){ var x = document.querySelectorAll('.cta');"
                " for (var k = 0; k < x.length; k++) { x[k].dataset.n = k; } })();\n"
                "</script>\n"
            )
        if i % 40 == 0:
            block.append(FORM.format(i=i))
        chunk = "".join(block)
        parts.append(chunk)
        total += len(chunk)
    parts.append("</body>\n</html>\n")
    return "".join(parts).encode("utf-8")


def rewrite(page: bytes, chunk_size: int, hosts: tuple[str, ...]) -> int:
    rewriter = HtmlRewriter(CLICK_ID, link_hosts=hosts)
    feed = rewriter.feed
    out = 0
    if chunk_size == 1:
        for i in range(len(page)):
            out += len(feed(page[i : i + 1]))
    else:
        for i in range(0, len(page), chunk_size):
            out += len(feed(page[i : i + chunk_size]))
    return out + len(rewriter.finish())


def best_of(repeat: int, func: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def describe(page: bytes) -> str:
    low = page.lower()
    tracker = sum(low.count(f"//{h}".encode()) for h in HOSTS)
    return (
        f"{len(page):,} bytes, {low.count(b'<') - low.count(b'</'):,} start tags, "
        f"{low.count(b'<a '):,} links ({tracker} to tracker hosts), "
        f"{low.count(b'<img '):,} images, {low.count(b'<script'):,} scripts, "
        f"{low.count(b'<!--'):,} comments, {low.count(b'<form '):,} forms"
    )


def check(page: bytes) -> None:
    """The numbers mean nothing if the work is not done: check the result."""
    rewriter = HtmlRewriter(CLICK_ID, link_hosts=HOSTS)
    out = b"".join(rewriter.feed(page[i : i + 8192]) for i in range(0, len(page), 8192))
    out += rewriter.finish()
    fields = out.count(f'name="sub1" value="{CLICK_ID}"'.encode())
    links = out.count(f"clickId={CLICK_ID}".encode())
    assert fields == page.count(b"<form action"), fields
    assert links == sum(page.count(f"//{h}/".encode()) for h in HOSTS), links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1-byte chunks for 1 MB only")
    args = parser.parse_args()

    mib = 1 << 20
    pages = {m: make_page(m * mib) for m in (1, 2, 4)}
    check(pages[1])
    print(f"Python {sys.version.split()[0]}; 1 MB page: {describe(pages[1])}")
    print()
    print(f"{'config':<16}{'chunk':>8}{'MB/s':>10}")
    for label, hosts in (("forms", ()), ("forms + links", HOSTS)):
        for chunk in (8192, 65536):
            page = pages[1]
            t = best_of(7, partial(rewrite, page, chunk, hosts))
            print(f"{label:<16}{chunk:>8}{len(page) / mib / t:>10.1f}")
    print()
    print(f"{'config':<16}{'size':>6}{'8 KiB chunks':>16}{'1-byte chunks':>16}")
    for label, hosts in (("forms", ()), ("forms + links", HOSTS)):
        for m, page in pages.items():
            t8 = best_of(5, partial(rewrite, page, 8192, hosts))
            if args.quick and m > 1:
                t1s = "-"
            else:
                t1s = f"{best_of(1, partial(rewrite, page, 1, hosts)):.2f} s"
            print(f"{label:<16}{m:>4}MB{t8 * 1000:>13.1f} ms{t1s:>16}")


if __name__ == "__main__":
    main()
