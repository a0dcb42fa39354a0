"""Where a webhook may be sent: an http(s) URL whose every resolved address is public
(unless private addresses are allowed), connected to by the address that was checked."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import httpx

from thaw.webhooks.errors import WebhookUrlRefused

MAX_URL_CHARS = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address to connect to."""

    url: httpx.URL
    address: IPAddress

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with its host replaced by the checked address, so no second lookup
        can lead the connection elsewhere; the Host header and TLS name stay the host's."""
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return self.url.copy_with(host=host)

    @property
    def host_header(self) -> str:
        default = {"http": 80, "https": 443}[self.url.scheme]
        port = self.url.port
        return self.url.host if port in (None, default) else f"{self.url.host}:{port}"


def parse_url(url: str) -> httpx.URL:
    """The URL's shape: http or https, a host, no credentials, at most MAX_URL_CHARS."""
    if len(url) > MAX_URL_CHARS:
        raise WebhookUrlRefused(url, f"the URL is {len(url)} characters; at most {MAX_URL_CHARS}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise WebhookUrlRefused(url, f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise WebhookUrlRefused(url, "use an http:// or https:// URL")
    if not parsed.host:
        raise WebhookUrlRefused(url, "the URL has no host")
    if parsed.userinfo:
        raise WebhookUrlRefused(url, "credentials in the URL are not accepted")
    return parsed


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve_target(url: str, allow_private: bool) -> Target:
    """Check ``url`` and resolve its host; refused when any address it resolves to is
    private, loopback, link-local or otherwise not public, unless ``allow_private``."""
    parsed = parse_url(url)
    port = parsed.port or {"http": 80, "https": 443}[parsed.scheme]
    try:
        infos = socket.getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookUrlRefused(url, f"the host {parsed.host!r} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise WebhookUrlRefused(url, f"the host {parsed.host!r} has no address")
    refused = [a for a in addresses if not is_public(a)]
    if refused and not allow_private:
        raise WebhookUrlRefused(
            url,
            f"the host {parsed.host!r} resolves to {refused[0]}, which is not a public address "
            "(private, loopback, link-local or reserved); set THAW_WEBHOOKS_ALLOW_PRIVATE=true "
            "to allow receivers on this host or network",
        )
    return Target(parsed, addresses[0])
