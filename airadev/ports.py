"""Whether a port is taken on this machine, and by which process."""

from __future__ import annotations

import errno
import os
import socket


def port_in_use(port: int) -> bool:
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
        finally:
            sock.close()
    return False


def port_holder(port: int) -> tuple[int, str] | None:
    import psutil

    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.Error:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                argv = psutil.Process(conn.pid).cmdline()
                # Paths shortened to their last part: where the workspace lives must not push the
                # program's name out of the line when it is cut.
                cmdline = " ".join(os.path.basename(a) if a.startswith("/") else a for a in argv)
                cmdline = cmdline or psutil.Process(conn.pid).name()
            except psutil.Error:
                cmdline = "?"
            return conn.pid, cmdline
    return None
