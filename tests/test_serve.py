"""`bangi-landing serve`: a landing made of files, served in a real process against the tracker."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

from bangi_landing import files
from bangi_landing.cli import main

from .conftest import Tracker
from .utils import (
    Recorder,
    eventually,
    form_click_ids,
    free_port,
    live_server,
    running,
    wait_for_port,
)

SHOP_SECRET = "shop-secret-0123456789abcdef"
OUTSIDE = "TOP SECRET, outside the landing"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
CSS = b"body { background: url(../img/hero.png); } /* <form action=x></form> */\n"
PHP = "<?php mail('owner@example.com', 'order', $_POST['phone']); header('Location: success.html');"
FORM = """<form action="{action}" method="post">
  <input name="name"><input name="phone"><button>Order</button>
</form>"""


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        '<link rel="stylesheet" href="css/style.css"></head>'
        f'<body><img src="img/hero.png" alt="">{body}</body></html>'
    )


# The order as the bundled tracker's fake network takes it, sub1 added by NetworkOrders.
ORDER_TABLE = """
[order]
url = "{tracker_url}/network/orders"
success = ["status", "ok"]
order_id = "id"

[order.fields]
offer_id = "1001"
name = "{{name}}"
phone = "{{phone}}"
sub2 = "{{source}}"
"""


def make_landing(folder: Path, tracker_url: str, *, order: bool = True) -> Path:
    """A bought landing as it comes: pages, a form handler in PHP, images, CSS, settings.

    With ``order``, its ``landing.toml`` forwards each order to the fake network
    of the tracker at ``tracker_url``.
    """
    (folder / "css").mkdir(parents=True)
    (folder / "img").mkdir()
    (folder / "index.html").write_text(
        page("Aurora ring", FORM.format(action="order.php") + '<a href="about.html">More</a>')
    )
    (folder / "about.html").write_text(page("About", FORM.format(action="order.php")))
    (folder / "success.html").write_text(page("Thank you", "<h1>Thank you!</h1>"))
    (folder / "order.php").write_text(PHP)
    (folder / "css" / "style.css").write_bytes(CSS)
    (folder / "img" / "hero.png").write_bytes(PNG)
    (folder / "img" / "café crème.png").write_bytes(PNG[::-1])
    (folder / "landing.toml").write_text(
        f'tracker_url = "{tracker_url}"\ncampaign_id = 7\nsecret_key_env = "SHOP_SECRET"\n'
        + (ORDER_TABLE.format(tracker_url=tracker_url) if order else "")
    )
    return folder


@pytest.fixture
def landing_dir(tmp_path: Path, tracker: Tracker) -> Path:
    (tmp_path / "outside.txt").write_text(OUTSIDE)
    return make_landing(tmp_path / "site", tracker.url)


@contextmanager
def served(path: Path, log: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``bangi-landing serve path *options`` in a process of its own; its URL and process."""
    port = free_port()
    env = {**os.environ, "SHOP_SECRET": SHOP_SECRET}
    command = [sys.executable, "-m", "bangi_landing", "serve", str(path), "--port", str(port)]
    command += options
    with running(command, env, log) as process:
        wait_for_port(port, process, log)
        try:
            yield f"http://127.0.0.1:{port}", process
        finally:  # stopped as an operator stops it: a zip's temporary folder goes too
            process.terminate()
            process.wait(30)


@contextmanager
def serving(path: Path, log: Path, *options: str) -> Iterator[str]:
    """``bangi-landing serve path *options`` in a process of its own; its URL."""
    with served(path, log, *options) as (url, _):
        yield url


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written: requests would resolve its ``..`` itself."""
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_journey(url: str, tracker: Tracker) -> None:
    """A visit: a click and the field in every form; the POST: the lead, the order at the
    network with the page's sub1, and the thank-you page."""
    browser = requests.Session()
    home = browser.get(f"{url}/?source=fb", timeout=5)
    assert home.status_code == 200
    [click] = eventually(lambda: tracker.events(type="click"))
    assert click["campaignId"] == 7
    assert form_click_ids(home.text) == [click["clickId"]]
    about = browser.get(f"{url}/about.html", timeout=5)
    assert form_click_ids(about.text) == [click["clickId"]]  # the same journey

    [sub1] = form_click_ids(about.text)
    order = browser.post(
        f"{url}/order.php",
        data={"name": "Ana Lima", "phone": "+55 11 99999 0000", "sub1": sub1},
        allow_redirects=False,
        timeout=5,
    )
    assert order.status_code == 303
    assert order.headers["Location"] == "/success.html"
    thanks = browser.get(url + order.headers["Location"], timeout=5)
    assert thanks.status_code == 200
    assert "Thank you!" in thanks.text
    [lead] = eventually(lambda: tracker.events(type="lead"))
    assert lead["clickId"] == click["clickId"]
    assert "99999" not in str(lead["params"])  # personal data stays on the landing
    [sent] = eventually(tracker.store.network_orders)
    assert sent["clickId"] == click["clickId"]
    assert sent["params"] == {
        "offer_id": "1001",
        "name": "Ana Lima",
        "phone": "+55 11 99999 0000",
        "sub2": "fb",  # the landing URL's ?source=, kept for the journey
        "sub1": click["clickId"],
    }
    assert len(tracker.events(type="click")) == 1


def test_a_file_landing_gives_the_click_the_field_and_the_lead(
    landing_dir: Path, tracker: Tracker, tmp_path: Path
) -> None:
    with serving(landing_dir, tmp_path / "serve.log") as url:
        assert_journey(url, tracker)


def test_workers_share_the_port_and_one_that_dies_is_replaced(
    landing_dir: Path, tracker: Tracker, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"

    def started() -> list[int]:
        return [int(pid) for pid in re.findall(r"Worker (\d+) started", log.read_text())]

    with served(landing_dir, log, "--workers", "2", "--threads", "2") as (url, process):
        first, second = eventually(lambda: len(started()) == 2 and started())
        assert_journey(url, tracker)  # each request to either worker: one journey, one cookie
        os.kill(first, signal.SIGKILL)
        replacement = eventually(lambda: started()[2:])[0]
        assert f"Worker {first} ended (killed by SIGKILL); starting another" in log.read_text()
        for _ in range(10):
            assert requests.get(f"{url}/css/style.css", timeout=5).content == CSS
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the parent and its workers get it
        assert process.wait(30) == 0
    for pid in (second, replacement):  # stopped and reaped with their parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "Traceback" not in log.read_text()


def test_assets_come_back_cached_and_untouched(
    landing_dir: Path, tracker: Tracker, tmp_path: Path
) -> None:
    with serving(landing_dir, tmp_path / "serve.log") as url:
        for path, body in (
            ("/css/style.css", CSS),
            ("/img/hero.png", PNG),
            ("/img/caf%C3%A9%20cr%C3%A8me.png", PNG[::-1]),  # a name in UTF-8, percent-encoded
        ):
            asset = requests.get(url + path, timeout=5)
            assert asset.status_code == 200
            assert asset.content == body  # not a byte rewritten, the <form> in a comment too
            assert asset.headers["Cache-Control"] == f"max-age={files.ASSET_MAX_AGE}, public"
            assert "Set-Cookie" not in asset.headers
            again = requests.get(
                url + path, headers={"If-None-Match": asset.headers["ETag"]}, timeout=5
            )
            assert again.status_code == 304
        home = requests.get(url, timeout=5)
        assert home.headers["Cache-Control"] == "no-store"  # a page carries its own clickId
        assert "ETag" not in home.headers
        assert "Last-Modified" not in home.headers
        # The page is the one visit: the assets before it made no event.
        eventually(lambda: tracker.events(type="click"))
        assert [event["type"] for event in tracker.events()] == ["click"]


@pytest.mark.parametrize(
    "path",
    [
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        "/css/%2E%2E/%2e%2e/outside.txt",
        "/%2e%2e%2foutside.txt",
        "/linked.txt",
        "/linked-folder/outside.txt",
        "/landing.toml",
        "/order.php",
        "/.env",
        "/nothing-here.html",
        "/about.html/",  # a file named as a folder
        "/css/style.css/",
        "/index.html//",
        "/%ff.html",  # not UTF-8
        "/%00.html",
        "/" + "a" * 5000,
    ],
)
def test_paths_never_leave_the_folder(
    landing_dir: Path, tracker: Tracker, tmp_path: Path, path: str
) -> None:
    (landing_dir / "linked.txt").symlink_to(tmp_path / "outside.txt")
    (landing_dir / "linked-folder").symlink_to(tmp_path)
    (landing_dir / ".env").write_text(f"SHOP_SECRET={SHOP_SECRET}")
    with serving(landing_dir, tmp_path / "serve.log") as url:
        status, body = raw_get(url, path)
        assert status == 404
        assert b"Not found" in body  # the 404 page, not a traceback
        for secret in (OUTSIDE.encode(), b"<?php", b"tracker_url", SHOP_SECRET.encode()):
            assert secret not in body
        assert raw_get(url, "/css/style.css") == (200, CSS)  # the same server serves files
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


@pytest.mark.parametrize("trusted", [True, False])
def test_behind_a_trusted_https_proxy_the_cookie_is_secure(
    landing_dir: Path, tracker: Tracker, tmp_path: Path, trusted: bool
) -> None:
    options = ("--trusted-proxy", "127.0.0.1") if trusted else ()
    with serving(landing_dir, tmp_path / "serve.log", *options) as url:
        home = requests.get(url, headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert ("; Secure" in home.headers["Set-Cookie"]) == trusted


def zipped(folder: Path, archive: Path) -> Path:
    """``folder`` zipped as an owner zips it: the folder itself, with its files under it."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            out.write(path, path.relative_to(folder.parent).as_posix())
    return archive


def test_the_same_landing_from_a_zip(landing_dir: Path, tracker: Tracker, tmp_path: Path) -> None:
    archive = zipped(landing_dir, tmp_path / "shop.zip")
    (landing_dir / "landing.toml").rename(tmp_path / "landing.toml")  # the settings beside it
    with serving(archive, tmp_path / "serve.log") as url:
        assert_journey(url, tracker)
        assert raw_get(url, "/landing.toml")[0] == 404


def check(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setenv("SHOP_SECRET", SHOP_SECRET)
    result = CliRunner().invoke(main, ["serve", "--check", str(path)], terminal_width=200)
    return result.exit_code, result.output


def test_a_zip_with_paths_outside_its_root_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("index.html", page("Home", ""))
        out.writestr("../../escaped.html", "gotcha")
    code, output = check(archive, monkeypatch)
    assert code == 1
    assert "'../../escaped.html' points outside the archive" in output
    assert not (tmp_path.parent / "escaped.html").exists()


def test_a_zip_bomb_is_refused_before_it_is_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("index.html", page("Home", ""))
        out.writestr("zeros.bin", bytes(20 * 1024 * 1024))  # ~20 KiB packed
    code, output = check(archive, monkeypatch)
    assert code == 1
    assert "over the limit of 100 to 1 (a zip bomb?)" in output

    # And a large archive, however little it is compressed.
    monkeypatch.setattr(files, "MAX_ZIP_SIZE", 1000)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        out.writestr("index.html", page("Home", "x" * 1000))
    code, output = check(archive, monkeypatch)
    assert code == 1
    assert "uncompressed, over the limit of 1000" in output

    # And an archive of very many files, however small.
    monkeypatch.setattr(files, "MAX_ZIP_FILES", 2)
    with zipfile.ZipFile(archive, "w") as out:
        for name in ("index.html", "a.css", "b.css"):
            out.writestr(name, page("Home", ""))
    code, output = check(archive, monkeypatch)
    assert code == 1
    assert "3 files, over the limit of 2" in output


def test_check_prints_what_serve_will_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_landing(tmp_path / "site", "http://127.0.0.1:9")
    (folder / "about.html").write_text(page("About", FORM.format(action="api/send")))
    code, output = check(folder, monkeypatch)
    assert code == 0, output
    lines = output.splitlines()
    assert "Form in index.html: POST order.php -> the lead, then a 303 to /success.html" in lines
    assert "Form in about.html: POST api/send -> the lead, then a 303 to /success.html" in lines
    assert "Thank-you page: success.html" in lines
    assert "Destination: bangi http://127.0.0.1:9/" in lines
    assert "Destination: orders http://127.0.0.1:9/network/orders" in lines
    assert (
        "Order: POST http://127.0.0.1:9/network/orders: offer_id (fixed), name = {name},"
        " phone = {phone}, sub2 = {source}, sub1 = {clickId}"
    ) in lines
    assert (
        "Order field {source}: no form sends source: taken from the landing URL (?source=...),"
        " else sent empty"
    ) in lines
    assert not any(line.startswith("Warning") for line in lines)  # the forms send the rest
    assert "Campaign: 7" in lines
    assert SHOP_SECRET not in output

    (folder / "landing.toml").write_text(
        make_landing(tmp_path / "plain", "http://127.0.0.1:9", order=False)
        .joinpath("landing.toml")
        .read_text()
    )
    assert "Order: not forwarded to a CPA network (no [order] in landing.toml)" in (
        check(folder, monkeypatch)[1].splitlines()
    )


def test_check_names_the_order_fields_no_form_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_landing(tmp_path / "site", "http://127.0.0.1:9", order=False)
    # A search form sends an email, but by GET: it makes no lead, so no order.
    (folder / "about.html").write_text(
        page("About", '<form action="search"><input name="email"></form>')
    )
    token = "tok-0123456789-network"
    monkeypatch.setenv("NETWORK_TOKEN", token)
    with (folder / "landing.toml").open("a") as settings:
        settings.write(
            "[order]\n"
            'url = "http://127.0.0.1:9/orders?token={env:NETWORK_TOKEN}"\n'
            'body = "json"\n'
            'headers = { X-Api-Key = "{env:NETWORK_TOKEN}" }\n'
            'fields = { key = "k-live-42", phone = "{phone}", mail = "{email}", ip = "{ip}" }\n'
        )
    code, output = check(folder, monkeypatch)
    assert code == 0, output
    lines = output.splitlines()
    assert "Warning: order field {email}: no form sends email: always sent empty" in lines
    assert not any("{phone}:" in line or "{ip}:" in line for line in lines)
    for secret in (token, "token=", "k-live-42"):
        assert secret not in output


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("campaign_id = 7\nx = [1,\n", "landing.toml: Invalid"),
        ("campaign = 7\n", "landing.toml: unknown option 'campaign'"),
        ('secret_key = "in-the-file-0123456789"\n', 'secret_key_env = "BANGI_SECRET_KEY"'),
        ('secret_key_env = "NOT_SET_ANYWHERE"\n', "variable NOT_SET_ANYWHERE is not set"),
        ('thank_you = "merci.html"\n', "thank_you: no page 'merci.html'"),
        ('thank_you = "../outside.html"\n', "thank_you: no page '../outside.html'"),
        ("campaign_id = -1\n", "campaign_id (BANGI_CAMPAIGN_ID) must be a positive integer"),
        ("[variants]\nb = 50\n", "variant 'b' has no folder b/"),
        ("link_hosts = 5\n", "landing.toml: BANGI_LINK_HOSTS must be list or tuple, not int"),
        ('max_submit_size = "big"\n', "landing.toml: BANGI_MAX_SUBMIT_SIZE: invalid literal"),
        ("durable_clicks = 1\n", "landing.toml: BANGI_DURABLE_CLICKS must be bool, not int"),
        ('order = "http://n.example/o"\n', "landing.toml: order must be a table"),
        ("[order]\nurl = 5\n", "landing.toml: [order] url must be text"),
        ('[order]\nfields = { name = "{name}" }\n', "landing.toml: [order] url is required"),
        ('[order]\nurl = "http://n.example/o"\ncolour = 1\n', "[order] unknown key 'colour'"),
        ('[order]\nurl = "http://n.example/o"\nsuccess = "ok"\n', "[order] success must be"),
        ('[order]\nurl = "http://n.example/o"\nmethod = "PUT"\n', "must be POST or GET, not 'PUT'"),
        ('[order]\nurl = "http://n.example/o"\nfields = 3\n', "[order] fields must be a table"),
        ('[order]\nurl = "ftp://n.example/o"\n', "must be an http(s) URL"),
        ('[order]\nurl = "http://u:hunter2@n.example/o"\n', "keep the password out of the file"),
        (
            'order_url = "http://n.example/a"\n[order]\nurl = "http://n.example/o"\n',
            "[order] and order_url (BANGI_ORDER_URL) both describe the order destination",
        ),
        (
            '[order]\nurl = "http://n.example/o?t={env:UNSET_TOKEN}"\n',
            "{env:UNSET_TOKEN}, which is not set",
        ),
    ],
)
def test_check_names_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: str, message: str
) -> None:
    folder = make_landing(tmp_path / "site", "http://127.0.0.1:9", order=False)
    (tmp_path / "outside.html").write_text(page("Not the landing's", ""))
    given = {line.partition(" =")[0] for line in settings.splitlines()}
    base = (folder / "landing.toml").read_text().splitlines()
    kept = [line for line in base if line.partition(" =")[0] not in given]
    (folder / "landing.toml").write_text("\n".join([*kept, settings]))
    code, output = check(folder, monkeypatch)
    assert code == 1
    assert message in output


def test_a_missing_file_gets_the_folders_own_404_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_landing(tmp_path / "site", "http://127.0.0.1:9")
    (folder / "404.html").write_text(page("Lost?", "<p>No such ring here.</p>"))
    monkeypatch.setenv("SHOP_SECRET", SHOP_SECRET)
    with ExitStack() as stack:
        app = files.load(folder, stack).wsgi(sender=Recorder())
        with live_server(app) as url:
            missing = requests.get(f"{url}/rings/platinum.html", timeout=5)
    assert missing.status_code == 404
    assert "No such ring here." in missing.text


def test_a_folder_without_a_page_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "order.php").write_text(PHP)
    code, output = check(tmp_path / "site", monkeypatch)
    assert code == 1
    assert "no HTML page" in output


def test_variants_are_sub_folders_and_their_assets_follow_the_journey(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "site"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        (folder / name / "index.html").write_text(page(f"Headline {name}", FORM.format(action="")))
        (folder / name / "hero.png").write_bytes(name.encode() * 10)
    (folder / "success.html").write_text(page("Thank you", ""))
    (folder / "shared.css").write_bytes(CSS)
    (folder / "landing.toml").write_text(
        'campaign_id = 7\nsecret_key_env = "SHOP_SECRET"\n[variants]\na = 50\nb = 50\n'
    )
    monkeypatch.setenv("SHOP_SECRET", SHOP_SECRET)
    monkeypatch.setenv("BANGI_TRACKER_URL", "http://127.0.0.1:9")
    recorder = Recorder()
    with ExitStack() as stack:
        landing = files.load(folder, stack)
        assert SHOP_SECRET not in repr(landing)  # its options hold the secret
        app = landing.wsgi(sender=recorder)
        with live_server(app) as url:
            for variant in ("a", "b"):
                browser = requests.Session()
                home = browser.get(f"{url}/?variant={variant}", timeout=5)
                assert f"Headline {variant}" in home.text
                assert form_click_ids(home.text)
                # The page's relative hero.png is its own folder's, for this journey.
                hero = browser.get(f"{url}/hero.png", timeout=5)
                assert hero.content == variant.encode() * 10
                assert "public" in hero.headers["Cache-Control"]  # served as an asset
                assert browser.get(f"{url}/shared.css", timeout=5).content == CSS
            clicks = [event for event in recorder.events if event.kind == "click"]
            assert [event.params["lander"] for event in clicks] == ["a", "b"]
