"""Which contact addresses Carveout will write to: webhook URLs and email addresses.

A webhook is a request Carveout makes on someone else's say-so, so its address must not
reach what only Carveout's own network can reach (server-side request forgery): a host
that is, or resolves to, a loopback, private, link-local, shared, multicast, unspecified
or reserved address is refused unless an operator opened that range
(``CARVEOUT_NOTIFICATION_WEBHOOK_ALLOW_NETWORKS``). Both services that accept addresses
(grant contacts, subscriptions) and the delivery worker use these rules, so they agree.

Only the standard library: the rules are pure functions, and the resolver is passed in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port)`` → the IP addresses it resolves to; raises ``OSError`` when it cannot."""

LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
"""What ``carveout up`` opens, so that receivers on the same machine can be used."""

_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata lives here)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
    ("192.0.2.0/24", "reserved (documentation)"),
    ("192.88.99.0/24", "reserved (6to4 relay)"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved (benchmarking)"),
    ("198.51.100.0/24", "reserved (documentation)"),
    ("203.0.113.0/24", "reserved (documentation)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "reserved (local NAT64)"),
    ("100::/64", "reserved (discard)"),
    ("2001::/23", "reserved (IETF protocol assignments)"),
    ("2001:db8::/32", "reserved (documentation)"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "reserved (site-local)"),
    ("ff00::/8", "multicast"),
)
REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), name) for cidr, name in _REFUSED
)


class AddressRefused(ValueError):
    """An address Carveout will not deliver to; the message says which rule and why."""


class HostUnresolved(AddressRefused):
    """The host did not resolve: perhaps for now only (DNS down), so worth trying later."""


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook URL taken apart, and the checked addresses its host resolved to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (``127.0.0.0/8,::1/128``); a wrong one is named."""
    networks: list[IPNetwork] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"{part!r} is not a network in CIDR notation: {exc}") from None
    return tuple(networks)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and is routed to (mapped, NAT64, 6to4, Teredo)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def refused_range(ip: IPAddress, allow: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``ip`` may not be sent to (the range and its kind), or ``None`` when it may.

    An IPv6 address that carries an IPv4 one (``::ffff:10.0.0.1``) is judged as that IPv4
    address too, since that is where the packets go. An allowed network opens exactly the
    addresses inside it.
    """
    allowed = tuple(allow)
    candidates: list[IPAddress] = [ip]
    if (inner := _embedded_ipv4(ip)) is not None:
        candidates.append(inner)
    if any(c in net for c in candidates for net in allowed if c.version == net.version):
        return None
    for candidate in candidates:
        for network, name in REFUSED_NETWORKS:
            if candidate.version == network.version and candidate in network:
                return f"{network} ({name})"
    for candidate in candidates:
        if not candidate.is_global:
            return f"{candidate} is not globally routable"
    return None


def split_webhook_url(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an ``http(s)://`` URL without userinfo; else refused."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"webhook address {address!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise AddressRefused(f"webhook address {address!r} must start with https:// or http://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise AddressRefused(
            f"webhook address {address!r} must not carry a user name or password (userinfo)"
        )
    host = parts.hostname
    if not host:
        raise AddressRefused(f"webhook address {address!r} has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``, IPv4 and IPv6."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_webhook_address(
    address: str,
    allow: Iterable[IPNetwork] = (),
    resolve: Resolver = system_resolver,
    *,
    must_resolve: bool = True,
) -> WebhookTarget:
    """The checked target of a webhook URL, or :class:`AddressRefused` naming the rule.

    Every address the host resolves to must be permitted, not just the first: a name with
    one public and one private address would otherwise reach the private one on some
    attempts. With ``must_resolve=False`` (accepting a contact), a host that does not
    resolve yet is accepted with no addresses: each delivery resolves and checks again.
    """
    scheme, host, port = split_webhook_url(address)
    allowed = tuple(allow)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found: tuple[IPAddress, ...] = (literal,)
    else:
        try:
            found = tuple(ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port))
        except OSError as exc:
            if must_resolve:
                raise HostUnresolved(
                    f"webhook host {host!r} could not be resolved: {exc}"
                ) from None
            found = ()
        if not found and must_resolve:
            raise HostUnresolved(f"webhook host {host!r} resolved to no address")
    for ip in found:
        if (why := refused_range(ip, allowed)) is not None:
            shown = f"{host!r}" if literal is not None else f"{host!r}, which resolves to {ip},"
            raise AddressRefused(
                f"webhook address {shown} is in {why}; Carveout does not send webhooks there "
                "(an operator can open a range with CARVEOUT_NOTIFICATION_WEBHOOK_ALLOW_NETWORKS)"
            )
    return WebhookTarget(address, scheme, host, port, found)


_HEADER_UNSAFE = frozenset('<>,;:()[]\\"')


def email_address_problem(address: str) -> str | None:
    """Why ``address`` cannot be written as a mail recipient header, or ``None``.

    email-validator judges the syntax; on top of it, the address must be the bare address
    (no display name, no second recipient), with no control characters or whitespace,
    since it is written into a ``To:`` header as it is.
    """
    bad = sorted({c for c in address if ord(c) < 0x20 or ord(c) == 0x7F or c.isspace()})
    if bad:
        return f"email address {address!r} contains control or space characters {bad!r}"
    if unsafe := sorted(set(address) & _HEADER_UNSAFE):
        return (
            f"email address {address!r} contains {''.join(unsafe)!r}, not allowed in a "
            "recipient header (give the bare address only)"
        )
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"email address {address!r} is not valid: {exc}"
    return None


async def refuse_unsafe_webhook(
    address: str, allow: Sequence[IPNetwork], resolve: Resolver = system_resolver
) -> None:
    """:func:`check_webhook_address` as an API checks a new address: resolving blocks, so
    it runs in a thread, and a host that does not resolve yet is accepted, since every
    delivery resolves and checks again before it connects. Raises :class:`AddressRefused`.
    """
    await asyncio.to_thread(check_webhook_address, address, allow, resolve, must_resolve=False)
