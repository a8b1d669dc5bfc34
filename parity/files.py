"""Output folders of the command-line tools, checked before a run rather than after it.

>>> import tempfile, os
>>> writable_folder(os.path.join(tempfile.mkdtemp(), "new", "report"))
True
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["writable_folder"]


def writable_folder(path: str) -> bool:
    """Whether ``path`` is (or can be made) a folder a file can be written into; creates it.

    >>> writable_folder("/dev/null/report")
    False
    """
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False
