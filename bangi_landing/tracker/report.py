"""The tracker's HTML report: campaigns at a glance, recent events, one visitor's journey.

Everything shown comes from the database and is untrusted (params are whatever
visitors and partners sent), so the views hand plain strings and numbers to
autoescaped ``.html`` templates and never mark data safe. Calls to the fake
AlterCPA Pro are shown with their token redacted, whoever sent it. The pages need no
JavaScript and load nothing from elsewhere: the stylesheet is inline.

A lead whose params list ``withheldFields`` (the names of the fields the
landing held back as personal data, never their values) says so on its card.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, render_template, url_for

from ..core.journey import new_click_id, parse_click_id
from ..core.statuses import STATUSES, as_any_status
from . import altercpa
from .store import EVENT_TYPES, TrackerStore

bp = Blueprint("report", __name__, template_folder="templates")

RECENT_EVENTS = 50
JOURNEY_LIMIT = 1000  # a real journey is a handful of events; this bounds a flood
_PARAM_VALUE_CHARS = 40  # per value in the compact params column
_PARAMS_CHARS = 120  # for the whole compact params column
_TITLE_CHARS = 1000  # for the hover text holding the untruncated params
_EVENT_TYPES = frozenset(EVENT_TYPES)
WITHHELD = "withheldFields"  # a lead's param: the names of fields held back as personal data

# Defence in depth for pages full of visitor-supplied text: no scripts, no
# remote anything, only the inline stylesheet (and inline widths of funnel bars).
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _store() -> TrackerStore:
    store: TrackerStore = current_app.extensions["bangi_tracker"]
    return store


@bp.after_request
def _headers(response: Response) -> Response:
    """Reports show live data: never serve them from a cache."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# Formatting


def _campaign_label(campaign_id: int | None, names: Mapping[int, str | None]) -> str:
    if campaign_id is None:
        return "—"
    return names.get(campaign_id) or f"Campaign {campaign_id}"


def _money(amount: float | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    text = f"{amount:,.2f}"
    return f"{text} {currency}" if currency else text


def _time(received_at: str) -> str:
    """``2024-05-01T12:34:56.123456Z`` as ``2024-05-01 12:34:56`` (UTC, as stored)."""
    return received_at[:19].replace("T", " ")


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_class(status: str | None) -> str:
    """A CSS class from a fixed set, whatever the database holds."""
    return status if status in STATUSES else "none"


def _type_class(event_type: str) -> str:
    return event_type if event_type in _EVENT_TYPES else "other"


def _pro_status(params: Mapping[str, Any]) -> tuple[str, str]:
    """A Pro call's badge: the status it set in our colours, or why it was refused."""
    result, status = params.get("result"), params.get("status")
    if result != "ok":
        return _truncate(_value(result), _PARAM_VALUE_CHARS), "refused"
    return _value(status), _status_class(as_any_status(status))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


# View models


@dataclass(frozen=True)
class FunnelStep:
    label: str
    count: int
    width: str  # CSS percentage of the widest step
    share: str  # of clicks


@dataclass(frozen=True)
class VariantRow:
    """One variant of a campaign's split test."""

    name: str
    clicks: int
    leads: int
    accepted: int
    lead_rate: str
    accept_rate: str
    payouts: list[str]
    best: str  # the probability that its lead rate is the best, as a percentage
    rate_width: str  # CSS percentage of the highest lead rate
    best_width: str  # CSS percentage of 100%


@dataclass(frozen=True)
class CampaignRow:
    id: int
    label: str
    named: bool
    clicks: int
    leads: int
    statuses: list[tuple[str, int]]
    payouts: list[str]
    conversion: str
    funnel: list[FunnelStep]
    paid: Mapping[str | None, float]  # accepted payout per currency
    variants: list[VariantRow] = field(default_factory=list)  # its split test, if it has one
    more_variants: int = 0  # variants with fewer clicks, beyond MAX_VARIANTS, not shown


@dataclass(frozen=True)
class EventRow:
    id: int
    time: str
    received_at: str
    type: str
    type_class: str
    click_id: str | None
    journey_url: str | None
    campaign: str
    status: str | None
    status_class: str
    payout: str
    params_short: str
    params_full: str
    params: list[tuple[str, str]] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)


def _shown_params(params: Any) -> dict[str, Any]:
    """Params as name -> value; stored params that are not an object show as one ``params``."""
    return params if isinstance(params, dict) else {"params": params}


def _withheld(params: Mapping[str, Any]) -> list[str]:
    """The names in a lead's ``withheldFields``: fields the landing held back as personal data.

    The middleware sends the names, never the values; a single name (a query
    string's) counts as one, and what is not a name is left out.
    """
    value = params.get(WITHHELD)
    names = value if isinstance(value, list) else [value]
    return [_truncate(name, _PARAM_VALUE_CHARS) for name in names if isinstance(name, str) and name]


def _event_row(event: Mapping[str, Any], names: Mapping[int, str | None]) -> EventRow:
    params = _shown_params(event["params"])
    status, status_class = event["status"], _status_class(event["status"])
    if event["type"] == "altercpa":
        params = altercpa.shown(params)
        status, status_class = _pro_status(params)
    pairs = [(str(key), _value(value)) for key, value in params.items()]
    short = " ".join(f"{key}={_truncate(value, _PARAM_VALUE_CHARS)}" for key, value in pairs)
    full = " ".join(f"{key}={value}" for key, value in pairs)
    withheld = _withheld(params) if event["type"] == "lead" else []
    if withheld:  # the card says it in words instead
        pairs = [(key, value) for key, value in pairs if key != WITHHELD]
    click_id = event["clickId"]
    return EventRow(
        id=event["id"],
        time=_time(event["receivedAt"]),
        received_at=event["receivedAt"],
        type=event["type"],
        type_class=_type_class(event["type"]),
        click_id=click_id,
        journey_url=url_for("report.journey", raw_click_id=click_id)
        if parse_click_id(click_id)
        else None,
        campaign=_campaign_label(event["campaignId"], names),
        status=status,
        status_class=status_class,
        payout=_money(event["payout"], event["currency"]) if event["payout"] is not None else "",
        params_short=_truncate(short, _PARAMS_CHARS),
        params_full=_truncate(full, _TITLE_CHARS),
        params=pairs,
        withheld=withheld,
    )


def _funnel(clicks: int, leads: int, accepted: int) -> list[FunnelStep]:
    widest = max(clicks, leads, accepted, 1)
    return [
        FunnelStep(label, count, f"{100 * count / widest:.1f}%", _percent(count, clicks))
        for label, count in (("Clicks", clicks), ("Leads", leads), ("Accepted", accepted))
    ]


BEST_DRAWS = 10_000  # Monte Carlo draws per campaign: about ±0.5 points on each probability
# Variants compared per campaign, those with the most clicks: a split test has a handful, and
# any API client can send clicks of a thousand made-up ones (each costs the page its draws).
MAX_VARIANTS = 10
BEST_METHOD = (
    "Probability best: each variant's lead rate has a Beta(1 + leads, 1 + clicks - leads)"
    f" posterior (a uniform prior); the share of {BEST_DRAWS:,} seeded Monte Carlo draws in"
    " which it is the highest."
)


def probability_best(
    counts: Sequence[tuple[int, int]], *, draws: int = BEST_DRAWS, seed: int = 0
) -> list[float]:
    """For each (clicks, leads), the probability that its lead rate is the highest.

    Bayesian: a rate's posterior after ``leads`` successes in ``clicks``
    trials from a uniform prior is Beta(1 + leads, 1 + clicks - leads); the
    probability is the share of joint draws in which it is the highest. The
    generator is seeded, so a page shows the same figures for the same data.
    """
    rng = random.Random(seed)
    wins = [0] * len(counts)
    shapes = [(1 + leads, 1 + max(clicks - leads, 0)) for clicks, leads in counts]
    for _ in range(draws):
        rates = [rng.betavariate(a, b) for a, b in shapes]
        wins[rates.index(max(rates))] += 1
    return [won / draws for won in wins]


def _variant_rows(summaries: list[dict[str, Any]], currency: str | None) -> list[VariantRow]:
    """One campaign's variants, with the probability each is best (with two or more)."""
    counts = [(int(s["clicks"]), int(s["leads"])) for s in summaries]
    best = probability_best(counts) if len(counts) > 1 else [1.0] * len(counts)
    rates = [leads / clicks if clicks else 0.0 for clicks, leads in counts]
    highest = max(rates, default=0.0) or 1.0
    return [
        VariantRow(
            name=_truncate(str(summary["variant"]), _PARAM_VALUE_CHARS),
            clicks=clicks,
            leads=leads,
            accepted=int(summary["accepted"]),
            lead_rate=_percent(leads, clicks),
            accept_rate=_percent(int(summary["accepted"]), clicks),
            payouts=_amounts(summary["paid"]) or [_money(0, currency)],
            best=f"{100 * chance:.1f}%",
            rate_width=f"{100 * rate / highest:.1f}%",
            best_width=f"{100 * chance:.1f}%",
        )
        for summary, (clicks, leads), rate, chance in zip(
            summaries, counts, rates, best, strict=True
        )
    ]


def _campaign_rows(store: TrackerStore) -> list[CampaignRow]:
    payouts = store.accepted_payouts()
    variants: dict[int, list[dict[str, Any]]] = {}
    for summary in store.variant_summaries():
        variants.setdefault(summary["campaign_id"], []).append(summary)
    rows = []
    for summary in store.campaign_summaries():
        tested = sorted(variants.get(summary["id"], []), key=lambda v: -int(v["clicks"]))
        shown = sorted(tested[:MAX_VARIANTS], key=lambda v: str(v["variant"]))
        clicks, leads = int(summary["clicks"]), int(summary["leads"])
        statuses: list[tuple[str, int]] = [(s, int(summary[s])) for s in STATUSES]
        by_currency = payouts.get(summary["id"], {})
        rows.append(
            CampaignRow(
                id=summary["id"],
                label=summary["name"] or f"Campaign {summary['id']}",
                named=bool(summary["name"]),
                clicks=clicks,
                leads=leads,
                statuses=statuses,
                payouts=_amounts(by_currency) or [_money(0, summary["currency"])],
                conversion=_percent(leads, clicks),
                funnel=_funnel(clicks, leads, int(summary["accept"])),
                paid=by_currency,
                variants=_variant_rows(shown, summary["currency"]),
                more_variants=len(tested) - len(shown),
            )
        )
    return rows


def _amounts(by_currency: Mapping[str | None, float]) -> list[str]:
    """One amount per currency, ordered by currency (an amount without one first)."""
    return [
        _money(amount, currency)
        for currency, amount in sorted(by_currency.items(), key=lambda item: item[0] or "")
    ]


def _totals(rows: list[CampaignRow]) -> dict[str, Any]:
    clicks = sum(row.clicks for row in rows)
    leads = sum(row.leads for row in rows)
    paid: dict[str | None, float] = {}
    for row in rows:
        for currency, amount in row.paid.items():
            paid[currency] = paid.get(currency, 0) + amount
    return {
        "campaigns": len(rows),
        "clicks": clicks,
        "leads": leads,
        "accepted": sum(dict(row.statuses)["accept"] for row in rows),
        "conversion": _percent(leads, clicks),
        # Currencies are never added together: one total per currency.
        "payouts": _amounts(paid) or [_money(0, None)],
    }


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return render_template(template, now=now, **context), status


# Pages


@bp.get("/")
def index() -> tuple[str, int]:
    store = _store()
    names = {campaign.id: campaign.name for campaign in store.campaigns()}
    campaigns = _campaign_rows(store)
    events = [
        _event_row(event, names) for event in store.events(limit=RECENT_EVENTS, newest_first=True)
    ]
    return _page(
        "report_index.html",
        title="Tracker report",
        campaigns=campaigns,
        totals=_totals(campaigns),
        events=events,
        recent_limit=RECENT_EVENTS,
        total_events=store.count(),
        best_method=BEST_METHOD,
        click_url=url_for("api.track_click", _external=True),
        example_click_id=new_click_id(),
    )


@bp.get("/journeys/<path:raw_click_id>")  # so any non-UUID gets the page below
def journey(raw_click_id: str) -> tuple[str, int]:
    click_id = parse_click_id(raw_click_id)
    if click_id is None:
        return _page(
            "report_not_found.html",
            404,
            title="Not a clickId",
            raw=_truncate(raw_click_id, 80),
        )
    store = _store()
    names = {campaign.id: campaign.name for campaign in store.campaigns()}
    found = store.events(click_id=click_id, limit=JOURNEY_LIMIT + 1)
    events = [_event_row(event, names) for event in found[:JOURNEY_LIMIT]]
    postbacks = [event for event in events if event.type == "postback"]
    campaign_ids = {event["campaignId"] for event in found if event["campaignId"] is not None}
    return _page(
        "report_journey.html",
        title=f"Journey {click_id}",
        click_id=click_id,
        events=events,
        truncated=len(found) > JOURNEY_LIMIT,
        journey_limit=JOURNEY_LIMIT,
        campaign=", ".join(_campaign_label(cid, names) for cid in sorted(campaign_ids)) or "—",
        latest_status=postbacks[-1].status if postbacks else None,
        latest_status_class=postbacks[-1].status_class if postbacks else "none",
    )
