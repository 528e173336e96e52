"""The version string, defined once: the installed distribution's metadata.

    >>> from contextd.version import __version__
    >>> __version__.count(".") >= 1
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("contextd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
