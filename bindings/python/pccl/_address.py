"""Parsing "host:port" addresses into what the C API takes (protocol, raw bytes, port)."""

from __future__ import annotations

import ipaddress
import socket
from typing import NamedTuple

__all__ = ["SocketAddress", "parse_address", "DEFAULT_MASTER_PORT"]

DEFAULT_MASTER_PORT = 48148
"""The master's default port (``CCOIP_PROTOCOL_PORT_MASTER``)."""

INET_IPV4 = 0
INET_IPV6 = 1


class SocketAddress(NamedTuple):
    protocol: int  # 0 = inetIPv4, 1 = inetIPv6
    ip: bytes  # 4 or 16 bytes, network order
    port: int

    def __str__(self) -> str:
        if self.protocol == INET_IPV6:
            return f"[{ipaddress.IPv6Address(self.ip)}]:{self.port}"
        return f"{ipaddress.IPv4Address(self.ip)}:{self.port}"


def parse_address(text: str, *, default_port: int = DEFAULT_MASTER_PORT, allow_port_zero: bool = False) -> SocketAddress:
    """Parse ``"1.2.3.4:5"``, ``"[::1]:5"``, ``"hostname:5"`` (resolved now), or any of these
    without the port (``default_port``). Raises TypeError for a non-string and ValueError for a
    malformed address, a bad port or a host that does not resolve."""
    if not isinstance(text, str):
        raise TypeError(f"address must be a str like '127.0.0.1:48148' or '[::1]:48148', got {type(text).__name__}")
    s = text.strip()
    port_text = ""
    if s.startswith("["):
        close = s.find("]")
        if close < 0:
            raise ValueError(f"bad address '{text}': missing ']' after the IPv6 address")
        host = s[1:close]
        rest = s[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad address '{text}': expected ':port' after ']'")
            port_text = rest[1:]
            if not port_text:
                raise ValueError(f"bad address '{text}': empty port after ':'")
    elif s.count(":") == 1:
        host, port_text = s.split(":")
        if not port_text:
            raise ValueError(f"bad address '{text}': empty port after ':'")
    else:
        host = s  # no port, or a bare IPv6 address
    if not host:
        raise ValueError(f"bad address '{text}': empty host")
    if port_text:
        # The C library's words (src/transport/address.cpp): pccl-master and the Python
        # pccl-master answer a bad --listen alike.
        if not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"bad address '{text}': port '{port_text}' is not a decimal number")
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"bad address '{text}': port '{port_text}' is above 65535")
    else:
        port = default_port
    if port == 0 and not allow_port_zero:
        raise ValueError(f"bad port 0 in address '{text}' (must be 1..65535)")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise ValueError(f"cannot resolve host '{host}' in address '{text}': {e}") from None
        if not infos:
            raise ValueError(f"cannot resolve host '{host}' in address '{text}'")
        # Prefer IPv4 when the name has both (a master listening on 0.0.0.0 is the common case).
        infos.sort(key=lambda i: 0 if i[0] == socket.AF_INET else 1)
        ip = ipaddress.ip_address(infos[0][4][0].split("%", 1)[0])
    if ip.version == 4:
        return SocketAddress(INET_IPV4, ip.packed, port)
    return SocketAddress(INET_IPV6, ip.packed, port)
