"""The sans-IO half of SNS signature verification: the string to sign, the envelope's shape, and the
signing-certificate URL rule (aiosagemaker._core._sns).

The string to sign is checked against the examples of "Verifying the signatures of Amazon SNS
messages" (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html), byte
for byte. The signatures themselves are checked in tests/library/watchers/test_sns_verifier.py.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from aiosagemaker._core._sns import (
    ENVELOPE_TYPES,
    SIGNATURE_VERSIONS,
    Rejection,
    SignedEnvelope,
    SnsVerificationError,
    check_signing_cert_url,
    check_topic_arn,
    is_signing_cert_url,
    read_envelope,
    signing_cert_host,
    string_to_sign,
)
from aiosagemaker._exceptions import NotificationError

TOPIC = "arn:aws:sns:us-east-1:123456789012:success-topic"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
SECRET = "s3://bucket/very-secret-output-location"


def notification(**changes: Any) -> dict[str, Any]:
    """A well-formed Notification envelope as SNS delivers it to SQS (the signature is a dummy)."""
    envelope: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps({"inferenceId": "abc", "outputLocation": SECRET}),
        "Timestamp": "2012-05-02T00:54:06.655Z",
        "SignatureVersion": "1",
        "Signature": base64.b64encode(b"\x01" * 256).decode(),
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&x=y",
    }
    for name, value in changes.items():
        if value is _DROP:
            envelope.pop(name, None)
        else:
            envelope[name] = value
    return envelope


_DROP = object()


def refused(envelope: Any, reason: Rejection, **kwargs: Any) -> SnsVerificationError:
    with pytest.raises(SnsVerificationError) as caught:
        read_envelope(envelope, **kwargs)
    assert caught.value.reason is reason, caught.value
    assert SECRET not in str(caught.value)  # never the message's content
    return caught.value


# --- the string to sign ----------------------------------------------------------------------


def test_string_to_sign_is_the_documented_notification_example() -> None:
    # The Notification example of the AWS page, verbatim (each value followed by a newline).
    envelope = {
        "Type": "Notification",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "My subject",
        "Message": "My Test Message",
        "Timestamp": "2019-01-31T04:37:04.321Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe",
    }
    assert string_to_sign(envelope) == (
        b"Message\n"
        b"My Test Message\n"
        b"MessageId\n"
        b"4d4dc071-ddbf-465d-bba8-08f81c89da64\n"
        b"Subject\n"
        b"My subject\n"
        b"Timestamp\n"
        b"2019-01-31T04:37:04.321Z\n"
        b"TopicArn\n"
        b"arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
        b"Type\n"
        b"Notification\n"
    )


def test_string_to_sign_is_the_documented_subscription_confirmation_example() -> None:
    subscribe_url = (
        "https://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:"
        "us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P&Token=233..."
    )
    envelope = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "3d891288-136d-417f-bc05-901c108273ee",
        "Token": "233...",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Message": "My Test Message",
        "SubscribeURL": subscribe_url,
        "Timestamp": "2019-01-31T19:25:13.719Z",
    }
    expected = (
        "Message\nMy Test Message\n"
        "MessageId\n3d891288-136d-417f-bc05-901c108273ee\n"
        f"SubscribeURL\n{subscribe_url}\n"
        "Timestamp\n2019-01-31T19:25:13.719Z\n"
        "Token\n233...\n"
        "TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
        "Type\nSubscriptionConfirmation\n"
    )
    assert string_to_sign(envelope) == expected.encode()
    unsubscribe = {**envelope, "Type": "UnsubscribeConfirmation"}
    assert string_to_sign(unsubscribe).endswith(b"Type\nUnsubscribeConfirmation\n")


@pytest.mark.parametrize("kind", sorted(ENVELOPE_TYPES))
def test_signed_fields_are_in_byte_order(kind: str) -> None:
    fields = ENVELOPE_TYPES[kind]
    assert list(fields) == sorted(fields, key=lambda name: name.encode())


def test_subject_is_signed_only_when_present() -> None:
    without = string_to_sign(notification())
    assert b"Subject" not in without
    # A JSON null is no subject: it changes no signed byte.
    assert string_to_sign(notification(Subject=None)) == without
    assert b"\nSubject\nHello\nTimestamp\n" in string_to_sign(notification(Subject="Hello"))
    # An empty subject is still a subject.
    assert b"\nSubject\n\nTimestamp\n" in string_to_sign(notification(Subject=""))


def test_values_are_the_decoded_json_strings_in_utf8() -> None:
    # "convert the escaped control characters to their original character representations"
    raw = '{"Type": "Notification", "Message": "line 1\\nline 2 \\u00e9\\u2603", "MessageId": "m",'
    raw += ' "Timestamp": "t", "TopicArn": "arn"}'
    assert string_to_sign(json.loads(raw)).startswith(
        "Message\nline 1\nline 2 é☃\nMessageId\n".encode()
    )


def test_a_lone_surrogate_is_encoded_not_a_crash() -> None:
    # The stdlib's json decodes "\ud800"; such a message can only fail its signature check.
    assert string_to_sign(notification(Message="\ud800")).startswith(b"Message\n\xed\xa0\x80\n")


def test_string_to_sign_refuses_what_it_cannot_sign() -> None:
    with pytest.raises(SnsVerificationError):
        string_to_sign(notification(Type="Other"))
    with pytest.raises(SnsVerificationError):
        string_to_sign(notification(Message=_DROP))
    with pytest.raises(SnsVerificationError):
        string_to_sign(notification(Subject=3))


# --- reading an envelope ---------------------------------------------------------------------


@pytest.mark.parametrize(("version", "hash_name"), [("1", "sha1"), ("2", "sha256")])
def test_read_envelope(version: str, hash_name: str) -> None:
    envelope = notification(SignatureVersion=version)
    signed = read_envelope(envelope, topic_arns={TOPIC})
    assert signed == SignedEnvelope(
        type="Notification",
        topic_arn=TOPIC,
        message_id=envelope["MessageId"],
        signature_version=version,
        hash_name=hash_name,
        signing_cert_url=CERT_URL,
        signature=b"\x01" * 256,
        string_to_sign=string_to_sign(envelope),
    )
    assert SIGNATURE_VERSIONS[version] == hash_name
    assert SECRET not in repr(signed)  # the string to sign (with the message) is left out


def test_read_envelope_without_topics_trusts_any_topic() -> None:
    other = "arn:aws:sns:us-east-1:210987654321:someone-elses"
    assert read_envelope(notification(TopicArn=other)).topic_arn == other


def test_read_envelope_reads_confirmations() -> None:
    envelope = notification(
        Type="SubscriptionConfirmation",
        Token="2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3",
        SubscribeURL="https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
    )
    assert read_envelope(envelope).type == "SubscriptionConfirmation"
    refused({**envelope, "Token": None}, Rejection.MALFORMED)


@pytest.mark.parametrize(
    "changes",
    [
        {"Type": _DROP},
        {"Type": "Bogus"},
        {"Type": 1},
        {"Message": _DROP},
        {"Message": {"inferenceId": "abc"}},
        {"MessageId": _DROP},
        {"MessageId": 7},
        {"MessageId": "a\nTimestamp"},
        {"Timestamp": _DROP},
        {"Timestamp": "2012-05-02T00:54:06.655Z\r"},
        {"TopicArn": _DROP},
        {"TopicArn": ["arn"]},
        {"Subject": 5},
        {"SignatureVersion": _DROP},
        {"SignatureVersion": 1},
        {"Signature": _DROP},
        {"Signature": "not base64!"},
        {"Signature": ""},
        {"Signature": "A" * 2000},
        {"SigningCertURL": _DROP},
        {"SigningCertURL": None},
    ],
    # Stable ids (the same in every process, as pytest-xdist requires): no object addresses.
    ids=lambda changes: repr(changes).replace(repr(_DROP), "DROP"),
)
def test_malformed_envelopes_are_refused(changes: dict[str, Any]) -> None:
    refused(notification(**changes), Rejection.MALFORMED, topic_arns={TOPIC})


@pytest.mark.parametrize("value", [None, "a string", ["a", "list"], 42])
def test_a_non_object_is_refused(value: Any) -> None:
    refused(value, Rejection.MALFORMED)


@pytest.mark.parametrize("version", ["3", "0", "", "2.0", "SHA256"])
def test_unsupported_signature_versions_are_refused(version: str) -> None:
    error = refused(notification(SignatureVersion=version), Rejection.VERSION)
    assert not error.transient


def test_an_unknown_topic_is_refused() -> None:
    other = "arn:aws:sns:us-east-1:123456789012:another-topic"
    error = refused(notification(TopicArn=other), Rejection.TOPIC, topic_arns={TOPIC})
    assert other in str(error)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sqs:us-east-1:123456789012:queue",  # not SNS
        "arn:aws:sns:us-east-1:1234:topic",  # account
        "arn:aws:sns:us-east-1:123456789012:",  # no topic name
        "arn:aws:sns:us-east-1:123456789012:a/b",
        "arn:aws:sns:us-east-1:123456789012:topic:subscription-id",
        "arn:evil:sns:us-east-1:123456789012:topic",  # unknown partition
        "arn:aws:sns:cn-north-1:123456789012:topic",  # a China region in the aws partition
        "arn:aws-cn:sns:us-east-1:123456789012:topic",
        "arn:aws:sns:us-gov-west-1:123456789012:topic",
        "arn:aws:sns:evil.example:123456789012:topic",
        " arn:aws:sns:us-east-1:123456789012:topic",
    ],
)
def test_topic_arns_that_are_not_sns_topics_are_refused(arn: str) -> None:
    refused(notification(TopicArn=arn), Rejection.MALFORMED)
    with pytest.raises(SnsVerificationError):
        check_topic_arn(arn)


def test_refusals_are_notification_errors() -> None:
    error = refused(notification(SignatureVersion="9"), Rejection.VERSION)
    assert isinstance(error, NotificationError)
    assert isinstance(error, ValueError)
    assert str(error).startswith("untrusted SNS message (version): ")
    assert SnsVerificationError("x", reason=Rejection.UNAVAILABLE).transient


# --- the signing-certificate URL -------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "host"),
    [
        ("arn:aws:sns:us-east-1:123456789012:t", "sns.us-east-1.amazonaws.com"),
        ("arn:aws:sns:ap-southeast-7:123456789012:t.fifo", "sns.ap-southeast-7.amazonaws.com"),
        ("arn:aws-cn:sns:cn-north-1:123456789012:t", "sns.cn-north-1.amazonaws.com.cn"),
        ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:t", "sns.us-gov-west-1.amazonaws.com"),
        ("arn:aws-us-gov:sns:us-gov-east-1:123456789012:t", "sns.us-gov-east-1.amazonaws.com"),
        ("arn:aws-iso:sns:us-iso-east-1:123456789012:t", "sns.us-iso-east-1.c2s.ic.gov"),
        ("arn:aws-iso-b:sns:us-isob-east-1:123456789012:t", "sns.us-isob-east-1.sc2s.sgov.gov"),
        ("arn:aws-iso-e:sns:eu-isoe-west-1:123456789012:t", "sns.eu-isoe-west-1.cloud.adc-e.uk"),
        ("arn:aws-iso-f:sns:us-isof-east-1:123456789012:t", "sns.us-isof-east-1.csp.hci.ic.gov"),
        ("arn:aws-eusc:sns:eusc-de-east-1:123456789012:t", "sns.eusc-de-east-1.amazonaws.eu"),
    ],
)
def test_the_certificate_host_is_the_topic_regions_sns_endpoint(topic: str, host: str) -> None:
    assert signing_cert_host(topic) == host
    url = f"https://{host}/SimpleNotificationService-01234567890abcdef.pem"
    check_signing_cert_url(url, topic)
    assert is_signing_cert_url(url)


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-a.b.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem",
    ],
)
def test_certificate_urls_accepted(url: str) -> None:
    check_signing_cert_url(url, TOPIC)
    assert read_envelope(notification(SigningCertURL=url)).signing_cert_url == url


@pytest.mark.parametrize(
    "url",
    [
        # other hosts, look-alikes and tricks with the authority
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://user:pw@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:443/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com./x.pem",
        "https://SNS.US-EAST-1.AMAZONAWS.COM/x.pem",
        "https://sns.amazonaws.com/x.pem",
        "https://s3.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.cn/x.pem",
        "https://xsns.us-east-1.amazonaws.com/x.pem",
        "https://54.239.28.85/x.pem",
        "https://[::1]/x.pem",
        "https://127.0.0.1/x.pem",
        # another region than the topic's (SNS signs in the topic's region)
        "https://sns.us-west-2.amazonaws.com/x.pem",
        # not https
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "HTTPS://sns.us-east-1.amazonaws.com/x.pem",
        "//sns.us-east-1.amazonaws.com/x.pem",
        "ftp://sns.us-east-1.amazonaws.com/x.pem",
        "file:///etc/x.pem",
        # paths
        "https://sns.us-east-1.amazonaws.com/",
        "https://sns.us-east-1.amazonaws.com/x.pem.txt",
        "https://sns.us-east-1.amazonaws.com/x.crt",
        "https://sns.us-east-1.amazonaws.com/.pem",
        "https://sns.us-east-1.amazonaws.com//x.pem",
        "https://sns.us-east-1.amazonaws.com/a/x.pem",
        "https://sns.us-east-1.amazonaws.com/../x.pem",
        "https://sns.us-east-1.amazonaws.com/%2e%2e/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem?a=b",
        "https://sns.us-east-1.amazonaws.com/?x=.pem",
        "https://sns.us-east-1.amazonaws.com/x.pem#frag",
        "https://sns.us-east-1.amazonaws.com/x.pem\n",
        "https://sns.us-east-1.amazonaws.com/x\t.pem",
        "https://sns.us-east-1.amazonaws.com\\x.pem",
        " https://sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com/" + "x" * 600 + ".pem",
        "",
    ],
)
def test_certificate_urls_refused(url: str) -> None:
    with pytest.raises(SnsVerificationError) as caught:
        check_signing_cert_url(url, TOPIC)
    assert caught.value.reason is Rejection.CERTIFICATE_URL
    refused(notification(SigningCertURL=url), Rejection.CERTIFICATE_URL)


def test_the_certificate_partition_is_the_topics() -> None:
    china = "arn:aws-cn:sns:cn-north-1:123456789012:t"
    with pytest.raises(SnsVerificationError):
        check_signing_cert_url("https://sns.cn-north-1.amazonaws.com/x.pem", china)
    check_signing_cert_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", china)


def test_the_url_rule_can_be_replaced_for_loopback_tests() -> None:
    seen: list[tuple[str, str]] = []
    url = "https://127.0.0.1:8443/test.pem"
    read_envelope(notification(SigningCertURL=url), cert_url_rule=lambda *a: seen.append(a))
    assert seen == [(url, TOPIC)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (CERT_URL, True),
        ("https://sns.cn-northwest-1.amazonaws.com.cn/x.pem", True),
        ("https://sns.us-gov-east-1.amazonaws.com/x.pem", True),
        ("https://sns.us-east-1.amazonaws.com.cn/x.pem", False),  # region not of that partition
        ("https://sns.cn-north-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com", False),
        ("https://sns.us-east-1.amazonaws.com/x", False),
        ("https://sns.us-east-1.amazonaws.com:443/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", False),
        ("https://sqs.us-east-1.amazonaws.com/x.pem", False),
        ("http://sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com/" + "x" * 600 + ".pem", False),
    ],
)
def test_is_signing_cert_url(url: str, expected: bool) -> None:
    assert is_signing_cert_url(url) is expected
