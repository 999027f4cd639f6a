"""The address rules both services use: pure, with the resolver passed in."""

from __future__ import annotations

import ipaddress

import pytest

from carveout_runtime.addresses import (
    AddressRefused,
    HostUnresolved,
    check_webhook_address,
    email_address_problem,
    parse_networks,
    refused_range,
)

LOOPBACK = parse_networks("127.0.0.0/8,::1/128")


@pytest.mark.parametrize(
    ("ip", "named"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("10.1.2.3", "10.0.0.0/8"),
        ("172.16.0.1", "172.16.0.0/12"),
        ("192.168.1.1", "192.168.0.0/16"),
        ("169.254.169.254", "169.254.0.0/16"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("224.0.0.251", "224.0.0.0/4"),
        ("240.0.0.1", "240.0.0.0/4"),
        ("::1", "::1/128"),
        ("::", "::/128"),
        ("fd00::1", "fc00::/7"),
        ("fe80::1", "fe80::/10"),
        ("ff02::1", "ff00::/8"),
        ("::ffff:169.254.169.254", "169.254.0.0/16"),
        ("::ffff:10.0.0.1", "10.0.0.0/8"),
        ("64:ff9b::a00:1", "10.0.0.0/8"),
        ("2002:a00:1::", "10.0.0.0/8"),
    ],
)
def test_internal_addresses_are_refused_naming_the_range(ip: str, named: str) -> None:
    assert named in (refused_range(ipaddress.ip_address(ip)) or "")


@pytest.mark.parametrize("ip", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are_not(ip: str) -> None:
    assert refused_range(ipaddress.ip_address(ip)) is None


def test_an_allowed_network_opens_exactly_itself() -> None:
    assert refused_range(ipaddress.ip_address("127.0.0.1"), LOOPBACK) is None
    assert refused_range(ipaddress.ip_address("::ffff:127.0.0.1"), LOOPBACK) is None
    assert refused_range(ipaddress.ip_address("::1"), LOOPBACK) is None
    assert refused_range(ipaddress.ip_address("10.0.0.1"), LOOPBACK) is not None


def test_every_resolved_address_must_pass() -> None:
    with pytest.raises(AddressRefused, match=r"resolves to 10\.0\.0\.5"):
        check_webhook_address(
            "https://hooks.example.com/x", resolve=lambda h, p: ["93.184.215.14", "10.0.0.5"]
        )
    target = check_webhook_address(
        "https://hooks.example.com:8443/x", resolve=lambda h, p: ["93.184.215.14"]
    )
    assert (target.host, target.port, [str(a) for a in target.addresses]) == (
        "hooks.example.com",
        8443,
        ["93.184.215.14"],
    )


@pytest.mark.parametrize(
    "url", ["http://user:pw@example.com/", "http://user@example.com/", "file:///etc/passwd"]
)
def test_userinfo_and_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(AddressRefused):
        check_webhook_address(url, resolve=lambda h, p: ["93.184.215.14"])


def test_an_unresolvable_host_is_accepted_only_when_asked() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    assert check_webhook_address("https://x.invalid/", resolve=nowhere, must_resolve=False)
    with pytest.raises(HostUnresolved):
        check_webhook_address("https://x.invalid/", resolve=nowhere)


def test_a_wrong_cidr_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks("127.0.0.0/8, 10.0.0.0/33")


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com\r\nBcc: b@example.com",
        "a@example.com\n",
        "A <a@example.com>",
        "a@example.com,b@example.com",
        "a b@example.com",
        "not-an-address",
    ],
)
def test_email_addresses_that_cannot_be_a_header(address: str) -> None:
    assert email_address_problem(address) is not None


def test_a_plain_email_address_is_fine() -> None:
    assert email_address_problem("regulator@example.gov") is None
