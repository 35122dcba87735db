"""Forwards TCP connections on HOST:PORT to a unix socket: a Docker engine reached over
`tcp://` as a remote one is (`python tcp_to_unix.py HOST PORT /var/run/docker.sock`).

With ``--hold-create`` it prints the first line of each request it forwards (`> POST /...`),
and holds the first container create it sees (printing `held POST /containers/create...`)
until a line arrives on its stdin: a supervisor can then die with its create still on the way,
and the create be carried out when the test says (after the watchdog's first look).
"""

import socket
import sys
import threading

_said = threading.Lock()
_held = threading.Event()  # set once a create has been held (only the first is)


def say(line: str) -> None:
    with _said:
        print(line, flush=True)


def pump(src: socket.socket, dst: socket.socket, watch: bool) -> None:
    try:
        while data := src.recv(65536):
            first = data.split(b"\r\n", 1)[0].decode(errors="replace")
            if watch and first.split(" ", 1)[0] in ("GET", "POST", "DELETE", "PUT", "HEAD"):
                if first.startswith("POST /containers/create") and not _held.is_set():
                    _held.set()
                    say(f"held {first}")
                    sys.stdin.readline()  # released by the test
                say(f"> {first}")
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main() -> None:
    watch = "--hold-create" in sys.argv
    host, port, path = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    server = socket.create_server((host, int(port)))
    say(f"forwarding {host}:{port} to {path}")
    while True:
        client, _ = server.accept()
        engine = socket.socket(socket.AF_UNIX)
        engine.connect(path)
        threading.Thread(target=pump, args=(client, engine, watch), daemon=True).start()
        threading.Thread(target=pump, args=(engine, client, False), daemon=True).start()


if __name__ == "__main__":
    main()
