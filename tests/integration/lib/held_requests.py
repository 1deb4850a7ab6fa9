"""Send POST requests whose bodies finish together, so that every request
is announced to a batching server before any of them is complete.

    held_requests.py PORT OUTDIR PATH@BODYFILE[@hangup] ...

Each request's headers and the first half of its body go out first, on its
own connection to 127.0.0.1:PORT. After 0.3 s the rest of every body goes
out, in order. A request marked hangup closes its connection right after its body,
without reading the reply. The others' replies are written to
OUTDIR/N.code (the status) and OUTDIR/N.json (the body), N counting from 1.
"""

import socket
import sys
import time


def read_reply(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the reply's headers")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed inside the reply's body")
        body += chunk
    return status, body[:length]


def main():
    port, outdir = int(sys.argv[1]), sys.argv[2]
    requests = []
    for spec in sys.argv[3:]:
        parts = spec.split("@")
        path, body = parts[0], open(parts[1], "rb").read()
        hangup = len(parts) > 2 and parts[2] == "hangup"
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        half = len(body) // 2
        sock.sendall(head.encode() + body[:half])
        requests.append((sock, body[half:], hangup))
    # Time for the server to read every request's headers.
    time.sleep(0.3)
    for sock, rest, hangup in requests:
        sock.sendall(rest)
        if hangup:
            sock.close()
    for number, (sock, _, hangup) in enumerate(requests, start=1):
        if hangup:
            continue
        status, body = read_reply(sock)
        sock.close()
        with open(f"{outdir}/{number}.code", "w") as out:
            out.write(f"{status}\n")
        with open(f"{outdir}/{number}.json", "wb") as out:
            out.write(body)


if __name__ == "__main__":
    main()
