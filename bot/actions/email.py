"""notify.email: send an e-mail over SMTP (stdlib smtplib, in a thread).

Settings, read at call time:

- ``IRBOT_SMTP_HOST``, ``IRBOT_SMTP_FROM`` (required);
- ``IRBOT_SMTP_PORT`` (default 587; 465 means implicit TLS);
- ``IRBOT_SMTP_USER`` / ``IRBOT_SMTP_PASSWORD`` (optional; log in when a user is set);
- ``IRBOT_SMTP_STARTTLS`` (default true; false for a local relay without TLS).

SMTP has no idempotency: if irbot crashes after the server accepted a message and before
the step was recorded, the repeat sends it again. The Message-ID is derived from the
step's idempotency key, so the repeat carries the same id: receivers can recognise it
(and many mail stores drop a duplicate Message-ID).
"""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from bot.core.catalog.notify import Email
from bot.engine.actions import ActionContext, ActionError, NotConfigured, Registry

TIMEOUT_SECONDS = 30
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")
_FLAGS = {"1": True, "true": True, "yes": True, "on": True}
_FLAGS.update({"0": False, "false": False, "no": False, "off": False})


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    user: str | None
    password: str | None
    starttls: bool

    @property
    def implicit_tls(self) -> bool:
        return self.port == 465


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def load_settings() -> SmtpSettings | str:
    """The SMTP settings, or why they are missing or wrong (naming the variable)."""
    host, sender, user = _env("IRBOT_SMTP_HOST"), _env("IRBOT_SMTP_FROM"), _env("IRBOT_SMTP_USER")
    password = os.environ.get("IRBOT_SMTP_PASSWORD") or None
    if not host:
        return "set IRBOT_SMTP_HOST (the SMTP server)"
    if not _ADDRESS.match(sender):
        return "set IRBOT_SMTP_FROM to the sender's e-mail address"
    port_text = _env("IRBOT_SMTP_PORT") or "587"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return f"IRBOT_SMTP_PORT must be a port number, got {port_text[:20]!r}"
    starttls = _FLAGS.get(_env("IRBOT_SMTP_STARTTLS").lower() or "true")
    if starttls is None:
        return "IRBOT_SMTP_STARTTLS must be true or false"
    if user and password is None:
        return "set IRBOT_SMTP_PASSWORD (IRBOT_SMTP_USER is set)"
    return SmtpSettings(host, int(port_text), sender, user or None, password, starttls)


def not_configured() -> str | None:
    """Why notify.email cannot run here, or None."""
    loaded = load_settings()
    return loaded if isinstance(loaded, str) else None


def message_id(ctx: ActionContext, sender: str) -> str:
    """The same Message-ID on every repeat of the step."""
    return f"<irbot.{ctx.client_token}@{sender.rpartition('@')[2]}>"


def _message(inputs: Email, ctx: ActionContext, settings: SmtpSettings) -> EmailMessage:
    bad = [address for address in inputs.to if not _ADDRESS.match(address)]
    if bad:
        raise ActionError(
            f"not plain e-mail addresses: {', '.join(repr(b[:80]) for b in bad)}", code="input"
        )
    redact = ctx.redactor.with_values(ctx.secrets)
    msg = EmailMessage()
    try:
        msg["Subject"] = redact.text(inputs.subject)
    except ValueError as exc:  # a line break would let the subject inject headers
        raise ActionError("the e-mail subject must be a single line", code="input") from exc
    msg["From"] = settings.sender
    msg["To"] = ", ".join(inputs.to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id(ctx, settings.sender)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    msg.set_content(redact.text(inputs.body))
    return msg


def _send(settings: SmtpSettings, msg: EmailMessage, to: list[str]) -> dict[str, Any]:
    """Deliver to the server; returns the refused recipients (SMTP's partial success)."""
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.implicit_tls:
        smtp = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=TIMEOUT_SECONDS, context=context
        )
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT_SECONDS)
    with smtp:
        if settings.starttls and not settings.implicit_tls:
            try:
                smtp.starttls(context=context)
            except smtplib.SMTPNotSupportedError as exc:
                raise ActionError(
                    f"the SMTP server {settings.host} does not offer STARTTLS: "
                    "set IRBOT_SMTP_STARTTLS=false only for a trusted local relay",
                    code="config",
                ) from exc
        if settings.user is not None and settings.password is not None:
            try:
                smtp.login(settings.user, settings.password)
            except smtplib.SMTPNotSupportedError as exc:
                raise ActionError(
                    f"the SMTP server {settings.host} offers no login: unset IRBOT_SMTP_USER",
                    code="config",
                ) from exc
        return smtp.send_message(msg, from_addr=settings.sender, to_addrs=to)


def _said(reply: bytes | str) -> str:
    """An SMTP reply as short text."""
    return (reply.decode(errors="replace") if isinstance(reply, bytes) else reply)[:120]


def _refusals(refused: Mapping[str, tuple[int, bytes | str]]) -> str:
    return ", ".join(
        f"{address} ({code} {_said(reply)})" for address, (code, reply) in refused.items()
    )


def _error(exc: OSError, settings: SmtpSettings, ctx: ActionContext) -> ActionError:
    where = f"SMTP server {settings.host}:{settings.port}"
    text = ctx.redactor.with_values(ctx.secrets).text
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        retry = all(400 <= code < 500 for code, _ in exc.recipients.values())
        return ActionError(
            f"the {where} refused every recipient: {text(_refusals(exc.recipients))}; "
            "check the addresses",
            retryable=retry,
            code="recipients",
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return ActionError(
            f"login to the {where} as {settings.user} failed ({exc.smtp_code}): "
            "check IRBOT_SMTP_USER and IRBOT_SMTP_PASSWORD",
            code="config",
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return ActionError(
            f"the {where} refused the sender {settings.sender} ({exc.smtp_code}): "
            "check IRBOT_SMTP_FROM",
            retryable=400 <= exc.smtp_code < 500,
            code="config",
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = text(_said(exc.smtp_error))
        return ActionError(
            f"the {where} answered {exc.smtp_code} {reply}",
            retryable=400 <= exc.smtp_code < 500,
            code="smtp",
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return ActionError(f"the {where} hung up", retryable=True, code="network")
    if isinstance(exc, smtplib.SMTPException):
        return ActionError(f"the {where} failed: {type(exc).__name__}", code="smtp")
    if isinstance(exc, ssl.SSLError):
        return ActionError(
            f"TLS with the {where} failed ({exc.reason}): check the port (465 = TLS, "
            "587 = STARTTLS) and that its certificate is trusted",
            code="config",
        )
    return ActionError(
        f"cannot reach the {where} ({type(exc).__name__})", retryable=True, code="network"
    )


async def email(inputs: Email, ctx: ActionContext) -> Mapping[str, Any]:
    """Send one message to every recipient; outputs its Message-ID and who accepted it."""
    settings = load_settings()
    if isinstance(settings, str):
        raise NotConfigured(settings)
    if settings.password:
        ctx.mark_secret(settings.password)
    msg = _message(inputs, ctx, settings)
    try:
        refused = await asyncio.to_thread(_send, settings, msg, list(inputs.to))
    except OSError as exc:  # smtplib's errors are OSErrors too; _error tells them apart
        raise _error(exc, settings, ctx) from exc
    accepted = [address for address in inputs.to if address not in refused]
    if refused:  # sent to the others already: retrying would send it to them twice
        raise ActionError(
            f"sent to {', '.join(accepted)}, but the SMTP server refused "
            f"{ctx.redactor.with_values(ctx.secrets).text(_refusals(refused))}: check them",
            code="recipients",
        )
    ctx.logger().info("email.sent", message_id=msg["Message-ID"], recipients=accepted)
    return {"message_id": str(msg["Message-ID"]), "recipients": accepted}


def register(registry: Registry) -> None:
    registry.function("notify.email", check=not_configured)(email)
