"""Forwards TCP connections on HOST:PORT to a unix socket: a Docker engine reached over
`tcp://` as a remote one is (`python tcp_to_unix.py HOST PORT /var/run/docker.sock`)."""

import socket
import sys
import threading


def pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
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
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = socket.create_server((host, port))
    print(f"forwarding {host}:{port} to {path}", flush=True)
    while True:
        client, _ = server.accept()
        engine = socket.socket(socket.AF_UNIX)
        engine.connect(path)
        for a, b in ((client, engine), (engine, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
