"""Where this node is on the network, as its peers see it: the defaults of AIM_NODE_ADDRESS and
AIM_NETWORK_INTERFACE (docs/multinode.md, "Topology").

The kernel already knows: the source address of the route to the leader is the address the
leader sees us at, and the interface holding that address is the one the engines' socket traffic
(GLOO/NCCL_SOCKET_IFNAME) must use. A UDP `connect()` asks the routing table without sending a
packet; interfaces and their addresses come from `SIOCGIFADDR` (IPv4) and `/proc/net/if_inet6`.

Stdlib only, and imported only on a real group: one node never pays for it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

SIOCGIFADDR = 0x8915
_DISCARD_PORT = 9      # any port: connect() on UDP only picks the route, nothing is sent


def route_source(host: str) -> str | None:
    """The local address the kernel would use to reach `host` (None: unresolvable, no route)."""
    try:
        infos = socket.getaddrinfo(host, _DISCARD_PORT, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return None
    for family, _type, _proto, _name, address in infos:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                return str(sock.getsockname()[0])
        except OSError:
            continue
    return None


def interfaces(sys_root: str = "/sys") -> set[str]:
    """The network interfaces of this network namespace."""
    try:
        return set(os.listdir(os.path.join(sys_root, "class", "net")))
    except OSError:
        return {name for _index, name in _if_nameindex()}


def _if_nameindex() -> list[tuple[int, str]]:
    try:
        return socket.if_nameindex()
    except OSError:
        return []


def ipv4_of(interface: str) -> str | None:
    """The IPv4 address of `interface` (SIOCGIFADDR), None when it has none."""
    import fcntl

    request = struct.pack("256s", interface.encode()[:15])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
    except OSError:
        return None
    return socket.inet_ntoa(answer[20:24])


def _ipv6_addresses(proc_root: str = "/proc") -> list[tuple[str, str]]:
    """(address, interface) pairs from /proc/net/if_inet6."""
    try:
        with open(os.path.join(proc_root, "net", "if_inet6"), encoding="ascii") as handle:
            lines = handle.read(1 << 20).splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and len(fields[0]) == 32:
            try:
                out.append((str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))), fields[5]))
            except ValueError:
                continue
    return out


def interface_of(address: str) -> str | None:
    """The interface that holds `address` (the one traffic from that address leaves by)."""
    try:
        wanted = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if wanted.version == 6:
        return next((name for found, name in _ipv6_addresses() if ipaddress.ip_address(found) == wanted), None)
    for _index, name in _if_nameindex():
        if ipv4_of(name) == str(wanted):
            return name
    if wanted.is_loopback:
        return next((name for _index, name in _if_nameindex() if name == "lo"), None)
    return None


def default_route_interface(proc_root: str = "/proc") -> str | None:
    """The interface of the IPv4 default route (/proc/net/route), None without one."""
    try:
        with open(os.path.join(proc_root, "net", "route"), encoding="ascii") as handle:
            lines = handle.read(1 << 20).splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == "00000000" and fields[7] == "00000000":
            return fields[0]
    return None


def default_route_address() -> str | None:
    """This node's address on its default route (a leader with nothing else to go by)."""
    name = default_route_interface()
    return ipv4_of(name) if name else None
