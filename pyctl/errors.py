"""The error hierarchy: every failure an operator can see is a PyctlError.

The CLI prints ``pyctl: error: <message>`` and exits with ``exit_code``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class PyctlError(Exception):
    """A failure with a message written for the operator."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(PyctlError):
    """Bad command-line usage (exit 2)."""

    exit_code = 2


class ConfigError(PyctlError):
    """A configuration file or setting is invalid."""


class InvalidReferenceError(PyctlError):
    """An image reference does not parse."""


class NotFoundError(PyctlError):
    """The named object (image, container, namespace, blob) does not exist."""


class AlreadyExistsError(PyctlError):
    """The object exists already."""


class InUseError(PyctlError):
    """The object is in use (a running container, an image a container uses) and the
    operation was not forced."""


class UnreachableError(PyctlError):
    """containerd (or a registry) cannot be reached."""


class RegistryError(PyctlError):
    """A registry answered with an error, or could not be reached. ``status`` is the HTTP
    status of the answer (0: none), ``code`` the distribution error code (``MANIFEST_UNKNOWN``,
    ``DENIED``, ...) when it sent one."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryNotFound(RegistryError, NotFoundError):
    """The registry answered 404: no such repository, tag, manifest or blob."""


class RegistryUnreachable(RegistryError, UnreachableError):
    """No answer from a registry (or its token server): the connection, TLS or the name
    lookup failed. The next endpoint may do."""


class CredentialHelperError(PyctlError):
    """A ``docker-credential-*`` helper failed (or is missing)."""

    def __init__(self, message: str, helper: str, action: str, output: str = "") -> None:
        super().__init__(message)
        self.helper = helper
        self.action = action
        self.output = output


class CredentialsNotFound(CredentialHelperError):
    """The helper has no credentials for the server (its standard answer to get / erase)."""


class FormatError(PyctlError):
    """A --format template is invalid or cannot be rendered."""


class InvalidArgumentError(PyctlError):
    """A flag, argument or environment value pyctl cannot use (exit 1, like docker)."""


@contextlib.contextmanager
def prefixed(prefix: str) -> Iterator[None]:
    """Put ``prefix: `` (e.g. ``pull REF``) in front of a PyctlError raised inside, unless the
    message starts with it already."""
    try:
        yield
    except PyctlError as exc:
        if not exc.message.startswith(prefix):
            exc.message = f"{prefix}: {exc.message}"
            exc.args = (exc.message,)
        raise
