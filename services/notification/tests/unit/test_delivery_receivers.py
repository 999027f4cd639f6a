"""Deliveries against real receivers: a slow one stalls no one, every attempt ends by its
deadline, webhooks go only to checked addresses, email over STARTTLS/TLS with login."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from carveout_notification.delivery import Deliverer
from carveout_notification.domain import Subscription, new_secret
from carveout_notification.settings import NotificationSettings
from carveout_notification.store import NotificationRecord, NotificationStore
from carveout_runtime.stores import make_engine
from tests.receivers import SlowReceiver, SmtpServer, WebhookReceiver

from .queueing import queue_notification

DEADLINE = 3.0


async def until(check: Callable[[], Any], within: float, what: str) -> Any:
    """Wait for ``check`` to be truthy (a condition, not a sleep), or fail naming ``what``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if result := check():
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what}: not within {within}s")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NotificationStore]:
    made = NotificationStore(make_engine(f"sqlite:///{tmp_path}/notification.db"))
    yield made
    made.engine.dispose()


def settings(**overrides: Any) -> NotificationSettings:
    values: dict[str, Any] = {
        "regulator_token": "r",
        "gateway_token": "g",
        "auditor_token": "a",
        "kafka_bootstrap": "localhost:1",
        "delivery_deadline_seconds": DEADLINE,
        "delivery_poll_seconds": 0.05,
        "delivery_max_attempts": 1,
        "webhook_allow_networks": "127.0.0.0/8",
        **overrides,
    }
    return NotificationSettings(**values)


def subscribe(store: NotificationStore, channel: str, address: str) -> Subscription:
    subscription = Subscription(
        subscription_id="sub_" + uuid.uuid4().hex,
        channel="webhook" if channel == "webhook" else "email",
        address=address,
        event_types=["*"],
        secret=new_secret() if channel == "webhook" else None,
    )
    store.add_subscription(subscription, datetime.now(UTC))
    return subscription


def queue(store: NotificationStore, subscription: Subscription) -> NotificationRecord:
    return queue_notification(store, subscription, datetime.now(UTC), "carveout.revoked")


def status(store: NotificationStore, nid: str) -> NotificationRecord:
    [row] = [n for n in store.notifications(limit=1000)[0] if n.notification_id == nid]
    return row


class Published:
    async def __call__(self, event: Any) -> None:
        pass


@asynccontextmanager
async def running(deliverer: Deliverer) -> AsyncIterator[Deliverer]:
    task = asyncio.create_task(deliverer.run())
    try:
        yield deliverer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_receiver_that_dribbles_its_answer_stalls_no_other_delivery(
    store: NotificationStore,
) -> None:
    slow, fast, smtp = SlowReceiver(), WebhookReceiver(failures=0), SmtpServer()
    for peer in (slow, fast, smtp):
        peer.start()
    try:
        # A deadline long enough that the others are surely delivered inside it, even on a
        # loaded machine: what is measured is that they do not wait for the slow one.
        deadline = 3 * DEADLINE
        deliverer = Deliverer(
            store,
            settings(smtp_port=smtp.port, delivery_deadline_seconds=deadline),
            Published(),
        )
        async with running(deliverer) as worker:
            stalled = queue(store, subscribe(store, "webhook", slow.url))
            worker.wake()
            await until(lambda: slow.started, 5, "the slow receiver answering")
            held_since = slow.started[0]
            hook = queue(store, subscribe(store, "webhook", fast.url))
            mail = queue(store, subscribe(store, "email", "regulator@example.gov"))
            worker.wake()

            await until(
                lambda: all(
                    status(store, n.notification_id).status == "delivered" for n in (hook, mail)
                ),
                DEADLINE,
                "the others delivered",
            )
            # ... while the slow one is still being answered
            assert stalled.notification_id in worker.in_flight()
            assert fast.accepted() and smtp.inbox.messages

            # The slow attempt ends by its deadline: 200 received is an accepted delivery.
            await until(
                lambda: status(store, stalled.notification_id).status == "delivered",
                deadline + 2,
                "the slow delivery ending",
            )
            assert time.monotonic() - held_since < deadline + 1
            assert len(slow.started) == 1  # never started twice while in flight
    finally:
        for peer in (slow, fast, smtp):
            peer.stop()


async def test_one_host_of_slow_receivers_takes_at_most_its_share_of_the_attempts(
    store: NotificationStore,
) -> None:
    """Six subscriptions to one dribbling host would fill four attempt slots: each host
    gets at most its share (two here), so another host's webhook goes out at once."""
    slow, fast = SlowReceiver(), WebhookReceiver(failures=0)
    for peer in (slow, fast):
        peer.start()
    deadline = 3 * DEADLINE
    try:
        deliverer = Deliverer(
            store,
            settings(
                delivery_concurrency=4,
                delivery_per_receiver=2,
                delivery_deadline_seconds=deadline,
            ),
            Published(),
        )
        async with running(deliverer) as worker:
            held = [queue(store, subscribe(store, "webhook", slow.url)) for _ in range(6)]
            worker.wake()
            await until(lambda: len(slow.started) == 2, 5, "the slow host at its share")
            # The same receivers by another name: "localhost" is a host of its own.
            other = fast.url.replace("127.0.0.1", "localhost")
            hook = queue(store, subscribe(store, "webhook", other))
            worker.wake()
            await until(
                lambda: status(store, hook.notification_id).status == "delivered",
                DEADLINE,
                "the other host's webhook delivered while the slow host holds its share",
            )
            assert len(slow.started) == 2
            assert sum(n.notification_id in worker.in_flight() for n in held) == 2
    finally:
        for peer in (slow, fast):
            peer.stop()


async def test_an_attempt_is_cut_at_its_deadline_even_before_an_answer(
    store: NotificationStore,
) -> None:
    """A receiver that never answers at all holds the attempt for the deadline only."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    try:
        deliverer = Deliverer(store, settings(), Published())
        n = queue(store, subscribe(store, "webhook", url))
        started = time.monotonic()
        async with running(deliverer) as worker:
            worker.wake()
            await until(
                lambda: status(store, n.notification_id).status == "failed",
                DEADLINE + 2,
                "the attempt given up",
            )
        assert time.monotonic() - started < DEADLINE + 1
        assert "deadline" in (status(store, n.notification_id).last_error or "")
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("address", "range_named"),
    [
        ("http://169.254.169.254/latest/meta-data", "169.254.0.0/16"),
        ("http://rebinding.example/hook", "10.0.0.0/8"),
        ("http://[::ffff:127.0.0.1]:9/hook", "127.0.0.0/8"),
    ],
)
async def test_a_webhook_to_a_refused_address_fails_at_once_and_sends_nothing(
    store: NotificationStore, address: str, range_named: str
) -> None:
    """Checked again before each delivery (the name may resolve elsewhere by now)."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["10.1.2.3"]

    deliverer = Deliverer(
        store,
        settings(webhook_allow_networks="", delivery_max_attempts=5),
        Published(),
        resolve=resolve,
    )
    n = queue(store, subscribe(store, "webhook", address))
    async with running(deliverer) as worker:
        worker.wake()
        await until(lambda: status(store, n.notification_id).status == "failed", 5, "refused")
    row = status(store, n.notification_id)
    assert row.attempts == 1  # not retried: the address is refused, not unlucky
    assert range_named in (row.last_error or "")


async def test_the_webhook_connects_to_the_address_that_was_checked(
    store: NotificationStore,
) -> None:
    """Resolved once: the request goes to the checked IP with the URL's host in ``Host``."""
    receiver = WebhookReceiver(failures=0)
    receiver.start()
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])  # a rebinding name: safe, then private
    try:
        deliverer = Deliverer(
            store, settings(), Published(), resolve=lambda host, port: next(answers)
        )
        url = f"http://hooks.rebind.example:{receiver.port}/hooks/carveout"
        n = queue(store, subscribe(store, "webhook", url))
        async with running(deliverer) as worker:
            worker.wake()
            await until(lambda: receiver.accepted(), 5, "the delivery")
            # Accepted, then recorded: wait for the record before the worker stops.
            await until(
                lambda: status(store, n.notification_id).status == "delivered", 5, "the record"
            )
        assert status(store, n.notification_id).status == "delivered"
        assert receiver.hosts == [f"hooks.rebind.example:{receiver.port}"]
    finally:
        receiver.stop()


# --------------------------------------------------------------------------- email


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1, and the PEM a client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carveout test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


def authenticator(login: bytes, password: bytes) -> Callable[..., AuthResult]:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (login, password)
        return AuthResult(success=ok, handled=False)

    return check


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_email_goes_over_tls_with_login(
    store: NotificationStore, tmp_path: Path, mode: str
) -> None:
    context, ca = self_signed(tmp_path)
    login = {"authenticator": authenticator(b"carveout", b"s3cret"), "auth_required": True}
    smtp = (
        SmtpServer(tls_context=context, require_starttls=True, **login)
        if mode == "starttls"
        # TLS from the first byte: aiosmtpd does not count it as TLS for AUTH, hence False
        else SmtpServer(ssl_context=context, auth_require_tls=False, **login)
    )
    smtp.start()
    try:
        good = settings(
            smtp_port=smtp.port,
            smtp_tls=mode,
            smtp_username="carveout",
            smtp_password="s3cret",
            smtp_ca_file=str(ca),
        )
        n = queue(store, subscribe(store, "email", "regulator@example.gov"))
        await Deliverer(store, good, Published()).attempt(n, store.subscriptions()[0])
        assert status(store, n.notification_id).status == "delivered"
        [mail] = smtp.inbox.messages
        assert mail["To"] == "regulator@example.gov"

        # Without TLS, or with a wrong password, or trusting another CA: refused.
        for wrong in (
            {"smtp_tls": "none"},
            {"smtp_password": "wrong"},
            {"smtp_ca_file": None},
        ):
            m = queue(store, store.subscriptions()[0])
            bad = settings(**{**good.model_dump(), **wrong, "smtp_password": wrong.get(
                "smtp_password", "s3cret")})  # fmt: skip
            await Deliverer(store, bad, Published()).attempt(m, store.subscriptions()[0])
            assert status(store, m.notification_id).status == "failed", wrong
        assert len(smtp.inbox.messages) == 1
    finally:
        smtp.stop()


async def test_an_email_address_that_cannot_be_a_header_is_never_sent(
    store: NotificationStore,
) -> None:
    smtp = SmtpServer()
    smtp.start()
    try:
        subscription = subscribe(store, "email", "x@example.gov\r\nBcc: all@example.gov")
        n = queue(store, subscription)
        await Deliverer(store, settings(smtp_port=smtp.port), Published()).attempt(n, subscription)
        row = status(store, n.notification_id)
        assert row.status == "failed" and "control" in (row.last_error or "")
        assert smtp.inbox.messages == []
    finally:
        smtp.stop()
