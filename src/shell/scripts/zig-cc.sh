# shellcheck shell=sh
# The body of pookie-ns's zig compilers, /opt/pookie-ns/zig/bin/<triplet>-cc and -c++: the zig
# toolchain's setup writes each as `#!/bin/sh`, its parameters, then this text. One program per
# compiler, because CMake, Meson and cargo want a program, not `zig cc`.
#
# Parameters (shell variables set before this text):
#   POOKIE_NS_ZIG         the zig binary (PyPI's ziglang)
#   POOKIE_NS_ZIG_TARGET  zig's target with its glibc (aarch64-linux-gnu.2.17)
#   POOKIE_NS_ZIG_DRIVER  cc or c++: which compiler this program is
#
# What it adds to `zig cc`, and why:
# - C++ whichever compiler is called. gcc and clang compile each source by its suffix, and
#   older setuptools (bookworm's 66.1) compiles `.cpp` files with $CC; `zig cc` finds no C++ headers
#   ("'algorithm' file not found"). A C++ source (or `-x c++`) goes to `zig c++`, and so does a
#   link through cc of objects or archives that use the C++ runtime (zig's libc++, linked
#   statically). A C-only extension stays with `zig cc`: no libc++ is built or linked into it.
# - Never zig's debug mode. Without an -O flag zig compiles in its Debug mode: unoptimised, with
#   UBSan traps in the code, and a debug libc++ linked into C++ extensions (setuptools links with
#   LDSHARED/LDCXXSHARED, which carry no -O). `-O2 -fno-sanitize=undefined` come first, so a
#   build's own -O (the interpreter's -O2, Meson's -O3, CMake's -O0 for a Debug build) and its
#   own -fsanitize=... win, as with gcc.
: "${POOKIE_NS_ZIG:?}" "${POOKIE_NS_ZIG_TARGET:?}" "${POOKIE_NS_ZIG_DRIVER:?}"

driver=$POOKIE_NS_ZIG_DRIVER
links=yes
after_x=
for arg in "$@"; do
    if [ -n "$after_x" ]; then
        case $arg in c++*) driver=c++ ;; esac
        after_x=
        continue
    fi
    case $arg in
    -c | -S | -E | -M | -MM) links= ;;
    -x) after_x=yes ;;
    -xc++*) driver=c++ ;;
    -*) ;;
    *.cc | *.cp | *.cxx | *.cpp | *.CPP | *.c++ | *.C | *.ii) driver=c++ ;;
    esac
done
if [ "$driver" = cc ] && [ -n "$links" ]; then
    for arg in "$@"; do
        case $arg in
        -*) ;;
        *.o | *.a | *.lo)
            # Symbols only C++ code refers to: the standard library (std::, libc++'s std::__1::),
            # operator new/delete, exceptions, guarded statics, RTTI.
            if [ -f "$arg" ] && grep -q -a -F -e _ZNSt -e _ZNKSt -e _ZSt -e _Znw -e _Zna \
                -e _ZdlPv -e _ZdaPv -e __gxx_personality_v0 -e __cxa_throw -e __cxa_begin_catch \
                -e __cxa_guard_acquire -e __cxa_pure_virtual -e __cxxabiv1 "$arg"; then
                driver=c++
                break
            fi
            ;;
        esac
    done
fi
exec "$POOKIE_NS_ZIG" "$driver" -target "$POOKIE_NS_ZIG_TARGET" -O2 -fno-sanitize=undefined "$@"
