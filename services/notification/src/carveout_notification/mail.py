"""Send a notification by email, through the configured SMTP relay."""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage

import aiosmtplib

from carveout_runtime.addresses import email_address_problem

from .errors import Undeliverable
from .settings import NotificationSettings
from .store import NotificationRecord


async def send_email(n: NotificationRecord, s: NotificationSettings) -> None:
    if problem := email_address_problem(n.address):
        raise Undeliverable(problem)
    message = EmailMessage()
    message["From"] = s.smtp_from
    message["To"] = n.address
    message["Subject"] = f"Carveout: {n.event_type}"
    message["Message-ID"] = f"<{n.notification_id}@carveout>"
    message.set_content(n.payload)
    context = None
    if s.smtp_tls != "none":
        context = ssl.create_default_context(cafile=s.smtp_ca_file)
    async with asyncio.timeout(s.delivery_deadline_seconds):
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_tls == "tls",
            # "none" never upgrades, even when the server offers STARTTLS; "starttls"
            # requires it, so a relay that does not offer it fails the attempt.
            start_tls=s.smtp_tls == "starttls",
            tls_context=context,
            timeout=s.delivery_deadline_seconds,
        )
