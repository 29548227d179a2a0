"""Scenario 7: bad input. schemathesis against the running service's /openapi.json, and a hypothesis strategy
of malformed, oversized, unsigned, wrongly signed, replayed (stale) and wrong-source deliveries, at least
1,000 cases in all; then the door's abuse cases on raw sockets (slow bodies and headers, one client holding
connections, deep JSON, huge fields, a read-only token on ops actions, a resolved_by claiming to be the process). Never a 5xx (but a 503 with Retry-After, which only an absent Temporal may cause), nothing
started or changed (workflows in Temporal, ledger and journal rows, delivery and case registers counted before
and after), and no secret or token ever written to a log line of any part of the stack."""
import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.events import SOURCE_EVENTS
from starters.signatures import sign_headers
from tests.faults.driver import FAULT_TOKENS, FULL, connect, count_rows, ensure_up, record

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

EXAMPLES = {p.stem: json.loads(p.read_text())
            for p in sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))}
DELIVERY_CASES = 2000 if FULL else 900
SCHEMA_CASES = 40 if FULL else 15  # per operation
TABLES = ("movement_batches", "movements", "journal_entries", "journal_lines", "balances", "webhook_deliveries",
          "exception_cases")
WRONG_SECRET = "whsec_" + base64.b64encode(b"not-the-secret-at-all").decode()


class Seen:
    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.kinds: Counter = Counter()
        self.bad: list[str] = []

    def answer(self, kind: str, response: httpx.Response, expected: set[int] | None = None) -> None:
        code = response.status_code
        self.statuses[code] += 1
        self.kinds[kind] += 1
        if code >= 500 and not (code == 503 and response.headers.get("retry-after")):
            self.bad.append(f"{kind}: {code} {response.text[:300]}")
        elif expected is not None and code not in expected:
            self.bad.append(f"{kind}: {code} (expected one of {sorted(expected)}) {response.text[:300]}")


def wrong_source(event_type: str) -> str:
    return next(s for s, allowed in sorted(SOURCE_EVENTS.items()) if event_type not in {str(t) for t in allowed})


def right_source(event_type: str) -> str:
    return next(s for s, allowed in sorted(SOURCE_EVENTS.items()) if event_type in {str(t) for t in allowed})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, str], set[int]]:
    """(kind, source, body, headers, acceptable answers) of one bad delivery."""
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    example = EXAMPLES[name]
    source = right_source(example["type"])
    kind = draw(st.sampled_from(["malformed_bytes", "malformed_json", "malformed_event", "oversized", "unsigned",
                                 "wrongly_signed", "replayed", "wrong_source", "unknown_source"]))
    webhook_id = f"bad_{uuid.uuid4().hex}"
    body = json.dumps(example).encode()
    expected: set[int] = {401}
    secret = f"secret-of-{source}"  # replaced below by the real one (see the test)
    headers: dict[str, str] | None = None
    if kind == "malformed_bytes":
        body = draw(st.binary(max_size=300))
        expected = {400, 422}
    elif kind == "malformed_json":
        body = json.dumps(draw(json_values)).encode()
        expected = {400, 403, 422}
    elif kind == "malformed_event":
        broken = json.loads(body)
        how = draw(st.sampled_from(["data", "type", "drop_data", "timestamp", "field"]))
        if how == "data":
            broken["data"] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        elif how == "type":
            broken["type"] = draw(st.text(max_size=30).filter(lambda t: "." not in t))
        elif how == "drop_data":
            del broken["data"]
        elif how == "timestamp":  # letters only: "3.40" would be a valid Unix time
            broken["timestamp"] = draw(st.text(alphabet="xyz?! ", min_size=1, max_size=20))
        else:  # without the IDs that name its process
            broken["data"] = {k: v for k, v in broken["data"].items() if not k.endswith("_id")}
        body = json.dumps(broken).encode()
        expected = {400, 403, 422}
    elif kind == "oversized":
        body = b'{"type": "order.placed", "pad": "' + b"x" * draw(st.integers(270_000, 400_000)) + b'"}'
        expected = {413}
        if draw(st.booleans()):
            headers = {}
    elif kind == "unsigned":
        headers = draw(st.sampled_from([{}, {"webhook-id": webhook_id}, {"webhook-id": webhook_id,
                                                                          "webhook-timestamp": str(int(time.time()))}]))
    elif kind == "wrongly_signed":
        secret = WRONG_SECRET
        if draw(st.booleans()):  # or the right signature of another body
            headers = {"tamper": "1"}
    elif kind == "replayed":  # a delivery captured long ago, sent again
        headers = {"stale": str(draw(st.integers(6 * 60, 30 * 24 * 3600)))}
    elif kind == "wrong_source":
        source = wrong_source(example["type"])
        expected = {403}
    elif kind == "unknown_source":
        source = draw(st.sampled_from(["evil", "shopify2", "WEB", "web%20", "x" * 40]))
        expected = {404, 401}
    meta = {"webhook_id": webhook_id, "secret": secret}
    return kind, source, body, {**(headers if headers is not None else {}), **{f"__{k}": v for k, v in meta.items()}}, \
        expected | ({401} if headers == {} else set())


def signed(kind: str, source: str, body: bytes, spec: dict[str, str], secrets: dict) -> dict[str, str]:
    webhook_id, secret = spec.pop("__webhook_id"), spec.pop("__secret")
    if kind in {"unsigned"} or (kind == "oversized" and spec == {}):
        return {"content-type": "application/json", **spec}
    if secret.startswith("secret-of-"):
        real = secrets.get(source, WRONG_SECRET)
        secret = real if isinstance(real, str) else real[0]
    if spec.pop("tamper", None):
        headers = sign_headers(secret if secret != WRONG_SECRET else secrets["web"], webhook_id, body + b" ")
    elif "stale" in spec:
        headers = sign_headers(secret, webhook_id, body, timestamp=int(time.time()) - int(spec.pop("stale")))
    else:
        headers = sign_headers(secret, webhook_id, body)
    return {"content-type": "application/json", **headers}


async def counts(stack) -> dict[str, int]:
    client = await connect(stack)
    # Processes and cases, one per workflow ID: a run continued as new (an exception case escalating on its clock)
    # and the scheduled reconciliation are started by time, not by input.
    found = {"workflows": (await client.count_workflows(
        "ExecutionStatus != 'ContinuedAsNew' AND WorkflowType != 'Reconciliation'")).count}
    for table in TABLES:
        found[table] = await count_rows(stack, table)
    return found


def secrets_in_logs(stack) -> list[str]:
    """Every secret and token (and the key inside each secret, and the database password), looked for in every
    log file of the stack."""
    needles: dict[str, str] = {f"api token {n}": t.token.get_secret_value()
                               for n, t in stack.settings.api_tokens.items()}
    if stack._embedded is not None and stack._embedded.password:
        needles["database password"] = stack._embedded.password
    for source, value in stack.settings.webhook_secrets.items():
        for secret in [value] if isinstance(value, str) else value:
            needles[f"{source} secret"] = secret
            inner = secret.removeprefix("whsec_")
            needles[f"{source} secret (base64 key)"] = inner
            try:
                needles[f"{source} secret (key)"] = base64.b64decode(inner).decode()
            except Exception:  # noqa: BLE001, S110 - not base64: the secret itself is the key
                pass
    files = [*(stack.data_dir / "logs").glob("*.log"), stack.data_dir / "postgres" / "server.log"]
    leaks = []
    for path in files:
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            for what, needle in needles.items():
                if needle and needle in line:
                    leaks.append(f"{path.name}:{n} contains the {what}")
    return leaks


# --- the door's abuse cases (docs/faults.md has the table of what each is answered) ----------------------------
class Raw:
    """What a raw-socket exchange got: the status line's code, and how long until the server closed."""

    def __init__(self, status: int, seconds: float, body: bytes) -> None:
        self.status_code, self.seconds, self.body = status, seconds, body
        self.headers = {"retry-after": "x"} if b"retry-after" in body.lower() else {}
        self.text = body[:300].decode(errors="replace")


async def raw_exchange(url: str, data: bytes, wait: float = 20.0) -> Raw:
    host, port = httpx.URL(url).host, httpx.URL(url).port
    reader, writer = await asyncio.open_connection(host, port)
    begun = time.monotonic()
    writer.write(data)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), wait)
    writer.close()
    status = int(received.split(b" ", 2)[1]) if received.startswith(b"HTTP/1.1 ") else 0
    return Raw(status, time.monotonic() - begun, received)


async def abuse(stack, seen: Seen, secrets: dict) -> None:
    url = stack.api_url
    body_timeout = stack.settings.http_body_timeout.total_seconds()
    reader = FAULT_TOKENS["faults-reader"]["token"]
    ops = FAULT_TOKENS["faults-ops"]["token"]
    head = b"POST /webhooks/web HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    slow = await asyncio.gather(*(raw_exchange(url, head + b"{") for _ in range(20)))  # 20 slow senders at once
    for answer in slow:
        seen.answer("abuse slow body", answer, {408})
        if answer.seconds > body_timeout + 5:
            seen.bad.append(f"abuse slow body: held {answer.seconds:.1f}s")
    seen.answer("abuse slow headers", await raw_exchange(url, b"POST /webhooks/web HTTP/1.1\r\nhost: x\r\n"), {408})
    # one client holding more connections than its share: the one over it is refused, the service stays up
    limit = stack.settings.http_max_connections_per_client
    held = [await asyncio.open_connection(httpx.URL(url).host, httpx.URL(url).port) for _ in range(limit)]
    try:
        await asyncio.sleep(0.2)
        seen.answer("abuse connections per client",
                    await raw_exchange(url, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"), {429})
    finally:
        for _, writer in held:
            writer.close()
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        seen.answer("abuse service still up", await http.get("/healthz"), {200})
        secret = secrets["web"] if isinstance(secrets["web"], str) else secrets["web"][0]
        for depth in (40, 5_000, 50_000):
            deep = b"[" * depth + b"]" * depth
            headers = {**sign_headers(secret, f"bad_deep_{uuid.uuid4().hex}", deep), "content-type": "application/json"}
            seen.answer("abuse deep json", await http.post("/webhooks/web", content=deep, headers=headers), {400})
        huge = dict(EXAMPLES["order_placed"])
        huge["data"] = {**huge["data"], "order_id": "O" * 200_000}
        body = json.dumps(huge).encode()
        headers = {**sign_headers(secret, f"bad_huge_{uuid.uuid4().hex}", body), "content-type": "application/json"}
        seen.answer("abuse huge field", await http.post("/webhooks/web", content=body, headers=headers), {422})
        case = "exception:order:web:NO-SUCH:pick_overdue"
        seen.answer("abuse huge note", await http.post(f"/exceptions/{case}/resolve", json={"note": "n" * 2_000_000},
                                                       headers={"authorization": f"Bearer {ops}"}), {413})
        seen.answer("abuse long note", await http.post(f"/exceptions/{case}/resolve", json={"note": "n" * 2_001},
                                                       headers={"authorization": f"Bearer {ops}"}), {422})
        seen.answer("abuse read token resolves", await http.post(
            f"/exceptions/{case}/resolve", json={"note": "x", "resolved_by": "process"},
            headers={"authorization": f"Bearer {reader}"}), {403})
        seen.answer("abuse resolved_by process", await http.post(
            f"/exceptions/{case}/resolve", json={"note": "x", "resolved_by": "process"},
            headers={"authorization": f"Bearer {ops}"}), {404})  # no such case; the name would be faults-ops
        seen.answer("abuse page too big", await http.get("/items", params={"limit": 100_000},
                                                         headers={"authorization": f"Bearer {reader}"}), {422})
        seen.answer("abuse forged cursor", await http.get("/exceptions", params={"cursor": "e30"},
                                                          headers={"authorization": f"Bearer {reader}"}), {422})


async def test_bad_input_changes_nothing_answers_no_5xx_and_leaks_no_secret(stack):
    await ensure_up(stack)
    before = await counts(stack)
    seen = Seen()
    url, token = stack.api_url, stack.api_token
    secrets = dict(stack.settings.webhook_secrets)

    def hypothesis_deliveries() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            @given(delivery=deliveries())
            @settings(max_examples=DELIVERY_CASES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def send(delivery) -> None:
                kind, source, body, spec, expected = delivery
                headers = signed(kind, source, body, dict(spec), secrets)
                seen.answer(kind, http.post(f"/webhooks/{source}", content=body, headers=headers), expected)

            send()

    def schemathesis_cases() -> None:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=SCHEMA_CASES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case) -> None:
                seen.answer(f"schemathesis {case.method} {case.operation.path}",
                            case.call(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30))

            run()

    begun = time.monotonic()
    await asyncio.to_thread(hypothesis_deliveries)
    await asyncio.to_thread(schemathesis_cases)
    await abuse(stack, seen, secrets)
    seconds = time.monotonic() - begun
    await asyncio.sleep(2)  # anything a bad delivery had started would now be visible
    after = await counts(stack)
    leaks = secrets_in_logs(stack)
    total = sum(seen.statuses.values())
    row = {"scenario": "7 bad input (schemathesis + hypothesis deliveries)", "scale": "full" if FULL else "ci",
           "cases": total, "statuses": dict(sorted(seen.statuses.items())), "kinds": dict(seen.kinds),
           "bad_answers": seen.bad[:20], "counts_before": before, "counts_after": after, "leaks": leaks,
           "seconds": round(seconds, 1),
           "ok": total >= 1000 and not seen.bad and before == after and not leaks}
    record(row)
    print(json.dumps(row, indent=2))
    assert total >= 1000, total
    assert not seen.bad, seen.bad[:20]
    assert after == before, (before, after)
    assert not leaks, leaks
