"""SnsSignatureVerifier: envelopes signed here as SNS signs them (RSA PKCS#1 v1.5, SHA1 for
SignatureVersion 1 and SHA256 for 2) with a test key and a self-signed certificate.

Most tests pin the certificate (``trusted_certificates``), as an air-gapped user would. The fetch
path runs over real HTTPS on 127.0.0.1: a small aiohttp server with a certificate from a test CA.
Only https URLs on SNS's own hosts pass the production rule, so those tests replace the verifier's
private URL rule (``_cert_url_rule``) with one for the loopback server, and its TLS context
(``_ssl``) with one that trusts the test CA; the production rule itself is tested in
tests/library/core/test_sns_signature.py, and here, that a refused URL is never fetched.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aiosagemaker._core._sns import Rejection, SnsVerificationError
from aiosagemaker._exceptions import NotificationError
from aiosagemaker._watchers._sns import MAX_CERTIFICATE_BYTES, SnsSignatureVerifier

TOPIC = "arn:aws:sns:us-east-1:123456789012:endpoint-success"
ERROR_TOPIC = "arn:aws:sns:us-east-1:123456789012:endpoint-error"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
NOW = dt.datetime.now(dt.UTC)

# --- keys and certificates -------------------------------------------------------------------


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def certificate(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    name: str = "sns.amazonaws.com",
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=30),
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    """A certificate for ``key``: self-signed, or issued by ``issuer`` (certificate, key)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    assert isinstance(signing_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return builder.sign(signing_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


SNS_KEY = rsa_key()
SNS_CERT = pem(certificate(SNS_KEY))
OTHER_KEY = rsa_key()

# --- signing as SNS does ---------------------------------------------------------------------

# Written here from the AWS page, apart from the library's own string_to_sign, so that the two
# check each other: https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
_SIGNED = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token"]
    + ["TopicArn", "Type"],
}


def sign(envelope: dict[str, Any], key: rsa.RSAPrivateKey = SNS_KEY) -> dict[str, Any]:
    """``envelope`` with the ``Signature`` SNS would give it (per its ``SignatureVersion``)."""
    text = "".join(
        f"{name}\n{envelope[name]}\n" for name in _SIGNED[envelope["Type"]] if name in envelope
    )
    digest = {"1": hashes.SHA1(), "2": hashes.SHA256()}[envelope["SignatureVersion"]]
    signature = key.sign(text.encode(), padding.PKCS1v15(), digest)
    return {**envelope, "Signature": base64.b64encode(signature).decode()}


def envelope(version: str = "2", **fields: Any) -> dict[str, Any]:
    """A signed Notification envelope carrying a SageMaker success notification."""
    message = {
        "invocationStatus": "Completed",
        "inferenceId": "11111111-2222-3333-4444-555555555555",
        "responseParameters": {"outputLocation": "s3://bucket/out/1.out"},
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    unsigned = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps(message),
        "Timestamp": "2026-05-02T00:54:06.655Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&S=x",
        **fields,
    }
    return sign(unsigned)


def pinned(**kwargs: Any) -> SnsSignatureVerifier:
    kwargs.setdefault("topic_arns", [TOPIC, ERROR_TOPIC])
    kwargs.setdefault("trusted_certificates", {CERT_URL: SNS_CERT})
    return SnsSignatureVerifier(**kwargs)


async def refused(
    verifier: SnsSignatureVerifier, envelope: dict[str, Any], reason: Rejection
) -> SnsVerificationError:
    with pytest.raises(SnsVerificationError) as caught:
        await verifier.verify(envelope)
    assert caught.value.reason is reason, caught.value
    assert isinstance(caught.value, NotificationError)
    assert "s3://bucket/out/1.out" not in str(caught.value)  # never the message's content
    return caught.value


VERSIONS = pytest.mark.parametrize("version", ["1", "2"])

# --- verifying -------------------------------------------------------------------------------


@VERSIONS
async def test_signed_envelopes_verify(version: str) -> None:
    async with pinned() as verifier:
        await verifier.verify(envelope(version))
        await verifier.verify(envelope(version, Subject="Amazon SageMaker result"))
        await verifier.verify(envelope(version, TopicArn=ERROR_TOPIC))
        # Through JSON (orjson, as the SQS watcher decodes): escapes come back as characters.
        await verifier.verify(orjson.loads(orjson.dumps(envelope(version, Message="é\n☃"))))
        stats = verifier.statistics()
    assert (stats.verified, stats.refused, stats.certificate_fetches) == (4, 0, 0)
    assert stats.pinned_certificates == 1
    assert verifier._session is None  # pinned: nothing fetched, no session opened


async def test_subscription_confirmations_verify() -> None:
    confirmation = sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a98866",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic.\nTo confirm, visit the URL.",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2026-05-02T00:54:06.655Z",
            "SignatureVersion": "1",
            "SigningCertURL": CERT_URL,
        }
    )
    verifier = pinned()
    await verifier.verify(confirmation)
    await refused(verifier, {**confirmation, "Token": "other"}, Rejection.SIGNATURE)


@VERSIONS
@pytest.mark.parametrize(
    "change",
    [
        {"Message": '{"invocationStatus": "Completed", "inferenceId": "forged"}'},
        {"Message": envelope()["Message"] + " "},
        {"TopicArn": ERROR_TOPIC},  # another trusted topic: only the signature tells
        {"Subject": "added"},
        {"MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf325"},
        {"Timestamp": "2026-05-02T00:54:06.656Z"},
    ],
    ids=lambda change: next(iter(change)),
)
async def test_altered_envelopes_fail(version: str, change: dict[str, str]) -> None:
    await refused(pinned(), {**envelope(version), **change}, Rejection.SIGNATURE)


@VERSIONS
async def test_a_changed_or_removed_subject_fails(version: str) -> None:
    signed = envelope(version, Subject="Result")
    verifier = pinned()
    await verifier.verify(signed)
    await refused(verifier, {**signed, "Subject": "Other"}, Rejection.SIGNATURE)
    await refused(
        verifier, {k: v for k, v in signed.items() if k != "Subject"}, Rejection.SIGNATURE
    )
    await refused(verifier, {**signed, "Subject": None}, Rejection.SIGNATURE)


async def test_a_signature_version_changed_fails() -> None:
    # A SHA256 signature claimed as SHA1 (a downgrade) and the reverse.
    verifier = pinned()
    await refused(verifier, {**envelope("2"), "SignatureVersion": "1"}, Rejection.SIGNATURE)
    await refused(verifier, {**envelope("1"), "SignatureVersion": "2"}, Rejection.SIGNATURE)


async def test_a_signature_by_another_key_fails() -> None:
    forged = sign({k: v for k, v in envelope().items() if k != "Signature"}, key=OTHER_KEY)
    await refused(pinned(), forged, Rejection.SIGNATURE)


async def test_signature_version_3_is_refused() -> None:
    # Signed as version 2 and relabelled: a version this code does not know is never tried.
    async with SnsSignatureVerifier(topic_arns=[TOPIC]) as verifier:
        error = await refused(
            verifier, {**envelope("2"), "SignatureVersion": "3"}, Rejection.VERSION
        )
        assert verifier.statistics().certificate_fetches == 0
    assert not error.transient


async def test_an_unknown_topic_is_refused_before_any_fetch() -> None:
    other = "arn:aws:sns:us-east-1:123456789012:someone-elses-topic"
    async with SnsSignatureVerifier(topic_arns=[TOPIC]) as verifier:
        await refused(verifier, envelope(TopicArn=other), Rejection.TOPIC)
        assert verifier.statistics().certificate_fetches == 0
    # Without topic_arns every topic is trusted, as long as SNS signed for it.
    await pinned(topic_arns=None).verify(envelope(TopicArn=other))


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:443/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.txt",
        "https://sns.us-east-1.amazonaws.com/x.pem?redirect=evil",
        "https://54.239.28.85/x.pem",
        "https://127.0.0.1/x.pem",
        "https://sns.eu-west-1.amazonaws.com/x.pem",  # not the topic's region
    ],
)
async def test_foreign_certificate_urls_are_refused_without_a_fetch(url: str) -> None:
    async with SnsSignatureVerifier(topic_arns=[TOPIC]) as verifier:

        async def no_fetch(url: str) -> Any:
            raise AssertionError(f"fetched {url}")

        verifier._fetch = no_fetch  # type: ignore[method-assign]
        await refused(verifier, envelope(SigningCertURL=url), Rejection.CERTIFICATE_URL)
        assert verifier.statistics().certificate_fetches == 0
        assert verifier._session is None


async def test_an_expired_certificate_is_refused() -> None:
    expired = certificate(
        SNS_KEY, not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1)
    )
    verifier = pinned(trusted_certificates={CERT_URL: pem(expired)})
    error = await refused(verifier, envelope(), Rejection.CERTIFICATE)
    assert not error.transient


async def test_a_certificate_not_yet_valid_is_refused() -> None:
    early = certificate(
        SNS_KEY, not_before=NOW + dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=30)
    )
    await refused(
        pinned(trusted_certificates={CERT_URL: pem(early)}), envelope(), Rejection.CERTIFICATE
    )


async def test_without_fetching_only_pinned_certificates_are_used() -> None:
    other_url = CERT_URL.replace("0123456789abcdef", "fedcba9876543210")
    verifier = pinned(fetch_certificates=False)
    await verifier.verify(envelope())
    await refused(verifier, envelope(SigningCertURL=other_url), Rejection.CERTIFICATE_URL)
    assert verifier.statistics().certificate_fetches == 0


def test_statistics_and_repr() -> None:
    verifier = pinned()
    assert repr(verifier) == (
        "<SnsSignatureVerifier [verified 0, refused 0 | topics 2, certificates 0 cached, 1 pinned]>"
    )
    assert "topics any" in repr(SnsSignatureVerifier())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topic_arns": []}, "empty"),
        ({"topic_arns": TOPIC}, "not one string"),
        ({"topic_arns": ["arn:aws:sqs:us-east-1:123456789012:q"]}, "not an SNS topic ARN"),
        ({"trusted_certificates": {"https://evil.example/x.pem": SNS_CERT}}, "not a URL SNS"),
        ({"trusted_certificates": {CERT_URL: b"not a certificate"}}, "not a PEM X.509"),
        (
            {"trusted_certificates": {CERT_URL: pem(certificate(rsa_key(1024)))}},
            "not RSA of 2048 bits",
        ),
        (
            {
                "trusted_certificates": {
                    CERT_URL: pem(certificate(ec.generate_private_key(ec.SECP256R1())))
                }
            },
            "not RSA",
        ),
        ({"fetch_timeout": 0}, "fetch_timeout"),
        ({"max_cached_certificates": 0}, "max_cached_certificates"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SnsSignatureVerifier(**kwargs)


# --- fetching over HTTPS on loopback ----------------------------------------------------------


@dataclass
class CertServer:
    """An HTTPS server on 127.0.0.1 serving ``routes`` (path to handler); ``hits`` counts GETs and
    ``arrivals`` receives each GET's path as it comes in. Handlers that hold their answer wait on
    ``release`` (set when the test ends)."""

    base: str
    client_tls: ssl.SSLContext
    routes: dict[str, Callable[[], Any]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    arrivals: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, body: bytes = SNS_CERT, **kwargs: Any) -> str:
        self.routes[path] = lambda: web.Response(body=body, **kwargs)
        return self.url(path)

    def serve_when_released(self, path: str, status: int = 200) -> str:
        async def held() -> web.Response:
            await self.release.wait()
            return web.Response(body=SNS_CERT, status=status)

        self.routes[path] = held
        return self.url(path)

    def verifier(self, **kwargs: Any) -> SnsSignatureVerifier:
        """A verifier whose URL rule admits this server and whose TLS trusts its CA (only)."""
        kwargs.setdefault("topic_arns", [TOPIC])
        verifier = SnsSignatureVerifier(**kwargs)

        def loopback_rule(url: str, topic_arn: str) -> None:
            if not (url.startswith(self.base + "/") and url.endswith(".pem")):
                raise SnsVerificationError(f"{url} is not ours", reason=Rejection.CERTIFICATE_URL)

        verifier._cert_url_rule = loopback_rule
        verifier._ssl = self.client_tls
        return verifier


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A test CA and a server certificate it issued for 127.0.0.1: cert chain, key, CA PEM."""
    ca_key, server_key = rsa_key(), rsa_key()
    ca = certificate(ca_key, name="aiosagemaker test CA", ca=True)
    server = certificate(server_key, name="127.0.0.1", issuer=(ca, ca_key), ip="127.0.0.1")
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(pem(server) + pem(ca))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, pem(ca)


@pytest.fixture
async def cert_server(tls_files: tuple[Path, Path, bytes]) -> AsyncIterator[CertServer]:
    cert_file, key_file, ca_pem = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = CertServer(
        base=f"https://127.0.0.1:{sock.getsockname()[1]}",
        client_tls=ssl.create_default_context(cadata=ca_pem.decode()),
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        server.hits[request.path] = server.hits.get(request.path, 0) + 1
        server.arrivals.put_nowait(request.path)
        route = server.routes.get(request.path)
        if route is None:
            return web.Response(status=404)
        response = route()
        if asyncio.iscoroutine(response):
            response = await response
        assert isinstance(response, web.StreamResponse)
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=server_tls).start()
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


async def test_a_certificate_is_fetched_once_and_cached(cert_server: CertServer) -> None:
    url = cert_server.serve("/SimpleNotificationService-1.pem")
    async with cert_server.verifier() as verifier:
        for version in ("1", "2", "2"):
            await verifier.verify(envelope(version, SigningCertURL=url))
        stats = verifier.statistics()
        assert verifier._session is not None
    assert verifier._session is None  # closed by async with
    assert cert_server.hits == {"/SimpleNotificationService-1.pem": 1}
    assert (stats.verified, stats.certificate_fetches, stats.cached_certificates) == (3, 1, 1)


async def test_concurrent_messages_share_one_fetch(cert_server: CertServer) -> None:
    url = cert_server.serve_when_released("/c.pem")
    async with cert_server.verifier() as verifier:
        tasks = [
            asyncio.create_task(verifier.verify(envelope(SigningCertURL=url))) for _ in range(20)
        ]
        assert await cert_server.arrivals.get() == "/c.pem"  # one fetch under way; all wait
        cert_server.release.set()
        await asyncio.gather(*tasks)
    assert cert_server.hits == {"/c.pem": 1}
    assert verifier.statistics().verified == 20


async def test_concurrent_messages_share_one_failure(cert_server: CertServer) -> None:
    url = cert_server.serve_when_released("/gone.pem", status=404)
    async with cert_server.verifier() as verifier:
        tasks = [
            asyncio.create_task(verifier.verify(envelope(SigningCertURL=url))) for _ in range(5)
        ]
        await cert_server.arrivals.get()
        cert_server.release.set()
        errors = await asyncio.gather(*tasks, return_exceptions=True)
    assert cert_server.hits == {"/gone.pem": 1}
    for error in errors:
        assert isinstance(error, SnsVerificationError)
        assert error.reason is Rejection.UNAVAILABLE
    assert len({id(error) for error in errors}) == 5  # each waiter has its own exception
    assert verifier.statistics().refused == 5


async def test_a_cancelled_fetcher_hands_over_to_a_waiter(cert_server: CertServer) -> None:
    url = cert_server.serve_when_released("/c.pem")
    async with cert_server.verifier() as verifier:
        first = asyncio.create_task(verifier.verify(envelope(SigningCertURL=url)))
        await cert_server.arrivals.get()  # the first is fetching
        second = asyncio.create_task(verifier.verify(envelope(SigningCertURL=url)))
        await asyncio.sleep(0)  # the second now waits on the first's fetch
        first.cancel()
        await cert_server.arrivals.get()  # ... and, the first cancelled, fetches it itself
        cert_server.release.set()
        await second
    assert first.cancelled()
    assert cert_server.hits == {"/c.pem": 2}
    assert verifier.statistics().verified == 1


async def test_trust_env_fetches_through_the_environments_proxy(
    cert_server: CertServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = cert_server.serve("/c.pem")
    with socket.socket() as closed:  # a port nothing listens on: the proxy is unreachable
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    async with cert_server.verifier() as verifier:  # trust_env=False: straight to the server
        await verifier.verify(envelope(SigningCertURL=url))
    async with cert_server.verifier(trust_env=True) as verifier:
        await refused(verifier, envelope(SigningCertURL=url), Rejection.UNAVAILABLE)
    assert cert_server.hits == {"/c.pem": 1}


async def test_the_fetch_verifies_tls(cert_server: CertServer) -> None:
    url = cert_server.serve("/c.pem")
    async with cert_server.verifier() as verifier:
        verifier._ssl = True  # the production default: the system's trust store, not the test CA
        error = await refused(verifier, envelope(SigningCertURL=url), Rejection.UNAVAILABLE)
    assert error.transient
    assert cert_server.hits == {}


async def test_a_failed_fetch_is_remembered_for_a_while(cert_server: CertServer) -> None:
    url = cert_server.url("/missing.pem")
    async with cert_server.verifier() as verifier:
        error = await refused(verifier, envelope(SigningCertURL=url), Rejection.UNAVAILABLE)
        assert "HTTP 404" in str(error) and error.transient
        await refused(verifier, envelope(SigningCertURL=url), Rejection.UNAVAILABLE)
        assert cert_server.hits == {"/missing.pem": 1}  # not asked again at once
        cert_server.serve("/missing.pem")
        verifier._retry_after = 0.0  # the pause is over
        await verifier.verify(envelope(SigningCertURL=url))
    assert cert_server.hits == {"/missing.pem": 2}


async def test_the_memory_of_failures_is_bounded(cert_server: CertServer) -> None:
    first, second = cert_server.url("/a.pem"), cert_server.url("/b.pem")
    async with cert_server.verifier(max_cached_certificates=1) as verifier:
        for url in (first, second, first):  # the second failure pushes the first out
            await refused(verifier, envelope(SigningCertURL=url), Rejection.UNAVAILABLE)
    assert cert_server.hits == {"/a.pem": 2, "/b.pem": 1}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n",
            Rejection.CERTIFICATE,
        ),
        (b"<html>hello</html>", Rejection.CERTIFICATE),
        (SNS_CERT + b"\n" * MAX_CERTIFICATE_BYTES, Rejection.CERTIFICATE),
    ],
    ids=["bad-pem", "html", "oversized"],
)
async def test_what_is_not_a_certificate_is_refused(
    cert_server: CertServer, body: bytes, reason: Rejection
) -> None:
    url = cert_server.serve("/c.pem", body=body)
    async with cert_server.verifier() as verifier:
        await refused(verifier, envelope(SigningCertURL=url), reason)


async def test_redirects_are_not_followed(cert_server: CertServer) -> None:
    cert_server.serve("/real.pem")
    cert_server.routes["/moved.pem"] = lambda: web.Response(
        status=302, headers={"Location": cert_server.url("/real.pem")}
    )
    async with cert_server.verifier() as verifier:
        error = await refused(
            verifier, envelope(SigningCertURL=cert_server.url("/moved.pem")), Rejection.UNAVAILABLE
        )
    assert "HTTP 302" in str(error)
    assert "/real.pem" not in cert_server.hits


async def test_a_slow_server_times_out(cert_server: CertServer) -> None:
    url = cert_server.serve_when_released("/slow.pem")
    async with cert_server.verifier(fetch_timeout=0.2) as verifier:
        error = await refused(verifier, envelope(SigningCertURL=url), Rejection.UNAVAILABLE)
    assert "TimeoutError" in str(error)


async def test_the_cache_is_bounded(cert_server: CertServer) -> None:
    urls = [cert_server.serve(f"/{name}.pem") for name in "abc"]
    async with cert_server.verifier(max_cached_certificates=2) as verifier:
        # a, b, then c pushes a out; c is cached; a again pushes b out.
        for url in [*urls, urls[2], urls[0]]:
            await verifier.verify(envelope(SigningCertURL=url))
        assert verifier.statistics().cached_certificates == 2
    assert cert_server.hits == {"/a.pem": 2, "/b.pem": 1, "/c.pem": 1}


async def test_after_closing_only_known_certificates_verify(cert_server: CertServer) -> None:
    url = cert_server.serve("/c.pem")
    other = cert_server.serve("/d.pem")
    verifier = cert_server.verifier()
    await verifier.verify(envelope(SigningCertURL=url))
    await verifier.aclose()
    await verifier.aclose()  # idempotent
    await verifier.verify(envelope(SigningCertURL=url))
    await refused(verifier, envelope(SigningCertURL=other), Rejection.UNAVAILABLE)
    assert cert_server.hits == {"/c.pem": 1}
