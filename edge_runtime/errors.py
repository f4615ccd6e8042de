"""User-facing errors. Every stage raises these (or subclasses) with a message that says what to do;
the CLI prints the message alone, without a traceback."""


class Mask2FaceError(Exception):
    """Base class: str(error) is a complete, actionable one-line message."""


class ImageError(Mask2FaceError):
    """An image that cannot be used (unreadable, hostile, wrong format). `reason` is short and machine-friendly."""

    def __init__(self, message: str, reason: str = "unreadable"):
        super().__init__(message)
        self.reason = reason


class ModelFileError(Mask2FaceError):
    """A .tflite file that is missing, truncated, fake or lacks what the runtime needs."""


class NoFacesError(Mask2FaceError):
    """A folder or input that holds no usable face images."""


class DiskFullError(Mask2FaceError, OSError):
    """No space left where an output goes: a batch stops here, since every later file would fail the same way.
    The one such error of every package (mask2face.runs raises it too); an OSError, for code that catches those."""
