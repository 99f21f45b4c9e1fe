"""Which advertised addresses a gateway may dial."""

from __future__ import annotations

import ipaddress

import pytest

from routing.advertise import AddressPolicy, checked_addresses, url_parts
from routing.errors import InvalidRequest


@pytest.mark.parametrize(
    ("address", "open_policy", "loopback_gateway", "in_networks"),
    [
        ("10.0.0.5", True, True, True),
        ("203.0.113.7", True, True, False),
        ("127.0.0.1", False, True, False),
        ("::1", False, True, False),
        ("169.254.169.254", False, False, False),
        ("::ffff:169.254.169.254", False, False, False),
        ("fe80::1", False, False, False),
        ("fd00:ec2::254", False, False, False),
        ("100.100.100.200", False, False, False),
        ("0.0.0.0", False, False, False),
        ("224.0.0.1", False, False, False),
    ],
)
def test_the_policy(address: str, open_policy: bool, loopback_gateway: bool, in_networks: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert (AddressPolicy().refusal(ip) is None) == open_policy
    assert (AddressPolicy(allow_loopback=True).refusal(ip) is None) == loopback_gateway
    networks = AddressPolicy.of(allow_loopback=False, networks=("10.0.0.0/8", "fd00::/8"))
    assert (networks.refusal(ip) is None) == in_networks


@pytest.mark.parametrize(
    "url",
    ["ftp://h", "http://", "http://u@h", "http://h/p", "http://h?x", "http://h#f", "http://h:99999", "http://h:x"],
)
def test_an_advertised_url_is_a_scheme_a_host_and_a_port(url: str) -> None:
    with pytest.raises(InvalidRequest):
        url_parts(url)


async def test_names_are_resolved_and_every_address_checked() -> None:
    assert url_parts("https://worker.example") == ("worker.example", 443)
    with pytest.raises(InvalidRequest, match="loopback"):
        await checked_addresses("http://localhost:8081", AddressPolicy())
    assert await checked_addresses("http://localhost:8081/", AddressPolicy(allow_loopback=True))
