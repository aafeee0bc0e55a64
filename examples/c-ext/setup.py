from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fastmath._fastmath",
            sources=["src/fastmath/_fastmath.c"],
            # No -O here: the optimisation and NDEBUG come from the interpreter's flags, and
            # _fastmath.c refuses to compile without them.
            extra_compile_args=["-Wall", "-Werror"],
        )
    ]
)
