"""The botocore that aiobotocore brings knows the inline Body of InvokeEndpointAsync.

Older models (botocore < 1.43.29) lack ``Body`` and require ``InputLocation``: pyproject pins the
floor, and this test fails if an install ever resolves below it.
"""

from __future__ import annotations

import botocore.session

from aiosagemaker import MAX_INLINE_BODY_BYTES


def test_invoke_endpoint_async_model_has_inline_body() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker-runtime")
    shape = model.operation_model("InvokeEndpointAsync").input_shape
    assert "Body" in shape.members
    assert shape.serialization.get("payload") == "Body"
    assert shape.members["Body"].metadata.get("max") == MAX_INLINE_BODY_BYTES
    assert shape.required_members == ["EndpointName"]  # InputLocation no longer required
