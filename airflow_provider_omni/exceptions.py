"""One exception hierarchy for everything that can go wrong talking to OMNI."""

from __future__ import annotations

from airflow_provider_omni.version_compat import AirflowException


class OmniError(AirflowException):
    """Base class of the provider's errors.

    :param message: what went wrong and what to do about it.
    :param status_code: HTTP status of Infobip's answer, when there was one.
    :param error_code: Infobip's error identifier (``messageId`` or ``errorCode`` of the body).
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, error_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code  # type: ignore[assignment]
        self.error_code = error_code


class OmniValidationError(OmniError, ValueError):
    """The request breaks a rule: found client-side before sending, or a 400 from Infobip.

    :param validation_errors: field name to the messages about it.
    """

    def __init__(
        self,
        message: str,
        *,
        validation_errors: dict[str, list[str]] | None = None,
        status_code: int | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, error_code=error_code)
        self.validation_errors = validation_errors or {}


class OmniConfigurationError(OmniError):
    """The connection cannot work as configured (a base URL that redirects, a credential with a line
    break or control character, ...). Never retried: fix the connection."""


class OmniAuthError(OmniError):
    """401 or 403: the credentials are wrong, expired, or lack the scope. Never retried."""


class OmniNotFoundError(OmniError):
    """404: the scenario (or other resource) does not exist on this account."""


class OmniRateLimitError(OmniError):
    """429 after the retries ran out.

    :param retry_after: seconds Infobip asked to wait, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class OmniServerError(OmniError):
    """5xx or a broken connection after the retries ran out."""


class OmniSendUncertainError(OmniServerError):
    """A send (POST) failed ambiguously (timeout, 5xx, dropped connection): it may have gone out.

    It is never retried blindly; look the bulk or message ids up in ``/omni/1/logs`` first.

    :param bulk_id: the bulk id of the request, when it had one.
    """

    def __init__(self, message: str, *, bulk_id: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.bulk_id = bulk_id
