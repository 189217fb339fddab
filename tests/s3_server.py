"""An S3-compatible server on loopback (moto in server mode, its own process) and a proxy that can cut it off.

The runtime reaches them with the client code users run (fsspec/s3fs over HTTP); nothing is mocked.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the S3 server did not listen on port {port} within {timeout} s")


@contextmanager
def moto_server() -> Iterator[str]:
    """Start `moto.server` on a free loopback port; yields its endpoint URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def s3_client(endpoint: str) -> Any:  # a botocore client; its methods are generated at run time
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION)


def new_bucket(endpoint: str) -> str:
    name = f"ftc-test-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def list_keys(endpoint: str, bucket: str, prefix: str = "") -> dict[str, int]:
    """Every key under `prefix` with its size, straight from the server."""
    client = s3_client(endpoint)
    keys: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
    return keys


class CuttableProxy:
    """A TCP proxy on loopback in front of `target_port`; `cut()` makes the store unreachable until `restore()`.

    While cut, every open connection is closed and new ones are closed as soon as they are accepted,
    as when the network path to the store fails. The listening socket stays open so that no other
    process can take the port in the meantime.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._cut = False
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            connections, self._connections = self._connections, []
        for connection in connections:
            # shutdown, not only close: it wakes the thread blocked in recv() on it and ends the TCP
            # connection for the peer at once.
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # the pipe thread has closed it already
                continue
            finally:
                connection.close()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            with self._lock:
                cut = self._cut
            if cut:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError as error:  # the other side, or cut(), closed the connection: end this direction
            closed = error
        else:
            closed = None
        source.close()
        sink.close()
        del closed
