"""Build glue that pyproject.toml cannot express.

* The version is read from ``Sources/CommandLineSupport/Version.swift`` (the one place it
  lives) with a regex, or taken from ``DOCONV_VERSION`` (scripts/wheel sets it, since it
  builds from a copy of this folder outside the tree).
* The wheel is platform-specific but not tied to a Python ABI: ``doconv/bin/`` holds an
  ELF executable and the Python code runs it, so the tag is ``py3-none-<platform>``
  (auditwheel then turns ``linux_x86_64`` into ``manylinux_2_XX_x86_64``).
"""
import os
import pathlib
import re
from typing import Tuple

from setuptools import setup
from setuptools.dist import Distribution

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - older setuptools with the wheel package
    from wheel.bdist_wheel import bdist_wheel  # type: ignore

VERSION_LINE = re.compile(r'^\s*public\s+static\s+let\s+string\s*=\s*"([^"]+)"', re.MULTILINE)


def doconv_version() -> str:
    """The release version: $DOCONV_VERSION, else the line in Version.swift."""
    if os.environ.get("DOCONV_VERSION"):
        return os.environ["DOCONV_VERSION"]
    swift = pathlib.Path(__file__).resolve().parent.parent / "Sources" / "CommandLineSupport" / "Version.swift"
    match = VERSION_LINE.search(swift.read_text(encoding="utf-8"))
    if match is None:
        raise RuntimeError(f"{swift}: no line `public static let string = \"X.Y.Z\"`")
    return match.group(1)


class PlatformDistribution(Distribution):
    """Files go to platlib and the wheel is not 'pure': it carries a native executable."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """Tags the wheel py3-none-<platform>: any Python 3, no ABI, this machine's platform."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> Tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    version=doconv_version(),
    distclass=PlatformDistribution,
    cmdclass={"bdist_wheel": PlatformWheel},
)
