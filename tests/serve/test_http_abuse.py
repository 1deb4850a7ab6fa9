"""`distml serve` under clients that hold connections or send bad HTTP.

Each check runs a real server on 127.0.0.1 and talks to it over raw
sockets. An attacker binds its sockets to other loopback source addresses
(127.0.0.2 and up, which Linux routes to lo), so that the per-address
connection limit distinguishes it from a legitimate client on 127.0.0.1.
The checks cover:
  - 1,100 connections that stop inside their headers, while a request
    from another address still gets its reply within 2 s;
  - the per-address limit: connections over it are closed at once, and a
    new one from that address is closed instead of hanging;
  - the header timeout, shorter than the idle timeout;
  - the connection limit under a low open-file limit, which must leave the
    server the descriptors it needs to load a new model version;
  - the rate limit on libmicrohttpd's own log lines;
  - JSON error replies with their status for the malformed requests that
    the server answers itself.

Environment: DISTML (the binary), DISTML_TEST_TMP (scratch space),
DISTML_SOURCE_DIR (the checkout).
"""
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

DISTML = os.environ["DISTML"]
SOURCE = os.environ.get("DISTML_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
TMP = os.path.join(os.environ.get("DISTML_TEST_TMP", "/tmp"), "serve-abuse.%d" % os.getpid())
MODEL = "fmnist"
# One 28x28 image of zeros as TensorFlow Serving's row format.
PREDICT_BODY = json.dumps({"instances": [[[0.0] * 28] * 28]}).encode()
PARTIAL_HEADER = b"POST /v1/models/fmnist:predict HTTP/1.1\r\n"
# A legitimate request must get its reply within this many seconds.
PROMPT_S = 2.0

passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print("ok     " + name)
    else:
        failed += 1
        print("FAILED " + name + (": " + detail if detail else ""))


def make_model(base):
    """Trains a cnn for a few steps on generated data into BASE/1."""
    script = ('. "$1/tests/integration/lib/models.sh"; make_noise_dataset "$tmp/root"; '
              'make_model "$tmp/root" 1 2 "$2/1"')
    subprocess.run(["sh", "-c", script, "sh", SOURCE, base], check=True,
                   env=dict(os.environ, tmp=TMP, DISTML=DISTML))


class Server:
    """`distml serve` on a free port of 127.0.0.1, stopped with SIGTERM."""

    def __init__(self, name, base, *flags, open_files=None):
        self.name = name
        self.log_path = os.path.join(TMP, name + ".log")
        self.log = open(self.log_path, "w")
        limit = None
        if open_files is not None:
            limit = lambda: resource.setrlimit(  # noqa: E731
                resource.RLIMIT_NOFILE, (open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        self.proc = subprocess.Popen(
            [DISTML, "serve", "--model_name", MODEL, "--model_base_path", base,
             "--rest_api_port", "0", "--bind_address", "127.0.0.1", "--rest_api_num_threads", "4",
             *flags], stderr=self.log, preexec_fn=limit)
        self.port = None
        for _ in range(200):
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+) ", self.text())
            if found:
                self.port = int(found.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.proc.kill()
        self.proc.wait()
        sys.exit("the server did not start:\n" + self.text())

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        """Sends SIGTERM and checks for exit status 0, which a sanitizer
        report in the sanitizer build changes."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.log.close()
        check("%s server: exit status 0 after SIGTERM" % self.name, code == 0,
              "status %d; log:\n%s" % (code, self.text()[-2000:]))


def connect(port, source="127.0.0.1", timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


class Reply:
    """The first HTTP response on a connection, or how the connection ended without one."""

    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.seconds = 0.0
        self.outcome = "reply"  # or "closed", "reset", "timed out"

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def describe(self):
        if self.status is None:
            return "%s after %.2f s" % (self.outcome, self.seconds)
        return "%d after %.2f s, %s %r" % (self.status, self.seconds, self.headers.get("content-type"),
                                           self.body[:200])


def read_reply(s, timeout):
    """Reads one response from S, waiting at most TIMEOUT seconds."""
    reply = Reply()
    start = time.monotonic()
    data = b""
    length = None
    head_end = -1
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            reply.outcome = "timed out"
            break
        s.settimeout(left)
        try:
            part = s.recv(65536)
        except socket.timeout:
            reply.outcome = "timed out"
            break
        except ConnectionResetError:
            reply.outcome = "reset"
            break
        if not part:
            reply.outcome = "closed"
            break
        data += part
        if head_end < 0:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                lines = data[:head_end].decode("latin-1").split("\r\n")
                reply.status = int(lines[0].split(" ")[1])
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    reply.headers[key.strip().lower()] = value.strip()
                length = int(reply.headers.get("content-length", "0"))
        if head_end >= 0 and len(data) - head_end - 4 >= length:
            reply.outcome = "reply"
            break
    reply.seconds = time.monotonic() - start
    if head_end >= 0:
        reply.body = data[head_end + 4:head_end + 4 + (length or 0)]
    else:
        reply.status = None
    return reply


def exchange(port, data, source="127.0.0.1", timeout=10.0):
    """Sends the raw request DATA on a new connection and reads the reply."""
    start = time.monotonic()
    try:
        s = connect(port, source, timeout)
    except OSError as e:
        reply = Reply()
        reply.outcome = "connect failed: %s" % e
        return reply
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may close before it reads everything
        reply = read_reply(s, timeout - (time.monotonic() - start))
        reply.seconds = time.monotonic() - start
        return reply
    finally:
        s.close()


def request(method, path, body=b"", headers=()):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: test", "Connection: close"]
    lines += list(headers)
    if body or method == "POST":
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status_request():
    return request("GET", "/v1/models/" + MODEL)


def hold(port, count, source, data=PARTIAL_HEADER):
    """Opens COUNT connections from SOURCE that send DATA and then wait."""
    connections = []
    for _ in range(count):
        s = connect(port, source)
        s.sendall(data)
        connections.append(s)
    return connections


def wait_closed(sockets, seconds):
    """Returns the sockets of SOCKETS that the server closes within SECONDS."""
    closed = set()
    deadline = time.monotonic() + seconds
    while len(closed) < len(sockets):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([s for s in sockets if s not in closed], [], [], left)
        for s in ready:
            try:
                if s.recv(4096) == b"":
                    closed.add(s)
            except OSError:
                closed.add(s)
    return closed


def close_all(sockets):
    for s in sockets:
        s.close()


def answered_soon(port, source="127.0.0.1", tries=40):
    """Retries a status request until it gets 200, for up to TRIES * 0.25 s."""
    reply = None
    for _ in range(tries):
        reply = exchange(port, status_request(), source, timeout=5)
        if reply.status == 200:
            break
        time.sleep(0.25)
    return reply


def loopback_sources_work(port):
    try:
        connect(port, "127.0.0.2").close()
        return True
    except OSError as e:
        print("skip   attacker checks: cannot bind 127.0.0.2 as a source address: %s" % e)
        return False


def raise_open_file_limit(minimum):
    """Raises this process's soft open-file limit to MINIMUM if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= minimum:
        return True
    if hard != resource.RLIM_INFINITY and hard < minimum:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (minimum, hard))
    return True


# ---- checks ----

def check_idle_flood(base):
    """libmicrohttpd's default limit is 1020 connections, so 1,100 that
    stop inside their headers would make every new request wait for the
    idle timeout. Here they come from 127.0.0.2."""
    count = 1100
    if not raise_open_file_limit(count + 200):
        print("skip   idle flood: the open-file limit is below %d" % (count + 200))
        return
    server = Server("idle-flood", base)
    try:
        connections = hold(server.port, count, "127.0.0.2")
        reply = exchange(server.port, status_request(), timeout=30)
        check("idle flood: a request from another address gets 200",
              reply.status == 200, reply.describe())
        check("idle flood: the reply comes within %.0f s" % PROMPT_S,
              reply.seconds < PROMPT_S, reply.describe())
        close_all(connections)
        reply = answered_soon(server.port, "127.0.0.2")
        check("idle flood: after the flood, the attacker's address is served",
              reply.status == 200, reply.describe())
    finally:
        server.stop()


def check_per_ip_limit(base):
    limit = 20
    server = Server("per-ip", base, "--max_connections_per_ip", str(limit),
                    "--rest_api_timeout_in_ms", "60000", "--header_timeout_in_ms", "60000")
    try:
        connections = hold(server.port, 2 * limit, "127.0.0.2")
        closed = wait_closed(connections, PROMPT_S)
        check("per-IP limit: %d connections over the limit closed within %.0f s"
              % (limit, PROMPT_S), len(closed) == limit, "%d closed" % len(closed))
        connections = [s for s in connections if s not in closed]
        reply = exchange(server.port, status_request(), "127.0.0.2", timeout=30)
        check("per-IP limit: a request from the full address is closed, not left waiting",
              reply.status is None and reply.outcome in ("closed", "reset"), reply.describe())
        check("per-IP limit: that request ends within %.0f s" % PROMPT_S,
              reply.seconds < PROMPT_S, reply.describe())
        reply = exchange(server.port, status_request(), "127.0.0.1", timeout=30)
        check("per-IP limit: a request from another address gets 200 within %.0f s" % PROMPT_S,
              reply.status == 200 and reply.seconds < PROMPT_S, reply.describe())
        check("per-IP limit: the remaining connections are still open",
              not wait_closed(connections, 0.5), "the server closed some")
        close_all(connections)
        reply = answered_soon(server.port, "127.0.0.2")
        check("per-IP limit: after the attacker closes, its address is served",
              reply.status == 200, reply.describe())
        check("per-IP limit: the start log names the limit",
              "%d per client address" % limit in server.text())
    finally:
        server.stop()


def check_header_timeout(base):
    """With the idle timeout at 60 s, the default 10 s header timeout must
    close connections whose headers stall, while kept-alive idle ones and
    stalled bodies keep the full timeout."""
    server = Server("header-timeout", base, "--rest_api_timeout_in_ms", "60000")
    try:
        port = server.port
        cases = {}
        stalled_at = {}  # when each connection's last byte went out
        kept_alive = {}
        for name in ("partial header after a request", "idle after a request"):
            s = connect(port)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n")
            reply = read_reply(s, 10)
            check("header timeout: %s: first reply 200" % name, reply.status == 200,
                  reply.describe())
            kept_alive[name] = s
        starts = [
            ("partial header", PARTIAL_HEADER),
            ("nothing sent", b""),
            ("partial request line", b"POST /v1/mod"),
            ("stalled body", b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: test\r\n"
                             b"Content-Length: 100\r\n\r\n{"),
        ]
        for name, data in starts:
            cases[name] = hold(port, 1, "127.0.0.1", data)[0]
            stalled_at[name] = time.monotonic()
        cases["partial header after a request"] = kept_alive["partial header after a request"]
        cases["partial header after a request"].sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        stalled_at["partial header after a request"] = time.monotonic()
        cases["idle after a request"] = kept_alive["idle after a request"]
        stalled_at["idle after a request"] = time.monotonic()

        start = time.monotonic()
        closed_after = {}
        pending = dict(cases)
        # The header timeout is 10 s, and 30 s leaves room for a loaded
        # machine and is still half the idle timeout.
        while pending and time.monotonic() - start < 30:
            for s in wait_closed(list(pending.values()), 0.5):
                name = next(n for n, p in pending.items() if p is s)
                closed_after[name] = time.monotonic() - stalled_at[name]
                del pending[name]
        for name in ("partial header", "nothing sent", "partial request line",
                     "partial header after a request"):
            seconds = closed_after.get(name)
            check("header timeout: %s: closed within 30 s" % name, seconds is not None,
                  "still open after 30 s")
            # libmicrohttpd's timeouts are whole seconds of idle time.
            check("header timeout: %s: not before 9 s" % name,
                  seconds is None or seconds >= 9, "closed after %.1f s" % (seconds or 0))
        for name in ("idle after a request", "stalled body"):
            check("header timeout: %s: still open after 30 s" % name,
                  name not in closed_after, "closed after %.1f s" % closed_after.get(name, 0))
        close_all(cases.values())
        check("header timeout: the start log names both timeouts",
              "header timeout 10000 ms, idle timeout 60000 ms" in server.text())
    finally:
        server.stop()


def check_connection_limit(base):
    """Under an open-file limit of 128 the default connection limit must
    leave the descriptors to load a new version while attackers on four
    addresses hold connections. libmicrohttpd's own default of 1020 would
    let accept() take every descriptor."""
    server = Server("open-files", base, "--file_system_poll_wait_seconds", "1",
                    "--rest_api_timeout_in_ms", "60000", "--header_timeout_in_ms", "60000",
                    open_files=128)
    connections = []
    try:
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
            connections += hold(server.port, 40, source)
        time.sleep(1)
        staging = os.path.join(base, "staging-2")
        shutil.copytree(os.path.join(base, "1"), staging)
        os.rename(staging, os.path.join(base, "2"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "serving version 2 " not in server.text():
            time.sleep(0.25)
        text = server.text()
        check("open-file limit: version 2 loads while connections are open",
              "serving version 2 " in text, text[-1500:])
        check("open-file limit: no 'Too many open files' in the log",
              "Too many open files" not in text,
              "\n".join(l for l in text.splitlines() if "Too many open files" in l)[:600])
        check("open-file limit: no 'resource limit' message from libmicrohttpd",
              "resource limit" not in text)
        close_all(connections)
        connections = []
        reply = answered_soon(server.port)
        check("open-file limit: served after the attackers close", reply.status == 200,
              reply.describe())
        found = re.search(r"accepting at most (\d+) connections", text)
        check("open-file limit: the connection limit is below 128",
              found is not None and int(found.group(1)) < 128,
              found.group(0) if found else "no start line")
    finally:
        close_all(connections)
        server.stop()
        shutil.rmtree(os.path.join(base, "2"), ignore_errors=True)


def check_log_rate_limit(base):
    """Connections that close inside their headers make libmicrohttpd log
    one line each, which must be rate-limited and counted. The server reads
    every request line before the clients close, so each close is logged."""
    server = Server("log-flood", base)
    count = 300
    message = "Connection was closed by remote side with incomplete request."
    connections = hold(server.port, count, "127.0.0.1")
    time.sleep(1)
    start = time.monotonic()
    close_all(connections)
    # Let the server see every close before it stops.
    time.sleep(1)
    seconds = time.monotonic() - start
    server.stop()
    lines = server.text().splitlines()
    logged = sum(1 for l in lines if l.endswith("libmicrohttpd: " + message))
    reported = sum(int(m.group(1)) for m in
                   (re.search(r"libmicrohttpd: (\d+) more messages like \"%s\"" % re.escape(message), l)
                    for l in lines) if m)
    allowed = 10 * (int(seconds) + 3)
    check("log flood: at most %d of %d lines logged" % (allowed, count), logged <= allowed,
          "%d logged over %.1f s" % (logged, seconds))
    check("log flood: the rest are counted in a report line",
          logged + reported == count, "%d logged + %d reported" % (logged, reported))


def check_error_replies(base):
    server = Server("errors", base, "--max_body_bytes", "100000")
    port = server.port
    chunk = b"x" * 60000
    chunked_over = (b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                    + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    cases = [
        ("unknown method", request("BREW", "/v1/models/fmnist"), 501, "Method BREW is not implemented", None),
        ("lower-case method", request("get", "/v2/health/live"), 501, "Method get is not implemented", None),
        ("unknown method with a body", request("BREW", "/v1/models/fmnist:predict", PREDICT_BODY), 501,
         "Method BREW is not implemented", None),
        ("POST /metrics", request("POST", "/metrics"), 405, "Method POST is not allowed on /metrics", "GET, HEAD"),
        ("DELETE /v2/health/live", request("DELETE", "/v2/health/live"), 405,
         "Method DELETE is not allowed on /v2/health/live", "GET, HEAD"),
        ("GET on V2 infer", request("GET", "/v2/models/fmnist/infer"), 405,
         "Method GET is not allowed on /v2/models/fmnist/infer", "POST"),
        ("Transfer-Encoding gzip",
         b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: test\r\n"
         b"Transfer-Encoding: gzip\r\n\r\n{}", 400,
         "Transfer-Encoding 'gzip' does not end with chunked", None),
        ("Transfer-Encoding gzip, chunked",
         b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: test\r\n"
         b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501,
         "Transfer-Encoding 'gzip, chunked' is not supported", None),
        ("two Content-Length values",
         b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: test\r\n"
         b"Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}", 400,
         "Content-Length headers with different values", None),
        ("announced body over the limit",
         b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: test\r\nContent-Length: 200000\r\n\r\n",
         413, "larger than the maximum of 100000 bytes", None),
        ("chunked body over the limit", chunked_over, 413, "larger than the maximum of 100000 bytes", None),
    ]
    framing_errors = {"Transfer-Encoding gzip", "Transfer-Encoding gzip, chunked",
                      "two Content-Length values"}
    try:
        for name, data, status, text, allow in cases:
            reply = exchange(port, data, timeout=10)
            check("%s: status %d" % (name, status), reply.status == status, reply.describe())
            check("%s: within %.0f s" % (name, PROMPT_S), reply.seconds < PROMPT_S, reply.describe())
            check("%s: Content-Type application/json" % name,
                  reply.headers.get("content-type") == "application/json", reply.describe())
            try:
                error = reply.json().get("error")
            except ValueError:
                error = None
            check("%s: JSON error contains %r" % (name, text),
                  isinstance(error, str) and text in error, reply.describe())
            if allow is not None:
                check("%s: Allow: %s" % (name, allow), reply.headers.get("allow") == allow,
                      str(reply.headers))
            if name in framing_errors:
                # RFC 9112 section 6.3: the server closes after invalid framing.
                check("%s: Connection: close" % name, reply.headers.get("connection") == "close",
                      str(reply.headers))
        # libmicrohttpd 0.9.75 replies to these itself with an HTML page
        # that the server cannot replace, so only the status is checked.
        library_cases = [
            ("request line without a version", b"GET /v2/health/live\r\n\r\n", 400),
            ("header line without a colon",
             b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\nNoColon\r\n\r\n", 400),
            ("HTTP/2.0 request line", b"GET /v2/health/live HTTP/2.0\r\nHost: test\r\n\r\n", 505),
            ("200 KB header", b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\nX-Big: "
             + b"a" * 200000 + b"\r\n\r\n", 431),
            ("bad chunk size", b"POST /v1/models/fmnist:predict HTTP/1.1\r\nHost: test\r\n"
             b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
        ]
        for name, data, status in library_cases:
            reply = exchange(port, data, timeout=10)
            check("%s: status %d from libmicrohttpd" % (name, status), reply.status == status,
                  reply.describe())
        reply = exchange(port, status_request())
        check("errors: the server still answers afterwards", reply.status == 200, reply.describe())
    finally:
        server.stop()


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    base = os.path.join(TMP, "models", MODEL)
    make_model(base)
    probe = Server("probe", base)
    sources = loopback_sources_work(probe.port)
    probe.stop()
    check_error_replies(base)
    check_log_rate_limit(base)
    if sources:
        check_idle_flood(base)
        check_per_ip_limit(base)
        check_connection_limit(base)
    check_header_timeout(base)
    print("%d passed, %d failed" % (passed, failed))
    if failed == 0:
        shutil.rmtree(TMP, ignore_errors=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
