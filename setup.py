"""Build of fastco: the cffi extension fastco._core (see fastco/_build.py),
and fastco-as-greenlet.pth (see _fastco_as_greenlet.py)."""

import os
import platform
import sys
import sysconfig


def check_interpreter() -> None:
    """Refuse, in one sentence, an interpreter fastco cannot run on (the C
    glue would stop with an #error too, less readably)."""
    where = f"{platform.python_implementation()} {platform.python_version()}"
    if platform.python_implementation() != "CPython":
        sys.exit(f"fastco needs CPython (it saves CPython's thread state), not {where}")
    if not (3, 10) <= tuple(sys.version_info[:2]) <= (3, 15):
        sys.exit(f"fastco supports CPython 3.10 to 3.15, not {where}")
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        sys.exit(f"fastco does not support free-threaded CPython builds ({where}, "
                 "Py_GIL_DISABLED): use the default build")


# First, so that the refusal is the first thing said.
check_interpreter()

from setuptools import setup  # noqa: E402
from setuptools.command.build_ext import build_ext  # noqa: E402
from setuptools.command.build_py import build_py  # noqa: E402

PTH = "fastco-as-greenlet.pth"


class BuildExt(build_ext):
    """build_ext that also compiles the assembly sources of csrc/arch (.S)."""

    def build_extensions(self) -> None:
        if ".S" not in self.compiler.src_extensions:
            self.compiler.src_extensions.append(".S")
        super().build_extensions()


class BuildPy(build_py):
    """build_py that also puts fastco-as-greenlet.pth at the root of what is
    installed (site-packages), where the interpreter runs it at start.

    An editable install (pip install -e) does not install the build
    directory but the wheel that editable_wheel unpacks into install_lib:
    the file goes there too.
    """

    def run(self) -> None:
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH), preserve_mode=False)
        if getattr(self, "editable_mode", False):
            wheel_root = self.get_finalized_command("install").install_lib
            self.copy_file(PTH, os.path.join(wheel_root, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


setup(
    cffi_modules=["fastco/_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)
