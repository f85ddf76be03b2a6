"""Where a completion callback may be sent: the SSRF rules, checked before any connection.

A callback URL comes from whoever submitted the job, and the worker POSTs from inside the
VPC, where the instance metadata service (169.254.169.254, fd00:ec2::254), the emulator and
private services answer. So, safe by default:

* `https` only; `http` only when JOBS_TARGET=local and every address is loopback;
* no userinfo (`user:pass@`), a host, a port from 1 to 65535 (any port: the address rule
  is what keeps internal services out), at most 2,048 characters, no whitespace;
* the host is resolved once, and the URL is refused when ANY address is not global:
  private, loopback (unless local), link-local, multicast, reserved, unspecified, CGNAT
  (100.64.0.0/10), or an IPv4-mapped, 6to4 or NAT64 form of one of those;
* JOBS_CALLBACK_ALLOW (comma-separated CIDRs or host names) exempts addresses or hosts
  from the address rule (never from the scheme rule, never 0.0.0.0 or ::);
* the caller connects to the vetted address itself (tasks.callbacks.post), never
  resolving the name again, so a DNS answer that changes (rebinding) cannot redirect it.

`check_form` is the submission-side check (no DNS: the worker's allow-list is not known
there); `vet` is the worker's, right before each attempt.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

MAX_URL_CHARS = 2048
NAT64 = ipaddress.ip_network("64:ff9b::/96")
CGNAT = ipaddress.ip_network("100.64.0.0/10")
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]


class CallbackRefused(ValueError):
    """The URL may not be called back. `retryable`: a lookup failure, worth another try."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Target:
    """A vetted callback: connect to `address`, speak to `host` (SNI, certificate, Host)."""

    scheme: str
    host: str  # as in the URL, IDNA-encoded, lowercase, IPv6 without brackets
    port: int
    address: str  # the one vetted address to connect to
    request_target: str  # path and query: what goes on the request line

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def _split(url: Any) -> tuple[SplitResult, str, int]:
    if not isinstance(url, str):
        raise CallbackRefused("the callback URL must be a string")
    if len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"the callback URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise CallbackRefused("the callback URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError as exc:
        raise CallbackRefused(f"the callback URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise CallbackRefused("the callback URL must be https")
    if "@" in parts.netloc:
        raise CallbackRefused("the callback URL may not carry a user name or password")
    if not hostname:
        raise CallbackRefused("the callback URL has no host")
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise CallbackRefused("the callback URL's port must be from 1 to 65535")
    literal = _literal(hostname)
    if literal is not None:
        if getattr(literal, "scope_id", None):
            raise CallbackRefused("the callback URL's address may not carry a zone")
        return parts, str(literal), port
    try:
        host = hostname.encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        raise CallbackRefused("the callback URL's host is not a valid name") from None
    if not _HOST_NAME.match(host):
        raise CallbackRefused("the callback URL's host is not a valid name")
    return parts, host, port


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_form(url: Any, *, local: bool) -> str:
    """The submission-side check: the URL's form only (no DNS). Returns the URL."""
    parts, _host, _port = _split(url)
    if parts.scheme.lower() == "http" and not local:
        raise CallbackRefused(
            "the callback URL must be https (http only to loopback when JOBS_TARGET=local)"
        )
    return url


def _embedded(address: Address) -> Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.teredo is not None:
            return address.teredo[1]
    return None


def forbidden_reason(address: Address, *, local: bool) -> str | None:
    """Why this address may not be called back, or None if it may."""
    inner = _embedded(address)
    if inner is not None:
        why = forbidden_reason(inner, local=local)
        if why:
            return f"{why} (embedded in {address})"
    if address.is_unspecified:
        return f"{address} is the unspecified address"
    if address.is_loopback:
        return None if local else f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is link-local (instance metadata lives there)"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return f"{address} is a shared (CGNAT) address"
    if address.is_private:
        return f"{address} is a private address"
    if address.is_reserved or not address.is_global:
        return f"{address} is a reserved address"
    return None


def _allowed(host: str, address: Address, allow: Iterable[str]) -> bool:
    if address.is_unspecified:
        return False
    for entry in allow:
        entry = entry.strip().lower()
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if entry == host:
                return True
            continue
        if address.version == network.version and address in network:
            return True
    return False


def vet(
    url: Any, *, local: bool, allow: Iterable[str] = (), resolve: Resolver | None = None
) -> Target:
    """The worker's check, right before an attempt: the form, then every address.

    Raises CallbackRefused (retryable only when the name did not resolve)."""
    parts, host, port = _split(url)
    scheme = parts.scheme.lower()
    allow = tuple(allow)
    literal = _literal(host)
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        try:
            infos = (resolve or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise CallbackRefused(
                f"the callback host {host} did not resolve: {exc}", retryable=True
            ) from None
        addresses = []
        for info in infos:
            try:
                addresses.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
            except (ValueError, IndexError, TypeError):
                raise CallbackRefused(
                    f"the callback host {host} resolved to an unusable address"
                ) from None
        if not addresses:
            raise CallbackRefused(f"the callback host {host} has no address", retryable=True)
    for address in addresses:
        why = forbidden_reason(address, local=local)
        if why and not _allowed(host, address, allow):
            raise CallbackRefused(f"the callback URL is refused: {host} -> {why}")
    if scheme == "http" and not (local and all(a.is_loopback for a in addresses)):
        raise CallbackRefused(
            "the callback URL must be https (http only to loopback when JOBS_TARGET=local)"
        )
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Target(scheme, host, port, str(addresses[0]), target)
