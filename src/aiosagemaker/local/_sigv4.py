"""Verify AWS Signature Version 4 on incoming requests, as the service does.

The canonical request, string to sign and signature are the protocol core's
(:mod:`aiosagemaker._core._sigv4`), the very code the client signs with. What is left here is the
server's job: read the ``Authorization`` header, check the credential scope (access key, date,
region, service) and the signing time against the clock, recompute the signature over the request
as received, and refuse with AWS's codes and messages (HTTP 403).
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .._core._sigv4 import (
    ALGORITHM,
    canonical_headers,
    canonical_path,
    canonical_query,
    canonical_request,
    credential_scope,
    payload_hash,
    signature,
    signing_key,
    signing_mac,
    string_to_sign,
)
from ._errors import ServiceError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from multidict import MultiMapping

__all__ = ["SigV4Verifier"]

_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# AWS refuses a request whose signing time is more than five minutes away from its clock.
MAX_SKEW_SECONDS = 300.0
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def _forbidden(code: str, message: str) -> ServiceError:
    return ServiceError(403, code, message)


def _incomplete(message: str) -> ServiceError:
    return ServiceError(403, "IncompleteSignatureException", message)


class SigV4Verifier:
    """Check ``Authorization: AWS4-HMAC-SHA256 ...`` against known credentials.

    :param credentials: access key id -> secret access key.
    :param region: the only region a credential scope may name.
    :param service: the signing name (``sagemaker`` for the runtime API).
    :param clock: seconds since the epoch; injectable for tests.
    """

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        region: str,
        service: str = "sagemaker",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = dict(credentials)
        self._region = region
        self._service = service
        self._clock = clock
        # Keyed HMACs per (access key, date): one HMAC chain per day, not per request.
        self._keys: dict[tuple[str, str], hmac.HMAC] = {}
        # Parsed X-Amz-Date values and canonical paths: a handful of distinct values per second.
        self._dates: dict[str, float] = {}
        self._paths: dict[str, str] = {}

    def _signing_mac(self, access_key: str, secret: str, date: str) -> hmac.HMAC:
        mac = self._keys.get((access_key, date))
        if mac is None:
            mac = signing_mac(signing_key(secret, date, self._region, self._service))
            if len(self._keys) > 64:
                self._keys.clear()
            self._keys[(access_key, date)] = mac
        return mac

    def verify(self, method: str, raw_path: str, headers: MultiMapping[str], body: bytes) -> str:
        """Return the request's access key id, or raise :class:`ServiceError` (HTTP 403)."""
        authorization = headers.get("Authorization")
        if not authorization:
            raise _forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
        algorithm, _, rest = authorization.partition(" ")
        if algorithm != ALGORITHM:
            raise _incomplete(
                f"Unsupported Authorization Type: {algorithm!r}; only {ALGORITHM} is accepted."
            )
        parts: dict[str, str] = {}
        for item in rest.split(","):
            name, sep, value = item.strip().partition("=")
            if sep:
                parts[name] = value
        missing = [p for p in ("Credential", "SignedHeaders", "Signature") if p not in parts]
        if missing:
            raise _incomplete(
                " ".join(f"Authorization header requires '{p}' parameter." for p in missing)
                + f" Authorization={ALGORITHM} ..."
            )
        scope = parts["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise _incomplete(
                "Credential should be scoped to a valid region, service and terminated by "
                "'aws4_request'."
            )
        access_key, scope_date, scope_region, scope_service, _ = scope
        secret = self._secrets.get(access_key)
        if secret is None:
            raise _forbidden(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        amz_date = headers.get("X-Amz-Date")
        if amz_date is None:
            raise _incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
            )
        signed_at = self._dates.get(amz_date)
        if signed_at is None:
            try:
                signed_at = (
                    datetime.strptime(amz_date, _DATE_FORMAT).replace(tzinfo=UTC).timestamp()
                )
            except ValueError:
                raise _incomplete(
                    f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
                ) from None
            if len(self._dates) > 4096:
                self._dates.clear()
            self._dates[amz_date] = signed_at
        self._check_skew(amz_date, signed_at)
        if scope_date != amz_date[:8]:
            raise _forbidden(
                "InvalidSignatureException",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        if scope_service != self._service:
            raise _forbidden(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{self._service}'. ",
            )
        if scope_region != self._region:
            raise _forbidden(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{scope_region}'. ",
            )
        signed_headers = parts["SignedHeaders"]
        names = signed_headers.split(";")
        if "host" not in names:
            raise _forbidden(
                "InvalidSignatureException",
                "'Host' must be a 'SignedHeader' in the AWS Authorization.",
            )
        # The signed headers as received; one missing from the request counts as empty, and the
        # signature then fails to match.
        lines, _ = canonical_headers(
            (name, value) for name in set(names) for value in headers.getall(name, ("",))
        )
        path, _, query = raw_path.partition("?")
        uri = self._paths.get(path)
        if uri is None:
            uri = canonical_path(path)
            if len(self._paths) > 4096:
                self._paths.clear()
            self._paths[path] = uri
        # SignedHeaders goes in as the client sent it: that is the string the client signed.
        request = canonical_request(
            method.upper(),
            uri,
            canonical_query(query),
            lines,
            signed_headers,
            headers.get("X-Amz-Content-SHA256") or payload_hash(body),
        )
        expected = signature(
            self._signing_mac(access_key, secret, scope_date),
            string_to_sign(
                amz_date, credential_scope(scope_date, scope_region, scope_service), request
            ),
        )
        if not hmac.compare_digest(expected, parts["Signature"]):
            raise _forbidden("InvalidSignatureException", _SIGNATURE_MISMATCH)
        return access_key

    def _check_skew(self, amz_date: str, signed_at: float) -> None:
        now = self._clock()
        if abs(now - signed_at) <= MAX_SKEW_SECONDS:
            return

        def fmt(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime(_DATE_FORMAT)

        if signed_at < now:
            message = (
                f"Signature expired: {amz_date} is now earlier than "
                f"{fmt(now - MAX_SKEW_SECONDS)} ({fmt(now)} - 5 min.)"
            )
        else:
            message = (
                f"Signature not yet current: {amz_date} is still later than "
                f"{fmt(now + MAX_SKEW_SECONDS)} ({fmt(now)} + 5 min.)"
            )
        raise _forbidden("InvalidSignatureException", message)
