"""What a failed S3 call says: its error code and a short description."""

from __future__ import annotations

from botocore.exceptions import ClientError

from app.storage.failures import describe, error_code


def client_error(code: str, message: str | None = None) -> ClientError:
    error = {"Code": code} if message is None else {"Code": code, "Message": message}
    return ClientError({"Error": error}, "UploadPart")


def test_the_code_of_a_store_answer_and_none_for_anything_else() -> None:
    assert error_code(client_error("SlowDown")) == "SlowDown"
    assert error_code(ConnectionError("reset")) is None


def test_a_store_answer_is_described_by_its_code_and_message() -> None:
    assert describe(client_error("SlowDown", "Please reduce your request rate.")) == (
        "SlowDown: Please reduce your request rate."
    )
    assert describe(client_error("InternalError")) == "InternalError"


def test_other_exceptions_are_described_briefly() -> None:
    assert describe(TimeoutError()) == "TimeoutError"
    long = describe(ValueError("x" * 1000))
    assert len(long) == 300 and long.endswith("...")
