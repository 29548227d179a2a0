"""Standard Webhooks signatures: valid, invalid, missing, stale, rotated secrets, several signatures; and the
reference vector from the Standard Webhooks specification."""
import base64
import time
from datetime import timedelta

import pytest

from starters.signatures import SignatureError, shopify_sign, shopify_verify, sign, sign_headers, verify

pytestmark = pytest.mark.unit

OLD = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-0123456789abcdef").decode()
BODY = b'{"type":"order.cancelled","timestamp":"2026-11-23T10:00:00Z","data":{}}'


def test_the_standard_webhooks_reference_vector() -> None:
    # from the Standard Webhooks specification's examples
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    assert sign(secret, msg_id, ts, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = sign_headers(secret, msg_id, body, timestamp=ts)
    assert verify(headers, body, [secret], now=ts) == msg_id


def test_valid() -> None:
    headers = sign_headers(NEW, "msg_1", BODY)
    assert verify(headers, BODY, [NEW]) == "msg_1"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header(missing: str) -> None:
    headers = sign_headers(NEW, "msg_1", BODY)
    del headers[missing]
    with pytest.raises(SignatureError, match="missing"):
        verify(headers, BODY, [NEW])


def test_invalid() -> None:
    headers = sign_headers(NEW, "msg_1", BODY)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(headers, BODY + b" ", [NEW])  # body changed
    with pytest.raises(SignatureError, match="no signature matches"):
        verify({**headers, "webhook-id": "msg_2"}, BODY, [NEW])  # id changed
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(headers, BODY, [OLD])  # another secret
    for garbage in ("v1,", "v1,!!notbase64!!", "v2," + headers["webhook-signature"][3:], "nonsense", " "):
        with pytest.raises(SignatureError):
            verify({**headers, "webhook-signature": garbage}, BODY, [NEW])


def test_stale_and_future_timestamps() -> None:
    now = time.time()
    for offset in (-301, 301):
        headers = sign_headers(NEW, "msg_1", BODY, timestamp=int(now + offset))
        with pytest.raises(SignatureError, match="tolerance"):
            verify(headers, BODY, [NEW], now=now)
    inside = sign_headers(NEW, "msg_1", BODY, timestamp=int(now - 299))
    assert verify(inside, BODY, [NEW], now=now) == "msg_1"
    with pytest.raises(SignatureError, match="tolerance"):
        verify(inside, BODY, [NEW], now=now, tolerance=timedelta(seconds=60))
    with pytest.raises(SignatureError, match="Unix timestamp"):
        verify({**inside, "webhook-timestamp": "yesterday"}, BODY, [NEW], now=now)


def test_rotated_secret_both_accepted_while_both_are_active() -> None:
    by_old = sign_headers(OLD, "msg_1", BODY)
    by_new = sign_headers(NEW, "msg_2", BODY)
    assert verify(by_old, BODY, [NEW, OLD]) == "msg_1"
    assert verify(by_new, BODY, [NEW, OLD]) == "msg_2"
    with pytest.raises(SignatureError):  # once the old one is retired
        verify(by_old, BODY, [NEW])


def test_several_signatures_one_match_is_enough() -> None:
    headers = sign_headers([OLD, NEW], "msg_1", BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(headers, BODY, [NEW]) == "msg_1"
    assert verify(headers, BODY, [OLD]) == "msg_1"
    stranger = "whsec_" + base64.b64encode(b"stranger").decode()
    with pytest.raises(SignatureError):
        verify(headers, BODY, [stranger])


def test_no_or_broken_secret_never_matches() -> None:
    headers = sign_headers(NEW, "msg_1", BODY)
    with pytest.raises(SignatureError, match="no secret"):
        verify(headers, BODY, [])
    with pytest.raises(SignatureError, match="no secret"):
        verify(headers, BODY, ["whsec_***not base64***"])


def test_shopify_hmac() -> None:
    secret = "shpss_0123"
    header = shopify_sign(secret, BODY)
    shopify_verify(header, BODY, [secret])
    shopify_verify(header, BODY, ["retired", secret])
    for bad in (None, "", "!!", shopify_sign("other", BODY)):
        with pytest.raises(SignatureError):
            shopify_verify(bad, BODY, [secret])
