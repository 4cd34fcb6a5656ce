"""Typed errors users can hit; the CLI maps each to an exit code and a one-paragraph message."""


class ModelopsError(Exception):
    """Base class: a problem the user can fix, with a message that names the file, key or column."""

    exit_code = 1


class ParamsError(ModelopsError):
    """params.yaml is missing, malformed, or has an unknown, mistyped or out-of-range key."""

    exit_code = 2


class DataError(ModelopsError):
    """A data file cannot be read as the dataset contract expects (empty, wrong delimiter, ...)."""

    exit_code = 3


class ValidationFailed(ModelopsError):
    """The Great Expectations suite failed: the data must not train a model."""

    exit_code = 4


class PipelineError(ModelopsError):
    """A stage's input is missing: an earlier stage has not run or its output was removed."""

    exit_code = 5
