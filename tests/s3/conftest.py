"""A real S3-compatible server for the bucket-backup tests: SeaweedFS (Apache-2.0), built from
the Go module proxy by hack/seaweedfs.sh into a cache, run as `weed server -s3` on free
loopback ports with a temporary data directory.

Building SeaweedFS compiles a large dependency tree (docs/backup.md has the time), too long
for `make test`'s budget on a fresh machine: these tests run with `make test-s3`. A missing Go
toolchain or a failed build fails under CI=true, and skips elsewhere."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests import tools
from tests.services import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY, SECRET_KEY = "duckherd-test", "duckherd-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


def _weed() -> str:
    tools.go()  # fails under CI, skips elsewhere, when there is no toolchain
    built = subprocess.run(
        [str(REPO / "hack" / "seaweedfs.sh")], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        tools.missing_tool(f"hack/seaweedfs.sh could not build SeaweedFS: {built.stderr[-2000:]}")
    return built.stdout.strip().splitlines()[-1]


def _ready(server: S3Server, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the S3 gateway answers a signed request (the master, volume and filer come first)."""
    client = server.client()
    while True:
        try:
            client.list_buckets()  # type: ignore[attr-defined]
            return
        except Exception as error:
            if process.poll() is not None:
                raise RuntimeError(f"weed server exited ({process.returncode})") from error
            if time.monotonic() > deadline:
                raise TimeoutError(f"SeaweedFS S3 did not answer: {error}") from error
            time.sleep(0.5)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = _weed()
    root = tmp_path_factory.mktemp("seaweedfs")
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "duckherd",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = [free_port() for _ in range(8)]
    names = ["master", "master.port.grpc", "volume", "volume.port.grpc", "filer"]
    names += ["filer.port.grpc", "s3", "s3.port.grpc"]
    flags = [
        f"-{name}.port={port}" if "." not in name else f"-{name}={port}"
        for name, port in zip(names, ports, strict=True)
    ]
    command = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={root}",
        "-filer",
        "-s3",
        f"-s3.config={config}",
        "-s3.autoCreateBucket=false",  # as AWS: a missing bucket is an error
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=8",
        *flags,
    ]
    log = (root / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(endpoint=f"http://127.0.0.1:{ports[6]}")
    try:
        _ready(server, process, time.monotonic() + 120)
        yield server
    finally:
        stop_process(process, timeout=30)
        log.close()
