"""The first two probes of an endpoint: its name resolves (``dns``), and a TCP connection to it
opens (``connect``, with the time it took)."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

from pyctl.registry.hosts.model import RegistryHost
from pyctl.registry.probes.steps import Checklist, TimedOut, millis
from pyctl.registry.probes.target import Target, hostname, port

Address = tuple[int, Any]  # (family, sockaddr) as socket.getaddrinfo gives them


def lookup(c: Checklist, t: Target, h: RegistryHost) -> list[Address]:
    """The addresses of ``h``'s host ([] when it does not resolve: the step failed)."""
    name, number = hostname(h), port(h)
    fix = f"add {name} to DNS or /etc/hosts, or name another host in {t.provenance.applied(h)}"
    if h.source == "default":
        fix = f"add {name} to DNS or /etc/hosts"

    def resolve() -> list[Address]:
        infos = socket.getaddrinfo(name, number, type=socket.SOCK_STREAM)
        return list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in infos))

    try:
        ipaddress.ip_address(name)
    except ValueError:
        literal = False
    else:
        literal = True
    try:
        addresses = c.run(resolve)
    except TimedOut:
        c.timed_out("dns", f"from the name service for {name}", fix)
        return []
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        c.fail("dns", f"cannot resolve {name}: {reason}", fix)
        return []
    if literal:
        c.ok("dns", f"{name} is an address: nothing to resolve")
    else:
        ips = ", ".join(dict.fromkeys(str(sockaddr[0]) for _, sockaddr in addresses))
        c.ok("dns", f"{name} is {ips} ({millis(c.elapsed)})")
    return addresses


def connect(c: Checklist, h: RegistryHost, addresses: list[Address]) -> Address | None:
    """The first address of ``addresses`` that takes a TCP connection (None: none did)."""
    failures: list[str] = []
    refused = False

    def attempt() -> tuple[Address, float] | None:
        nonlocal refused
        for family, sockaddr in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(c.timeout)
            began = time.monotonic()
            try:
                sock.connect(sockaddr)
            except ConnectionRefusedError:
                refused = True
                failures.append(f"connection refused by {show(family, sockaddr)}")
            except TimeoutError:
                failures.append(f"no answer from {show(family, sockaddr)}")
            except OSError as exc:
                failures.append(f"{show(family, sockaddr)}: {exc.strerror or exc}")
            else:
                return (family, sockaddr), time.monotonic() - began
            finally:
                sock.close()
        return None

    try:
        done = c.run(attempt)
    except TimedOut:
        first = show(*addresses[0])
        c.timed_out(
            "connect",
            f"from {first}: a firewall drops the connection, or the host is down",
            f"is the registry at {h.host} up, and reachable from here?",
        )
        return None
    if done is None:
        text = "; ".join(failures)
        if refused:
            text += f": nothing listens on port {port(h)}"
        c.fail("connect", text, f"is the registry running at {h.host}, and reachable from here?")
        return None
    address, elapsed = done
    c.ok("connect", f"{show(*address)} in {millis(elapsed)}")
    return address


def show(family: int, sockaddr: Any) -> str:
    """``10.0.0.5:443``, ``[fe80::1]:443``."""
    host, number = sockaddr[0], sockaddr[1]
    return f"[{host}]:{number}" if family == socket.AF_INET6 else f"{host}:{number}"
