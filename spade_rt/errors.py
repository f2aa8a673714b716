"""Exception types. Every message says what was expected and what was found.

The CLI turns any ``SpadeRtError`` into one line on stderr and a non-zero exit, no traceback.
"""

from __future__ import annotations


class SpadeRtError(Exception):
    """Base class of every error spade-rt raises on purpose."""


class ConfigError(SpadeRtError, ValueError):
    """An option or configuration value is out of its accepted range."""


class InputError(SpadeRtError, ValueError):
    """User data (label map, instance map, z, array) has the wrong shape, dtype or values."""


class LabelError(InputError):
    """A label map holds ids the model does not know, or cannot be read as ids."""


class OutputError(InputError):
    """An output location cannot take the result: a folder where a file is expected (or the reverse), a place
    where no file can be created, or a name whose suffix is not a format the command writes. Commands check
    their outputs with ``spade_rt.io_utils`` before any work starts."""


class ModelFormatError(SpadeRtError):
    """A model, checkpoint, ONNX or engine file is missing, corrupt or of the wrong kind."""


class CheckpointMismatchError(ModelFormatError):
    """A checkpoint does not fit the requested preset/options; the message names both numbers."""


class UnsafeCheckpointError(ModelFormatError):
    """A checkpoint carries pickled objects other than tensors and was refused without running them."""


class ExportError(SpadeRtError):
    """ONNX export or its verification failed."""


class BuildError(SpadeRtError):
    """Building a TensorRT engine failed."""


class BackendUnavailableError(SpadeRtError):
    """The requested backend (TensorRT, ONNX Runtime, a GPU) is not usable on this machine."""


class EngineCompatibilityError(ModelFormatError):
    """An engine was built for another TensorRT version or GPU: rebuild it."""


class EngineTrustError(ModelFormatError):
    """An engine is not the file its manifest describes (size or sha256): refused before deserialising, since
    engines can carry code, unless the caller trusts it explicitly (``trust_engine=True``)."""
