"""A real S3-compatible server on loopback for the tests, and a proxy that injects faults.

``MotoServer`` runs ``moto_server`` (installed by ``make``) on a free port. ``FaultProxy``
sits between slipstream and the server: it forwards HTTP/1.1 requests one by one and, per a
schedule, answers some with 503 SlowDown or 500 InternalError, resets the connection in the
middle of a body, sends a truncated body, stalls, or denies access, and logs every request so
tests can see what was fetched.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``check_signatures``: moto's authentication mode, which verifies each request's SigV4
    signature against an IAM user made here (``key``), as a real store does."""

    def __init__(self, check_signatures: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("moto_server")
        env = dict(os.environ)
        if check_signatures:
            # Unauthenticated: the three IAM calls that make the user below; then every
            # request must be signed with a key moto knows.
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        self.process = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        # Seconds, not load: the deadline only bounds a server that never comes up.
        deadline = time.monotonic() + 120
        while True:
            try:  # a TCP connection, not a request: requests count against the free ones
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        self.key = self._make_user() if check_signatures else ("testing", "testing")

    def _make_user(self) -> tuple[str, str]:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
            region_name="us-east-1",
        )
        iam.create_user(UserName="slipstream-test")
        key = iam.create_access_key(UserName="slipstream-test")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="slipstream-test", PolicyName="s3", PolicyDocument=json.dumps(policy)
        )
        return key["AccessKeyId"], key["SecretAccessKey"]

    def client(self):  # a boto3 client, to put test data in place
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.key[0],
            aws_secret_access_key=self.key[1],
            region_name="us-east-1",
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def upload_dir(client, bucket: str, prefix: str, directory: Path) -> list[str]:
    """Every file of ``directory`` under ``prefix``; returns the keys."""
    keys = []
    for path in sorted(directory.iterdir()):
        if path.is_file():
            key = f"{prefix}{path.name}"
            client.upload_file(str(path), bucket, key)
            keys.append(key)
    return keys


@dataclass
class Fault:
    """What to do to the first ``times`` requests whose target contains ``match``."""

    kind: str  # "503", "500", "reset", "truncate", "stall", "403", "hold"
    match: str = ""
    times: int = 1
    seconds: float = 3.0  # for "stall"
    release: threading.Event | None = None  # for "hold": answered once it is set


@dataclass
class FaultProxy:
    upstream_port: int
    faults: list[Fault] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def requests(self, predicate: Callable[[str], bool] = lambda _: True) -> list[str]:
        with self._lock:
            return [r for r in self.log if predicate(r)]

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _fault_for(self, request_line: str) -> Fault | None:
        with self._lock:
            self.log.append(request_line)
            for fault in self.faults:
                if fault.times > 0 and fault.match in request_line:
                    fault.times -= 1
                    self.injected.append(f"{fault.kind} {request_line}")
                    return fault
        return None

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with contextlib.suppress(OSError), conn:
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                length = _content_length(head)
                body = reader.read(length) if length else b""
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                fault = self._fault_for(request_line + _range(head))
                if fault is not None and fault.kind in ("503", "500", "403"):
                    conn.sendall(_error_response(fault.kind))
                    continue
                if fault is not None and fault.kind == "stall":
                    time.sleep(fault.seconds)
                if fault is not None and fault.kind == "hold" and fault.release is not None:
                    fault.release.wait()
                response_head, response_body = _forward(self.upstream_port, head, body)
                if fault is not None and fault.kind in ("reset", "truncate"):
                    conn.sendall(response_head + response_body[: len(response_body) // 3])
                    if fault.kind == "reset":  # RST instead of FIN
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    return
                conn.sendall(response_head + response_body)

    def close(self) -> None:
        self._server.close()


def _read_head(reader) -> bytes | None:
    lines = []
    while True:
        line = reader.readline()
        if not line:
            return None
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _range(head: bytes) -> str:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"range":
            return " range=" + value.strip().decode("latin-1")
    return ""


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _forward(port: int, head: bytes, body: bytes) -> tuple[bytes, bytes]:
    """Send one request to the server on a fresh connection; return its head and body."""
    lines = [
        line for line in head.split(b"\r\n") if line and not line.lower().startswith(b"connection:")
    ]
    request = b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body
    with socket.create_connection(("127.0.0.1", port)) as upstream:
        upstream.sendall(request)
        reader = upstream.makefile("rb")
        response_head = _read_head(reader) or b""
        response_body = reader.read()
    # The client keeps its connection: say how long the body is, not "close".
    kept = [
        line
        for line in response_head.split(b"\r\n")
        if line
        and not line.lower().startswith((b"connection:", b"content-length:", b"transfer-encoding:"))
    ]
    if response_body and b"chunked" in response_head.lower():
        response_body = _dechunk(response_body)
    kept.append(b"Content-Length: %d" % len(response_body))
    return b"\r\n".join([*kept, b"", b""]), response_body


def _dechunk(data: bytes) -> bytes:
    out, at = [], 0
    while at < len(data):
        end = data.index(b"\r\n", at)
        size = int(data[at:end].split(b";")[0], 16)
        if size == 0:
            break
        out.append(data[end + 2 : end + 2 + size])
        at = end + 2 + size + 2
    return b"".join(out)


def _error_response(kind: str) -> bytes:
    code, status, reason = {
        "503": ("SlowDown", "503 Slow Down", "Please reduce your request rate."),
        "500": ("InternalError", "500 Internal Server Error", "We encountered an internal error."),
        "403": ("AccessDenied", "403 Forbidden", "Access Denied"),
    }[kind]
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{reason}</Message></Error>"
    ).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@contextlib.contextmanager
def proxy(server: MotoServer, *faults: Fault) -> Iterator[FaultProxy]:
    p = FaultProxy(server.port, list(faults))
    try:
        yield p
    finally:
        p.close()
