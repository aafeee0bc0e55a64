# The Rust extension, which setuptools-rust builds with cargo (for CARGO_BUILD_TARGET when that is
# set, as in a cross build). py_limited_api=True: the crate is built with PyO3's abi3-py39
# feature (Cargo.toml), and setup.cfg's [bdist_wheel] py_limited_api = cp39 tags the wheel
# cp39-abi3, one wheel per arch for every CPython from 3.9 on.
from setuptools import setup
from setuptools_rust import Binding, RustExtension

setup(
    rust_extensions=[
        RustExtension(
            "rustsum._rustsum",
            path="Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api=True,
        )
    ],
    zip_safe=False,
)
