from setuptools import Extension, setup

# `language` is left unset, as many C++ extensions on PyPI leave it: setuptools finds C++ from
# the `.cpp` suffix. Older setuptools (bookworm's 66) then compiles with $CC and links with $CXX;
# newer ones compile with $CXX. Either way the compiler gets a C++ source.
setup(
    ext_modules=[
        Extension(
            "cppwords._cppwords",
            sources=["src/cppwords/_cppwords.cpp"],
            extra_compile_args=["-std=c++17"],
        )
    ]
)
