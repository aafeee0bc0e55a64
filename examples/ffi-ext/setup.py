import shlex
import subprocess

from setuptools import Extension, setup


def pkg_config(*args):
    """libffi's flags from pkg-config: in a cross build, PKG_CONFIG_SYSROOT_DIR and
    PKG_CONFIG_LIBDIR make them the target's (under /sysroot)."""
    return shlex.split(subprocess.check_output(["pkg-config", *args, "libffi"], text=True))


setup(
    ext_modules=[
        Extension(
            "fficall._fficall",
            sources=["src/fficall/_fficall.c"],
            extra_compile_args=["-O2", "-Wall", "-Werror", *pkg_config("--cflags")],
            extra_link_args=pkg_config("--libs"),
        )
    ]
)
