"""An S3-compatible object store for tests and benches: moto's server on 127.0.0.1 with a bucket `kiwi`."""

from __future__ import annotations

import socket


def start_moto(key: str = "test") -> tuple[object, str]:
    """(the running server, its endpoint URL); `server.stop()` when done."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=key,
                 region_name="us-east-1").create_bucket(Bucket="kiwi")
    return server, endpoint


def storage_options(endpoint: str, key: str = "test") -> dict[str, str]:
    return {"aws_endpoint": endpoint, "aws_access_key_id": key, "aws_secret_access_key": key,
            "aws_region": "us-east-1", "allow_http": "true"}
