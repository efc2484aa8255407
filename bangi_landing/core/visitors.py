"""Who is not a visitor: crawlers, link-preview fetchers and prefetches.

A search engine's crawler or a messenger's link preview is not someone who
clicked an ad, and a prefetch may never be seen: none of them makes a click or
gets a journey cookie. The middleware passes such requests straight through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# Substrings of User-Agent headers, matched case-insensitively. "bot/" and
# "+http" (a bot's contact URL) catch most crawlers by convention; the named
# ones are link-preview fetchers that follow no convention.
BOT_AGENTS: tuple[str, ...] = (
    "bot/", "bot;", "bot)", "crawler", "spider", "+http", "slurp",
    "facebookexternalhit", "facebookcatalog", "whatsapp", "telegrambot", "slackbot",
    "slack-imgproxy", "discordbot", "skypeuripreview", "embedly", "vkshare", "pinterest",
    "linkedinbot", "twitterbot", "redditbot", "applebot", "google-inspectiontool",
    "chrome-lighthouse", "preview",
)  # fmt: skip


class VisitorFilter:
    """Tells crawlers, link previews and prefetches from visitors.

    :param bot_agents: User-Agent substrings (any case) of non-visitors.
    :param prefetch: also treat prefetch requests (``Sec-Purpose: prefetch``,
        ``Purpose: prefetch``, ``X-Moz: prefetch``, ``X-Purpose: preview``) as such.
    """

    MAX_AGENTS = 2048  # User-Agents remembered
    MAX_AGENT_LENGTH = 512  # longer ones (no browser's) are matched every time

    def __init__(self, bot_agents: Iterable[str] = BOT_AGENTS, *, prefetch: bool = True) -> None:
        agents = [agent.lower() for agent in bot_agents if agent]
        self.prefetch = prefetch
        self._pattern = (
            re.compile("|".join(map(re.escape, agents)), re.IGNORECASE) if agents else None
        )
        self._verdicts: dict[str, bool] = {}  # User-Agents repeat: each is matched once

    def ignores(self, environ: Mapping[str, Any]) -> bool:
        """True for a request that must make no click and get no cookie."""
        agent = environ.get("HTTP_USER_AGENT", "")
        is_bot = self._verdicts.get(agent)
        if is_bot is None:
            is_bot = self._is_bot(agent)
        if is_bot:
            return True
        return self.prefetch and (
            "prefetch" in environ.get("HTTP_SEC_PURPOSE", "")
            or "prefetch" in environ.get("HTTP_PURPOSE", "")
            or "prefetch" in environ.get("HTTP_X_MOZ", "")
            or "preview" in environ.get("HTTP_X_PURPOSE", "")
        )

    def _is_bot(self, agent: str) -> bool:
        is_bot = self._pattern is not None and self._pattern.search(agent) is not None
        if len(agent) <= self.MAX_AGENT_LENGTH:
            if len(self._verdicts) >= self.MAX_AGENTS:
                self._verdicts.clear()  # cheaper than an LRU, and common agents come straight back
            self._verdicts[agent] = is_bot
        return is_bot
