"""A loopback HTTP server that never finishes an answer, for ingest_cli.sh.

Usage: python3 stall_server.py FILE PORTFILE
Listens on 127.0.0.1 (a free port, written to PORTFILE). A request for a
path containing "/silent" gets nothing at all (the connection stays open);
any other request gets the headers of FILE and its first 4000 bytes, then
nothing. Runs until killed.
"""
import os
import socket
import sys
import threading
import time

data = open(sys.argv[1], "rb").read()
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(8)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(srv.getsockname()[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])


def serve(conn):
    if b"/silent" not in conn.recv(4096):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data) + data[:4000])
    time.sleep(3600)


while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
