"""Build of fastco: the cffi extension fastco._core (see fastco/_build.py)."""

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """build_ext that also compiles the assembly sources of csrc/arch (.S)."""

    def build_extensions(self) -> None:
        if ".S" not in self.compiler.src_extensions:
            self.compiler.src_extensions.append(".S")
        super().build_extensions()


setup(
    cffi_modules=["fastco/_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
)
