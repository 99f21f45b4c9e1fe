"""Where a worker says it can be reached, and whether a gateway may go there.

A gateway sends probes with credentials and clients' prompts to the URL a
worker advertises, and relays what comes back: a worker advertising an
internal address (the gateway's own loopback, a cloud metadata service)
would turn the gateway into its proxy (SSRF). So an advertised URL is only a
scheme, a host and a port — no userinfo, path, query or fragment — and every
address its host resolves to must pass the policy: never unspecified,
multicast, link-local (169.254/16, fe80::/10, where metadata services live)
or a known metadata address; loopback only for a gateway that itself listens
on loopback (``infercdn up``); and, where the operator lists
``worker_networks``, inside one of them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from routing.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata and host-agent services outside link-local: AWS (IPv6), Alibaba, Azure's wire server.
METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16"))
MAX_ADDRESSES = 16


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allow_loopback: bool = False
    networks: tuple[Network, ...] = ()  # empty: any address the rules above allow

    @classmethod
    def of(cls, *, allow_loopback: bool, networks: tuple[str, ...]) -> AddressPolicy:
        return cls(allow_loopback, tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why a gateway must not dial ``address``, or None if it may."""
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        address = mapped or address
        if address.is_unspecified or address.is_multicast:
            return "an unspecified or multicast address"
        if address.is_link_local or address in METADATA:
            return "a link-local or metadata address"
        if self.networks:
            if not any(address in network for network in self.networks):
                return "outside the gateway's worker_networks"
            return None
        if address.is_loopback and not self.allow_loopback:
            return "a loopback address (this gateway is not on loopback)"
        return None


def url_parts(url: str) -> tuple[str, int]:
    """(host, port) of an advertised URL; InvalidRequest unless it is only scheme, host and port."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidRequest("a worker's url must be http(s)://HOST[:PORT]", param="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("a worker's url must be http(s)://HOST[:PORT]", param="url")
    if "@" in parts.netloc or parts.path not in ("", "/") or parts.query or parts.fragment or "#" in url:
        raise InvalidRequest("a worker's url may not carry userinfo, a path, a query or a fragment", param="url")
    return parts.hostname, port


async def checked_addresses(url: str, policy: AddressPolicy) -> tuple[IPAddress, ...]:
    """Resolve the URL's host and apply the policy to every address; InvalidRequest naming the first refused."""
    host, port = url_parts(url)
    try:
        addresses: tuple[IPAddress, ...] = (ipaddress.ip_address(host),)
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise InvalidRequest(f"the worker's host {host!r} does not resolve: {exc}", param="url") from None
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))[:MAX_ADDRESSES]
    for address in addresses:
        refusal = policy.refusal(address)
        if refusal is not None:
            raise InvalidRequest(f"the worker's url points at {address}, {refusal}", param="url")
    return addresses
