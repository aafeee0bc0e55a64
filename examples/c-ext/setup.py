from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fastmath._fastmath",
            sources=["src/fastmath/_fastmath.c"],
            extra_compile_args=["-O2", "-Wall", "-Werror"],
        )
    ]
)
