"""A real browser's journey: headless Chromium on `bangi-landing demo`, from the ad to the report.

Chromium types into the order form and clicks its button, as a visitor does;
the tracker's report page must then show the click and the lead under the
clickId that the form carried. Each page is saved as a screenshot in
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from . import browser as chrome
from . import test_demo_e2e
from .journey import COOKIE, CUSTOMER, tracked

# The fixtures, by name: the demo command's landing and tracker, and a headless Chromium.
demo = test_demo_e2e.demo
chromium = chrome.chromium
browser = chrome.browser

AD = {"source": "facebook", "ad_name": "video-01"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_visitor_orders_in_chromium_and_the_report_shows_the_journey(
    demo: test_demo_e2e.Demo, browser: webdriver.Chrome
) -> None:
    wait = WebDriverWait(browser, 10)
    shots = []

    # The landing, from an ad: the order form carries the clickId, the cookie is set.
    browser.get(f"{demo.landing}/?source={AD['source']}&ad_name={AD['ad_name']}")
    form = browser.find_element(By.ID, "order_form")
    [field] = browser.find_elements(By.NAME, "sub1")
    assert form.find_elements(By.NAME, "sub1") == [field]
    assert field.get_attribute("type") == "hidden"
    click_id = field.get_attribute("value")
    assert click_id
    cookie = browser.get_cookie(COOKIE)
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    # The visitor types and clicks; the browser posts the form, sub1 included.
    form.find_element(By.ID, "name").send_keys(CUSTOMER["name"])
    form.find_element(By.ID, "phone").send_keys(CUSTOMER["phone"])
    shots.append(chrome.screenshot(browser, "landing"))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda driver: driver.current_url == f"{demo.landing}/thanks")
    assert "Thank you" in browser.find_element(By.TAG_NAME, "h1").text
    shots.append(chrome.screenshot(browser, "thanks"))

    # The tracker got both events under the form's clickId (its API)...
    tracked(demo.events, click_id, AD, campaign_id=1)
    assert len(demo.events(type="click")) == 1  # one visitor, one click

    # ... and its report page shows them, newest first.
    browser.get(f"{demo.tracker}/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#recent-events tbody tr")
    seen = [
        (
            row.find_element(By.CSS_SELECTOR, "td.type").text,
            row.find_element(By.CSS_SELECTOR, "td.click-id").text,
        )
        for row in rows
    ]
    assert seen == [("lead", click_id), ("click", click_id)]
    clicks = browser.find_element(By.CSS_SELECTOR, '[data-campaign-id="1"] [data-metric="clicks"]')
    leads = browser.find_element(By.CSS_SELECTOR, '[data-campaign-id="1"] [data-metric="leads"]')
    assert (clicks.text, leads.text) == ("1", "1")
    shots.append(chrome.screenshot(browser, "report"))

    # The clickId links to the journey: the click with the ad's parameters, then the lead.
    browser.find_element(By.LINK_TEXT, click_id).click()
    wait.until(lambda driver: driver.current_url.endswith(f"/journeys/{click_id}"))
    assert browser.find_element(By.ID, "click-id").text == click_id
    steps = browser.find_elements(By.CSS_SELECTOR, "#journey li.event")
    assert [step.get_attribute("data-type") for step in steps] == ["click", "lead"]
    assert AD["ad_name"] in steps[0].text
    shots.append(chrome.screenshot(browser, "journey"))

    for shot in shots:
        assert shot.parent == chrome.SCREENSHOTS
        assert shot.read_bytes().startswith(PNG), f"{shot} is not a PNG"
        assert shot.stat().st_size > 5_000, f"{shot} looks empty"


# Whether each word of an element's text sits on one line (a word broken across
# lines has a client rect per line).
WORDS_UNBROKEN = """
const text = arguments[0].firstChild;
const words = [...text.data.matchAll(/\\S+/g)];
return words.every((word) => {
  const range = document.createRange();
  range.setStart(text, word.index);
  range.setEnd(text, word.index + word[0].length);
  return range.getClientRects().length === 1;
});
"""


@pytest.mark.slow
def test_the_network_page_fits_1280_pixels(
    demo: test_demo_e2e.Demo, browser: webdriver.Chrome
) -> None:
    long_name = "Maria da Conceição Fernandes Albuquerque"
    for name, extra in (
        ("Ana Lima", {}),
        (long_name, {"utm_campaign": "black-friday-video-retargeting-lookalike-2026"}),
    ):
        order = {"sub1": str(uuid.uuid4()), "name": name, "phone": "+55 11 91234-5678"}
        response = requests.post(
            f"{demo.tracker}/network/orders",
            data={**order, "offer_id": "1001", "utm_source": "facebook", **extra},
            timeout=5,
        )
        assert response.status_code == 201
    assert browser.execute_script("return window.innerWidth") == 1280

    browser.get(f"{demo.tracker}/network")
    # A button sends the postback (to the demo landing's relay); the page shows its result.
    browser.find_element(By.CSS_SELECTOR, "#orders tbody tr:last-child button.approved").click()
    result = "#orders tbody tr:last-child td.postback"
    # The button posts a form and the page reloads: an element found meanwhile may go stale.
    WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda driver: "HTTP" in driver.find_element(By.CSS_SELECTOR, result).text
    )
    shot = chrome.screenshot(browser, "network")

    page = browser.find_element(By.TAG_NAME, "html")
    card = browser.find_element(By.CSS_SELECTOR, ".table-card")
    for element in (page, card):  # neither the page nor the table's card scrolls sideways
        width, visible = browser.execute_script(
            "return [arguments[0].scrollWidth, arguments[0].clientWidth]", element
        )
        assert width <= visible, (element.tag_name, width, visible)
    rows = browser.find_elements(By.CSS_SELECTOR, "#orders tbody tr")
    assert len(rows) == 2
    for row in rows:
        buttons = row.find_elements(By.CSS_SELECTOR, "td.actions-cell button")
        assert [button.text for button in buttons] == ["Approve", "Hold", "Reject", "Trash"]
        for button in buttons:
            box = button.rect
            assert button.is_displayed()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, (button.text, box)
    name = browser.find_element(By.XPATH, f"//td[@class='name'][text()='{long_name}']")
    assert browser.execute_script(WORDS_UNBROKEN, name), "a name wraps inside a word"
    assert shot.read_bytes().startswith(PNG)
