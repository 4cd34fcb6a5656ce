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


class ManifestError(ModelopsError):
    """gitops/ does not render, or a rendered object breaks a schema or a promotion rule."""

    exit_code = 6


class PublishError(ModelopsError):
    """A model cannot be published to the artifact store; the message names the directory or URI."""

    exit_code = 7


class RegistryError(ModelopsError):
    """The MLflow registry cannot do what was asked; the message names the model, version or env."""

    exit_code = 8


class DeclarationError(ParamsError):
    """A dataset declaration (data/<dataset>/dataset.yaml) is missing, malformed or inconsistent
    with params.yaml; the message names the file and the key. Same exit code as params errors."""


class CanaryAborted(ModelopsError):
    """`modelops analyze`: the canary (or shadow) is worse than main; canary.yml aborts it."""

    exit_code = 20


class CanaryWaiting(ModelopsError):
    """`modelops analyze`: not enough samples yet to promote or abort; the next run looks again."""

    exit_code = 21
