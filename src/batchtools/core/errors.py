"""Exceptions. Each subclasses the built-in type a user would catch anyway."""

from __future__ import annotations


class ReadOnlyRegistryError(PermissionError):
    """A mutating call on a registry loaded with ``writeable=False``."""


class RegistryNotFoundError(FileNotFoundError):
    """``load_registry`` on a folder that holds no registry."""


class ResultNotFoundError(FileNotFoundError):
    """``load_result`` for a job that has no result (not done, or failed)."""


class SubmitError(RuntimeError):
    """A cluster backend refused a submission with a permanent error."""


class LeaseError(ReadOnlyRegistryError):
    """Another session holds (or took over) the registry's writeable lease."""


class CorruptFileError(OSError):
    """A registry file cannot be read; the message names the file, the job and what to do."""
