"""Completion callbacks without a worker: the SSRF rules, the signature, the record's map.

Every forbidden address is refused by the delivery attempt itself before any connection
is made (socket connects fail the test), and a property test drives the validator with
arbitrary URLs and DNS answers.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.callbacks import attempt as callback_delivery
from tasks.callbacks import callback
from tasks.callbacks.post import PostFailed, post
from tasks.callbacks.signing import sign, signature, verify
from tasks.callbacks.target import CallbackRefused, Target, check_form, vet
from tasks.ops.settings import Settings
from tests.test_templates import velocity  # noqa: F401  (Apache Velocity 1.7, when installed)

JOB_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
ITEM = {
    "job_id": {"S": JOB_ID},
    "status": {"S": "SUCCESS"},
    "task": {"S": "tasks.debug.add"},
    "result": {"S": "5"},
}
WORKER = Settings(
    target="aws", callback_secret="s3cret", callback_max_attempts=3, callback_backoff=0.01
)


class FakeBackend:
    """What callback_delivery.attempt uses of the result backend."""

    table = "jobs"

    def __init__(self, item: dict[str, Any]) -> None:
        self.item = item
        self.written: list[dict[str, Any]] = []
        self.records = self

    def read(self, job_id: str, *attrs: str) -> dict[str, Any]:
        return self.item

    def record_callback(self, job_id: str, callback: dict[str, Any]) -> bool:
        self.written.append(dict(callback))
        return True


@pytest.fixture
def no_connections(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a connection was attempted: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def resolver(*addresses: str):
    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


FORBIDDEN = [
    ("https://10.0.0.1/hook", False),
    ("https://172.16.0.1/hook", False),
    ("https://192.168.1.1/hook", False),
    ("https://169.254.169.254/latest/meta-data/", False),
    ("https://[fd00:ec2::254]/latest/meta-data/", False),
    ("https://127.0.0.1:8443/hook", False),
    ("http://127.0.0.1:8080/hook", False),
    ("https://0.0.0.0/hook", False),
    ("https://[::]/hook", True),
    ("https://[::1]/hook", False),
    ("https://100.64.0.1/hook", False),
    ("https://[::ffff:169.254.169.254]/hook", False),
    ("https://[64:ff9b::a9fe:a9fe]/hook", False),  # NAT64 form of 169.254.169.254
    ("https://[2002:a00:1::]/hook", False),  # 6to4 form of 10.0.0.1
    ("https://224.0.0.1/hook", False),
    ("https://240.0.0.1/hook", False),
    ("http://example.com/hook", False),  # http when not local
    ("http://10.0.0.1/hook", True),  # http to a non-loopback address, even locally
    ("https://user:pw@example.com/hook", False),
    ("https://example.com:0/hook", False),
    ("ftp://example.com/hook", False),
]


@pytest.mark.parametrize(("url", "local"), FORBIDDEN)
def test_each_forbidden_address_is_refused_before_any_connection(
    url, local, no_connections, monkeypatch
):
    monkeypatch.setattr(socket, "getaddrinfo", resolver("93.184.216.34"))
    backend = FakeBackend(ITEM)
    delay = callback_delivery.attempt(
        backend,
        JOB_ID,
        url,
        attempt=1,
        first_at=0,
        settings=replace(WORKER, target="local" if local else "aws"),
    )
    assert delay is None
    [written] = backend.written
    assert written["state"] == "refused" and written["attempts"] == 0
    assert written["last_error"] and "given_up_at" in written


def test_a_name_that_resolves_to_a_private_address_is_refused(no_connections, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolver("93.184.216.34", "10.1.2.3"))
    backend = FakeBackend(ITEM)
    callback_delivery.attempt(
        backend, JOB_ID, "https://hooks.example.com/x", attempt=1, first_at=0, settings=WORKER
    )
    assert backend.written[-1]["state"] == "refused"
    assert "10.1.2.3 is a private address" in backend.written[-1]["last_error"]


def test_without_a_secret_nothing_is_sent(no_connections, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", resolver("93.184.216.34"))
    backend = FakeBackend(ITEM)
    callback_delivery.attempt(
        backend,
        JOB_ID,
        "https://hooks.example.com/x",
        attempt=1,
        first_at=0,
        settings=replace(WORKER, callback_secret=None),
    )
    assert backend.written[-1]["state"] == "refused" and backend.written[-1]["attempts"] == 0
    assert "JOBS_CALLBACK_SECRET" in backend.written[-1]["last_error"]


def test_a_final_callback_is_not_attempted_again(no_connections):
    done = {**ITEM, "callback": {"M": {"state": {"S": "delivered"}}}}
    backend = FakeBackend(done)
    assert (
        callback_delivery.attempt(
            backend, JOB_ID, "https://8.8.8.8/", attempt=1, first_at=0, settings=WORKER
        )
        is None
    )
    assert backend.written == []


def test_allow_list_and_local_loopback():
    allow = ("10.20.0.0/16", "internal.example")
    assert vet("https://10.20.3.4/x", local=False, allow=allow).address == "10.20.3.4"
    target = vet(
        "https://internal.example/x?y=1", local=False, allow=allow, resolve=resolver("192.168.7.7")
    )
    assert (target.address, target.host, target.request_target) == (
        "192.168.7.7",
        "internal.example",
        "/x?y=1",
    )
    with pytest.raises(CallbackRefused):
        vet("https://10.21.0.1/x", local=False, allow=allow)
    with pytest.raises(CallbackRefused):
        vet("http://10.20.3.4/x", local=False, allow=allow)  # the allow-list is no http pass
    with pytest.raises(CallbackRefused):
        vet("https://0.0.0.0/x", local=False, allow=("0.0.0.0/0",))
    local = vet("http://127.0.0.1:8123/cb", local=True)
    assert (local.scheme, local.address, local.port, local.host_header) == (
        "http",
        "127.0.0.1",
        8123,
        "127.0.0.1:8123",
    )
    with pytest.raises(CallbackRefused):
        vet("http://localhost:8123/cb", local=True, resolve=resolver("127.0.0.1", "10.0.0.5"))


def test_a_name_that_does_not_resolve_is_worth_retrying():
    def fail(*args: Any, **kwargs: Any) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(CallbackRefused) as refused:
        vet("https://nowhere.example/x", local=False, resolve=fail)
    assert refused.value.retryable


def test_submitting_checks_the_form_at_once():
    assert callback("https://hooks.example.com/x") == {
        "callback_url": "https://hooks.example.com/x"
    }
    for bad in (
        "hooks.example.com/x",
        "https://u:p@hooks.example.com/",
        "https://h:0/",
        "https:///nohost",
        "https://exa mple.com/",
        42,
    ):
        with pytest.raises(ValueError):
            callback(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="https"):
        check_form("http://hooks.example.com/x", local=False)
    assert check_form("http://127.0.0.1:9/x", local=True)


def test_signature_is_hmac_sha256_over_timestamp_and_body():
    import hashlib
    import hmac

    body = b'{"job_id": "x", "status": "SUCCESS"}'
    header = signature("k", body, 1_700_000_000)
    assert (
        header
        == "t=1700000000,v1=" + hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    )
    assert verify("k", body, header, now=1_700_000_100)
    assert not verify("k", body + b" ", header, now=1_700_000_100)
    assert not verify("other", body, header, now=1_700_000_100)
    assert not verify("k", body, header, now=1_700_000_000 + 301)  # too old: replay
    assert not verify("k", body, "garbage")
    assert verify("k", body, sign("k", body))


def test_backoff_is_full_jitter_within_the_cap():
    settings_ = replace(WORKER, callback_backoff=2.0, callback_max_delay=300.0)
    for attempt in range(1, 12):
        delays = [callback_delivery.backoff(attempt, settings_) for _ in range(50)]
        assert all(0 <= d <= min(300.0, 2.0 * 2 ** (attempt - 1)) for d in delays)


def test_record_callback_never_touches_status_and_final_is_final(records):
    from tasks.results.encoding import s

    assert not records.record_callback(JOB_ID, {"state": "pending", "attempts": 1})  # no record
    records.transition(JOB_ID, "STARTED")
    assert not records.record_callback(JOB_ID, {"state": "pending", "attempts": 1})  # running
    records.transition(JOB_ID, "SUCCESS", result_text="5")
    assert records.record_callback(
        JOB_ID, {"state": "pending", "attempts": 1, "last_error": "the receiver answered 500"}
    )
    assert records.record_callback(
        JOB_ID, {"state": "delivered", "attempts": 2, "last_status": 200}
    )
    assert not records.record_callback(JOB_ID, {"state": "pending", "attempts": 3})
    item = records.client.get_item(TableName="jobs", Key={"job_id": s(JOB_ID)})["Item"]
    assert item["status"] == {"S": "SUCCESS"} and item["result"] == {"S": "5"}
    assert item["callback"]["M"] == {
        "state": {"S": "delivered"},
        "attempts": {"N": "2"},
        "last_status": {"N": "200"},
    }


# --- the connection: the vetted address, TLS checked against the URL's host --------------
@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS server on 127.0.0.1 whose certificate names `hooks.test` only."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    seen: dict[str, Any] = {}

    def sni(sock: ssl.SSLSocket, server_name: str | None, _: Any) -> None:
        seen["sni"] = server_name

    server_context.sni_callback = sni
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with server_context.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while b"\r\n\r\n" not in data:  # read it all, so closing sends no RST
                        data += tls.recv(65536)
                    head, rest = data.split(b"\r\n\r\n", 1)
                    length = int(
                        next(
                            (
                                line.split(b":")[1]
                                for line in head.split(b"\r\n")
                                if line.lower().startswith(b"content-length:")
                            ),
                            0,
                        )
                    )
                    while len(rest) < length:
                        rest += tls.recv(65536)
                    seen["request"] = data
                    tls.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(cert_path))
    yield port, client_context, seen
    listener.close()


def test_post_connects_to_the_vetted_address_with_the_urls_host_for_tls(tls_receiver):
    port, context, seen = tls_receiver
    target = Target("https", "hooks.test", port, "127.0.0.1", "/in?x=1")
    assert post(target, b"{}", {"X-Job-Id": JOB_ID}, context=context) == 204
    assert seen["sni"] == "hooks.test"
    head = seen["request"].split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("POST /in?x=1 HTTP/1.1")
    assert f"Host: hooks.test:{port}" in head.split("\r\n")
    wrong = Target("https", "other.test", port, "127.0.0.1", "/")
    with pytest.raises(PostFailed, match=r"certificate|hostname|CERTIFICATE"):
        post(wrong, b"{}", {}, context=context)


# --- the property: nothing but a refusal, never a forbidden address ------------------------
def _allowed_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    inner = ip.ipv4_mapped or ip.sixtofour if isinstance(ip, ipaddress.IPv6Address) else None
    return (
        ip.is_global
        and not ip.is_multicast
        and not ip.is_private
        and (inner is None or (inner.is_global and not inner.is_private))
    )


HOSTS = st.one_of(
    st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a)),
    st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9]{1,8}){0,3}", fullmatch=True),
    st.text(max_size=30),
)
URLS = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda scheme, user, host, port, path: f"{scheme}://{user}{host}{port}{path}",
        st.sampled_from(["https", "http", "HTTPS", "ftp", "", "javascript"]),
        st.sampled_from(["", "", "u@", "u:p@", "@"]),
        HOSTS,
        st.one_of(st.just(""), st.integers(-5, 70000).map(lambda p: f":{p}")),
        st.text(max_size=40),
    ),
)
ANSWERS = st.lists(st.ip_addresses().map(str), min_size=0, max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=URLS, answers=ANSWERS, local=st.booleans())
def test_validator_only_refuses_and_never_allows_a_forbidden_address(url, answers, local):
    try:
        target = vet(url, local=local, resolve=resolver(*answers))
    except CallbackRefused:
        return
    assert target.scheme in ("https", "http")
    address = ipaddress.ip_address(target.address)
    if local and address.is_loopback:
        return
    assert target.scheme == "https"
    assert _allowed_address(target.address), target
    # An address literal is never looked up (RFC 3986 host = IP-literal / IPv4address):
    # its only address is itself, whatever a resolver would have answered.
    try:
        literal = ipaddress.ip_address(target.host.strip("[]")) is not None
    except ValueError:
        literal = False
    resolved = [target.address] if literal or not answers else answers
    assert all(
        _allowed_address(a) for a in resolved if not (local and ipaddress.ip_address(a).is_loopback)
    ), answers


# --- GET /jobs/{id} shows the callback's state, never its URL; both engines agree ---------
CALLBACK_ITEMS = [
    {
        **ITEM,
        "callback": {
            "M": {
                "state": {"S": "pending"},
                "attempts": {"N": "2"},
                "host": {"S": "hooks.example.com"},
                "last_status": {"N": "503"},
                "last_error": {"S": "the receiver answered 503 'busy' \"x\""},
                "last_attempt_at": {"S": "2026-01-01T00:00:03.000Z"},
            }
        },
    },
    {
        **ITEM,
        "callback": {
            "M": {
                "state": {"S": "delivered"},
                "attempts": {"N": "1"},
                "last_status": {"N": "200"},
                "delivered_at": {"S": "2026-01-01T00:00:04.000Z"},
            }
        },
    },
    {
        **ITEM,
        "callback": {
            "M": {
                "state": {"S": "refused"},
                "attempts": {"N": "0"},
                "last_error": {"S": "10.0.0.1 is a private address"},
                "given_up_at": {"S": "2026-01-01T00:00:04.000Z"},
            }
        },
    },
]


def test_get_job_shows_the_callback_state(velocity):  # noqa: F811  (the fixture)
    import json

    from tasks.http_contract.mapping_templates import fill_template
    from tasks.http_contract.vtl import Params, render

    template = fill_template("get_job.response", exposed=[])
    for item in CALLBACK_ITEMS:
        body = json.dumps({"Item": item})
        ours = render(
            template, body=body, params=Params(path={"job_id": JOB_ID}), context={"requestId": "r"}
        ).text
        shown = json.loads(ours)["callback"]
        assert shown == {
            key: int(value["N"]) if "N" in value else value["S"]
            for key, value in item["callback"]["M"].items()
        }
        assert velocity(template, body, "r", job_id=JOB_ID) == ours
    sent = callback_delivery.record_body(JOB_ID, CALLBACK_ITEMS[0])
    assert "callback" not in json.loads(sent)  # the signed body leaves it out


@pytest.mark.parametrize(
    ("answer", "state", "again"),
    [
        (200, "delivered", False),
        (204, "delivered", False),
        (302, "pending", True),  # a redirect is not followed: a failed attempt
        (400, "failed", False),
        (401, "failed", False),
        (404, "failed", False),
        (408, "pending", True),
        (429, "pending", True),
        (500, "pending", True),
        (503, "pending", True),
        (PostFailed("TimeoutError: timed out"), "pending", True),
    ],
)
def test_what_each_answer_means(answer, state, again, monkeypatch):
    sent: list[tuple[Target, bytes, dict]] = []

    def fake_post(target: Target, body: bytes, headers: dict[str, str]) -> int:
        sent.append((target, body, headers))
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(callback_delivery, "post", fake_post)
    backend = FakeBackend(ITEM)
    delay = callback_delivery.attempt(
        backend, JOB_ID, "https://8.8.8.8/in", attempt=1, first_at=time.time(), settings=WORKER
    )
    assert (delay is not None) == again
    written = backend.written[-1]
    assert written["state"] == state and written["attempts"] == 1
    [(target, body, headers)] = sent
    assert target.address == "8.8.8.8" and headers["X-Job-Id"] == JOB_ID
    assert verify("s3cret", body, headers["X-Signature"])
    if state == "failed":
        assert "not retried" in written["last_error"] and "given_up_at" in written
    if answer == 302:
        assert "redirects are not followed" in written["last_error"]


def test_retries_end_at_the_attempt_limit_or_the_deadline(monkeypatch):
    monkeypatch.setattr(callback_delivery, "post", lambda *a: 500)
    backend = FakeBackend(ITEM)
    assert (
        callback_delivery.attempt(
            backend, JOB_ID, "https://8.8.8.8/", attempt=3, first_at=time.time(), settings=WORKER
        )
        is None
    )
    assert backend.written[-1]["state"] == "failed"
    assert backend.written[-1]["last_error"].startswith("gave up after 3 attempts")
    late = replace(WORKER, callback_max_attempts=10, callback_deadline=60)
    assert (
        callback_delivery.attempt(
            backend, JOB_ID, "https://8.8.8.8/", attempt=2, first_at=time.time() - 61, settings=late
        )
        is None
    )
    assert backend.written[-1]["state"] == "failed"


def test_only_a_worker_with_the_key_can_seal_a_delivery():
    from tasks.callbacks import seal_for, sealed

    url = "https://hooks.example.com/x"
    good = seal_for(WORKER, JOB_ID, url)
    assert good and sealed(WORKER, JOB_ID, url, good)
    assert not sealed(WORKER, JOB_ID, url, None)
    assert not sealed(WORKER, JOB_ID, url, "0" * 64)
    assert not sealed(WORKER, JOB_ID, "https://evil.example/x", good)  # another URL
    assert not sealed(WORKER, "another-job", url, good)
    assert not sealed(replace(WORKER, callback_secret="other"), JOB_ID, url, good)
