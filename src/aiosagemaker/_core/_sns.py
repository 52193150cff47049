"""SNS message signatures, the sans-IO half: the envelope's shape, the string to sign, and which
signing-certificate URLs are AWS's. No I/O, standard library only; the public-key check itself is
in :mod:`aiosagemaker._watchers._sns`, which fetches the certificate.

When an SQS queue is subscribed to a topic without raw message delivery, each message body is the
SNS envelope, signed by SNS. Verifying that signature is what lets a watcher trust a notification
that anyone with ``sqs:SendMessage`` on the queue could otherwise forge. The rules, from "Verifying
the signatures of Amazon SNS messages"
(https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):

* **The string to sign** is, for each signed field in byte order, the field's name, a newline, its
  value and a newline. A ``Notification`` signs ``Message``, ``MessageId``, ``Subject`` (only when
  the envelope has one), ``Timestamp``, ``TopicArn`` and ``Type``; a ``SubscriptionConfirmation``
  or ``UnsubscribeConfirmation`` signs ``Message``, ``MessageId``, ``SubscribeURL``,
  ``Timestamp``, ``Token``, ``TopicArn`` and ``Type``. The values are the decoded JSON strings
  (escapes such as ``\\n`` turned back into their characters), encoded as UTF-8.
* **SignatureVersion** ``"1"`` is RSA PKCS#1 v1.5 over SHA1, ``"2"`` the same over SHA256
  (a topic's ``SignatureVersion`` attribute chooses). Anything else is refused: a version this
  code does not know is not one it can vouch for.
* **SigningCertURL** must be fetched over HTTPS from SNS itself. "Reject any message with an
  unexpected TopicArn" (same page): the verifier is configured with the topics it trusts.

What this module accepts as a certificate URL (:func:`check_signing_cert_url`) is narrower than
"some AWS host": exactly ``https://sns.<region>.<dns suffix>/<name>.pem`` where ``<region>`` is
the region of the envelope's own ``TopicArn`` and ``<dns suffix>`` its partition's (SNS signs in
the topic's region and serves the certificate from that region's endpoint; the AWS SDK for Java
v2's ``SnsMessageManager`` likewise requires the regional endpoint's host). The partitions and
their DNS suffixes and region patterns are botocore's (``botocore/data/partitions.json``):

========== ================== ==================================================
partition  DNS suffix         certificate host, e.g.
========== ================== ==================================================
aws        amazonaws.com      sns.us-east-1.amazonaws.com
aws-cn     amazonaws.com.cn   sns.cn-north-1.amazonaws.com.cn
aws-us-gov amazonaws.com      sns.us-gov-west-1.amazonaws.com
aws-iso    c2s.ic.gov         sns.us-iso-east-1.c2s.ic.gov
aws-iso-b  sc2s.sgov.gov      sns.us-isob-east-1.sc2s.sgov.gov
aws-iso-e  cloud.adc-e.uk     sns.eu-isoe-west-1.cloud.adc-e.uk
aws-iso-f  csp.hci.ic.gov     sns.us-isof-east-1.csp.hci.ic.gov
aws-eusc   amazonaws.eu       sns.eusc-de-east-1.amazonaws.eu
========== ================== ==================================================

The URL is matched as a string, never parsed leniently: the scheme ``https`` in lower case, the
host exactly as above (so no user info, no port, no trailing dot, no IP address, no look-alike
such as ``sns.us-east-1.amazonaws.com.evil.example``), then one path segment of letters, digits,
``_``, ``-`` and ``.`` ending in ``.pem``, and nothing after it (no query, no fragment, no
percent-escapes, no white space).

Refusals raise :class:`SnsVerificationError` (a :class:`NotificationError`) whose ``reason`` says
which rule failed. Error messages name fields, types, the topic and the certificate URL, never the
message's content.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import NotificationError

__all__ = [
    "ENVELOPE_TYPES",
    "SIGNATURE_VERSIONS",
    "Rejection",
    "SignedEnvelope",
    "SnsVerificationError",
    "check_signing_cert_url",
    "check_topic_arn",
    "is_signing_cert_url",
    "read_envelope",
    "signing_cert_host",
    "string_to_sign",
]


class Rejection(enum.Enum):
    """Why an SNS envelope was not trusted."""

    #: a field missing or of the wrong type, an unknown ``Type``, a signature that is not base64
    MALFORMED = "malformed"
    #: a ``SignatureVersion`` other than ``"1"`` and ``"2"``
    VERSION = "version"
    #: a ``TopicArn`` that is not one of the configured topics
    TOPIC = "topic"
    #: a ``SigningCertURL`` that is not SNS's, for the topic's region (or not a pinned one)
    CERTIFICATE_URL = "certificate-url"
    #: the certificate is not an X.509 certificate with an RSA key, or is outside its validity
    CERTIFICATE = "certificate"
    #: the certificate could not be fetched (network, HTTP status, verifier closed); may pass later
    UNAVAILABLE = "unavailable"
    #: the signature does not match the envelope: altered, or not signed by SNS
    SIGNATURE = "signature"


class SnsVerificationError(NotificationError):
    """An SNS envelope whose signature could not be verified: its message is not to be trusted.

    ``reason`` (a :class:`Rejection`) says which check failed; ``transient`` is true only when the
    signing certificate could not be fetched, so the same message may verify later.
    """

    def __init__(self, message: str, *, reason: Rejection) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def transient(self) -> bool:
        return self.reason is Rejection.UNAVAILABLE

    def __str__(self) -> str:
        return f"untrusted SNS message ({self.reason.value}): {self.message}"


#: SignatureVersion to the hash signed with RSA PKCS#1 v1.5 (names as in :mod:`hashlib`).
SIGNATURE_VERSIONS: Mapping[str, str] = {"1": "sha1", "2": "sha256"}

# The signed fields of each envelope Type, in byte order (a test checks that they are sorted).
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
#: envelope Type to the fields its signature covers, in the order they are signed.
ENVELOPE_TYPES: Mapping[str, tuple[str, ...]] = {
    "Notification": _NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
# Signed only when present ("Subject (if included in the message)"). A JSON null counts as absent:
# a null was never a string SNS could have signed, and dropping it changes no signed byte.
_OPTIONAL_FIELDS = frozenset({"Subject"})
# Fields that are one line by construction. A newline in one of them could only serve to shift
# the boundaries of the string to sign, so it is refused outright.
_SINGLE_LINE_FIELDS = frozenset({"MessageId", "Timestamp", "SubscribeURL", "Token", "TopicArn"})

# An RSA signature is as long as the key's modulus: 512 bytes for the largest key SNS could
# plausibly use (4096 bits), 256 for the 2048-bit keys it uses today. Anything longer is not a
# signature, and is refused before it is decoded.
_MAX_SIGNATURE_BASE64 = 1400
_MAX_CERT_URL = 512


@dataclass(frozen=True, slots=True)
class _Partition:
    dns_suffix: str
    regions: re.Pattern[str]


# botocore/data/partitions.json: each partition's DNS suffix and region pattern. ``[a-z]+`` stands
# for botocore's ``\w+`` (which would also admit digits, ``_`` and, in Python, non-ASCII letters).
_PARTITIONS: Mapping[str, _Partition] = {
    "aws": _Partition(
        "amazonaws.com", re.compile(r"(?:us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-[0-9]+", re.ASCII)
    ),
    "aws-cn": _Partition("amazonaws.com.cn", re.compile(r"cn-[a-z]+-[0-9]+", re.ASCII)),
    "aws-us-gov": _Partition("amazonaws.com", re.compile(r"us-gov-[a-z]+-[0-9]+", re.ASCII)),
    "aws-iso": _Partition("c2s.ic.gov", re.compile(r"us-iso-[a-z]+-[0-9]+", re.ASCII)),
    "aws-iso-b": _Partition("sc2s.sgov.gov", re.compile(r"us-isob-[a-z]+-[0-9]+", re.ASCII)),
    "aws-iso-e": _Partition("cloud.adc-e.uk", re.compile(r"eu-isoe-[a-z]+-[0-9]+", re.ASCII)),
    "aws-iso-f": _Partition("csp.hci.ic.gov", re.compile(r"us-isof-[a-z]+-[0-9]+", re.ASCII)),
    "aws-eusc": _Partition("amazonaws.eu", re.compile(r"eusc-de-[a-z]+-[0-9]+", re.ASCII)),
}

# arn:<partition>:sns:<region>:<12-digit account>:<topic>; topic names are 1-256 ASCII letters,
# digits, "_" and "-", FIFO topics ending in ".fifo"
# (https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html).
_TOPIC_ARN = re.compile(
    r"arn:(?P<partition>[a-z-]+):sns:(?P<region>[a-z0-9-]+):[0-9]{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?",
    re.ASCII,
)
# The one path segment of a certificate URL: SNS's are /SimpleNotificationService-<hex>.pem.
_CERT_PATH = re.compile(r"/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,200}\.pem", re.ASCII)
_HTTPS = "https://"


@dataclass(frozen=True, slots=True)
class SignedEnvelope:
    """An SNS envelope whose shape, topic and certificate URL passed: what to check its signature
    with. (The message itself is not copied here: the caller holds the envelope.)"""

    type: str
    topic_arn: str
    message_id: str
    signature_version: str
    #: the hash SNS signed with, ``"sha1"`` or ``"sha256"``
    hash_name: str
    signing_cert_url: str
    signature: bytes = field(repr=False)
    string_to_sign: bytes = field(repr=False)


def read_envelope(
    envelope: Mapping[str, Any],
    *,
    topic_arns: Collection[str] | None = None,
    cert_url_rule: Callable[[str, str], None] | None = None,
) -> SignedEnvelope:
    """Check an SNS envelope's shape, version, topic and certificate URL; build its string to sign.

    .. code-block:: python

        signed = read_envelope(orjson.loads(body), topic_arns={SUCCESS_TOPIC, ERROR_TOPIC})
        public_key.verify(signed.signature, signed.string_to_sign, PKCS1v15(), SHA256())

    :param envelope: the decoded JSON envelope (an SQS message body without raw delivery).
    :param topic_arns: the topics to trust; ``None`` trusts any well-formed SNS topic ARN.
    :param cert_url_rule: replaces :func:`check_signing_cert_url` (for tests over loopback only).
    :return: what :class:`SignedEnvelope` holds.
    :raises SnsVerificationError: with the reason ``MALFORMED``, ``VERSION``, ``TOPIC`` or
        ``CERTIFICATE_URL``.
    """
    if not isinstance(envelope, Mapping):
        raise _malformed(f"the envelope is a {type(envelope).__name__}, not an object")
    kind, signed_fields = _envelope_type(envelope)
    version = envelope.get("SignatureVersion")
    if not isinstance(version, str):
        raise _malformed(f"SignatureVersion is {_shown(version)}, not a string")
    hash_name = SIGNATURE_VERSIONS.get(version)
    if hash_name is None:
        raise SnsVerificationError(
            f"SignatureVersion {_shown(version)} is not supported (only "
            f"{' and '.join(repr(v) for v in SIGNATURE_VERSIONS)})",
            reason=Rejection.VERSION,
        )
    for name in (*signed_fields, "Signature", "SigningCertURL"):
        _check_field(envelope, name)

    topic_arn: str = envelope["TopicArn"]
    check_topic_arn(topic_arn)
    if topic_arns is not None and topic_arn not in topic_arns:
        raise SnsVerificationError(
            f"TopicArn {topic_arn} is not one of the configured topics", reason=Rejection.TOPIC
        )
    url: str = envelope["SigningCertURL"]
    (cert_url_rule or check_signing_cert_url)(url, topic_arn)
    return SignedEnvelope(
        type=kind,
        topic_arn=topic_arn,
        message_id=envelope["MessageId"],
        signature_version=version,
        hash_name=hash_name,
        signing_cert_url=url,
        signature=_signature(envelope["Signature"]),
        string_to_sign=string_to_sign(envelope),
    )


def string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs for ``envelope`` (see the module docstring), as UTF-8.

    .. code-block:: python

        string_to_sign({"Type": "Notification", "Message": "My Test Message", ...})
        # b"Message\\nMy Test Message\\nMessageId\\n4d4dc071-...\\nTimestamp\\n..."

    :raises SnsVerificationError: ``MALFORMED``: an unknown ``Type``, or a signed field that is
        missing or not a string.
    """
    _, signed_fields = _envelope_type(envelope)
    parts: list[str] = []
    for name in signed_fields:
        value = envelope.get(name)
        if value is None and name in _OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise _malformed(f"{name} is {_shown(value)}, not a string")
        parts += (name, "\n", value, "\n")
    # surrogatepass: a JSON "\ud800" decodes to a lone surrogate, which strict UTF-8 cannot encode;
    # such a message can never verify, and must fail as a bad signature, not crash.
    return "".join(parts).encode("utf-8", "surrogatepass")


def check_topic_arn(topic_arn: str) -> tuple[str, str]:
    """Check that ``topic_arn`` is an SNS topic ARN of a known partition and one of its regions.

    :return: the partition and the region.
    :raises SnsVerificationError: ``MALFORMED``.
    """
    match = _TOPIC_ARN.fullmatch(topic_arn)
    if match is None:
        raise _malformed(f"TopicArn {_shown(topic_arn)} is not an SNS topic ARN")
    partition, region = match["partition"], match["region"]
    known = _PARTITIONS.get(partition)
    if known is None or known.regions.fullmatch(region) is None:
        raise _malformed(
            f"TopicArn {_shown(topic_arn)} names no region of a known partition "
            f"({', '.join(_PARTITIONS)})"
        )
    return partition, region


def signing_cert_host(topic_arn: str) -> str:
    """The one host SNS serves the signing certificate of ``topic_arn``'s messages from.

    .. code-block:: python

        signing_cert_host("arn:aws-cn:sns:cn-north-1:123456789012:t")  # "sns.cn-north-1.amazonaws.com.cn"

    :raises SnsVerificationError: ``MALFORMED``: not an SNS topic ARN.
    """
    partition, region = check_topic_arn(topic_arn)
    return f"sns.{region}.{_PARTITIONS[partition].dns_suffix}"


def check_signing_cert_url(url: str, topic_arn: str) -> None:
    """Check that ``url`` is a certificate on SNS's own host for ``topic_arn``'s region.

    The rule is in the module docstring; it is a string match, never a lenient parse.

    :raises SnsVerificationError: ``CERTIFICATE_URL`` (``MALFORMED`` for a bad ``topic_arn``).
    """
    host = signing_cert_host(topic_arn)
    prefix = _HTTPS + host
    if not (
        len(url) <= _MAX_CERT_URL
        and url.startswith(prefix)
        and _CERT_PATH.fullmatch(url, len(prefix)) is not None
    ):
        raise SnsVerificationError(
            f"SigningCertURL {_shown(url)} is not a .pem file on https://{host}/ "
            f"(the SNS endpoint of the topic's region)",
            reason=Rejection.CERTIFICATE_URL,
        )


def is_signing_cert_url(url: str) -> bool:
    """Whether ``url`` passes :func:`check_signing_cert_url` for a topic of some region and
    partition (used to check pinned certificates' URLs, which come without a topic)."""
    if len(url) > _MAX_CERT_URL or not url.startswith(_HTTPS):
        return False
    host, slash, _ = url[len(_HTTPS) :].partition("/")
    if not slash or _CERT_PATH.fullmatch(url, len(_HTTPS) + len(host)) is None:
        return False
    service, _, rest = host.partition(".")
    region, _, suffix = rest.partition(".")
    return service == "sns" and any(
        suffix == partition.dns_suffix and partition.regions.fullmatch(region) is not None
        for partition in _PARTITIONS.values()
    )


def _envelope_type(envelope: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The envelope's ``Type`` and the fields its signature covers."""
    kind = envelope.get("Type")
    if not isinstance(kind, str) or kind not in ENVELOPE_TYPES:
        raise _malformed(f"Type is {_shown(kind)}, not one of {', '.join(sorted(ENVELOPE_TYPES))}")
    return kind, ENVELOPE_TYPES[kind]


def _check_field(envelope: Mapping[str, Any], name: str) -> None:
    value = envelope.get(name)
    if value is None and name in _OPTIONAL_FIELDS:
        return
    if value is None:
        raise _malformed(f"{name} is missing")
    if not isinstance(value, str):
        raise _malformed(f"{name} is a {type(value).__name__}, not a string")
    if name in _SINGLE_LINE_FIELDS and ("\n" in value or "\r" in value):
        raise _malformed(f"{name} has a line break")


def _signature(value: str) -> bytes:
    if len(value) > _MAX_SIGNATURE_BASE64:
        raise _malformed(f"Signature is {len(value)} characters long, too long for RSA")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("Signature is not valid base64") from None
    if not decoded:
        raise _malformed("Signature is empty")
    return decoded


def _malformed(message: str) -> SnsVerificationError:
    return SnsVerificationError(message, reason=Rejection.MALFORMED)


def _shown(value: object) -> str:
    """A value for an error message: a string cut short (it may be anyone's), else its type."""
    if isinstance(value, str):
        return repr(value if len(value) <= 120 else value[:120] + "...")
    if value is None:
        return "missing"
    return f"a {type(value).__name__}"
