"""The S3 signer reproduces the signatures of AWS's published Signature Version 4 examples
(Amazon S3 API Reference, "Examples: Signature Calculations in AWS Signature Version 4")."""

import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from shared.storage import sign_v4

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EMPTY = hashlib.sha256(b"").hexdigest()
HOST = "https://examplebucket.s3.amazonaws.com"


def sign(
    method: str, url: str, headers: dict[str, str], payload: str, secret: str = EXAMPLE_SECRET
) -> dict[str, str]:
    """Signed with the examples' key, region and time (24 May 2013, midnight UTC)."""
    return sign_v4(
        method,
        httpx.URL(url),
        headers,
        payload,
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        secret_access_key=secret,
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("method", "url", "headers", "body", "signed_headers", "signature"),
    [
        (  # GET Object: the first 10 bytes of test.txt
            "GET",
            f"{HOST}/test.txt",
            {"Range": "bytes=0-9"},
            b"",
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
        (  # PUT Object: a key with a character that is percent-encoded once
            "PUT",
            f"{HOST}/test%24file.text",
            {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
            b"Welcome to Amazon S3.",
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        ),
        (  # GET Bucket Lifecycle: a query parameter without a value
            "GET",
            f"{HOST}/?lifecycle",
            {},
            b"",
            "host;x-amz-content-sha256;x-amz-date",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        (  # GET Bucket (List Objects): query parameters, sorted
            "GET",
            f"{HOST}/?max-keys=2&prefix=J",
            {},
            b"",
            "host;x-amz-content-sha256;x-amz-date",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
)
def test_signatures_match_aws_examples(
    method: str, url: str, headers: dict[str, str], body: bytes, signed_headers: str, signature: str
) -> None:
    payload = hashlib.sha256(body).hexdigest()
    added = sign(method, url, headers, payload)
    assert added["x-amz-date"] == "20130524T000000Z"
    assert added["x-amz-content-sha256"] == payload
    assert added["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )


def test_the_payload_and_the_secret_are_signed() -> None:
    url = f"{HOST}/test.txt"
    reference = sign("PUT", url, {}, EMPTY)["authorization"]
    other_body = sign("PUT", url, {}, hashlib.sha256(b"x").hexdigest())["authorization"]
    other_secret = sign("PUT", url, {}, EMPTY, secret="another secret")["authorization"]
    assert len({reference, other_body, other_secret}) == 3
    assert EXAMPLE_SECRET not in reference
