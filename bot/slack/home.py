"""App Home: open incidents and the gates and tasks waiting for the viewer.

Published each time the viewer opens the Home tab, so it is as fresh as the timeline.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.errors import IrbotError
from bot.service import Service
from bot.slack import blocks, replies
from bot.slack.answer import log


def register(app: AsyncApp, service: Service) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        user = event.get("user")
        if event.get("tab", "home") != "home" or not isinstance(user, str) or not user:
            return
        view = await _view(service, user)
        try:
            await client.views_publish(user_id=user, view=view)
        except SlackClientError as exc:
            log.warning("slack.home_failed", error=type(exc).__name__)


async def _view(service: Service, user: str) -> dict[str, Any]:
    try:
        incidents, waiting = await asyncio.gather(
            service.aopen_incidents(), service.awaiting_for(user)
        )
    except IrbotError as exc:  # e.g. irbot.yaml broken: say so where people look
        text = replies.error(exc)
        return {"type": "home", "blocks": [{"type": "section", "text": _mrkdwn(text)}]}
    return blocks.home_view(incidents, waiting)


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:3000]}
