"""Native libraries' own log lines, kept off the terminal: LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate
for CPU." on every run, and TensorFlow's CUDA probing and oneDNN notice on a machine without a GPU.

    with native_log.filtered_stderr():
        interpreter = Interpreter(model_content=data)     # model.new_interpreter, where every interpreter is made

C++ writes these straight to file descriptor 2, below Python's `sys.stderr` and below any log-level setting the
libraries read (TF_CPP_MIN_LOG_LEVEL does not reach TF's absl lines), so fd 2 is the one place to catch them.
While the block runs, fd 2 points at a temporary file; afterwards every line that matches none of the patterns
(errors, warnings, our own messages) is written back in order, so nothing but the known noise is lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from typing import Iterator

LITERT_NOISE = (b"Created TensorFlow Lite XNNPACK delegate for CPU",)
TENSORFLOW_NOISE = (b"oneDNN custom operations are on", b"Could not find cuda drivers", b"failed call to cuInit",
                    b"Unable to register cu", b"computation placer already registered",
                    b"This TensorFlow binary is optimized to use available CPU instructions",
                    b"To enable the following instructions", b"TF-TRT Warning",
                    b"All log messages before absl::InitializeLog() is called are written to STDERR")
NOISE = LITERT_NOISE + TENSORFLOW_NOISE

_lock = threading.Lock()


def kept_lines(data: bytes, patterns: tuple[bytes, ...] = NOISE) -> bytes:
    """`data` without the lines that contain one of `patterns`."""
    return b"".join(line for line in data.splitlines(keepends=True) if not any(p in line for p in patterns))


@contextlib.contextmanager
def filtered_stderr(patterns: tuple[bytes, ...] = NOISE) -> Iterator[None]:
    """Run the block with fd 2 captured, then write back what is not noise. Re-entrant and thread-safe: a block
    inside another (or in another thread meanwhile) runs unfiltered rather than waiting; without a usable fd 2 the
    block runs as it is."""
    if not _lock.acquire(blocking=False):
        yield
        return
    try:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                rest = kept_lines(capture.read(), patterns)
                if rest:
                    os.write(2, rest)
    finally:
        _lock.release()
