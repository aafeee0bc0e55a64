# Rust for a build of a Rust extension (maturin, setuptools-rust), run once and cached as a layer
# over the toolchain's in the build machine's instance: the suite's
# own rustc and cargo, and the target's Rust standard library from the same suite
# (libstd-rust-dev:<arch>, co-installable through Debian's multiarch; rustc finds it under
# /usr/lib/rustlib/<rust target>/). No rustup, nothing from outside the Debian archive; the
# version is the suite's (forky: 1.97, bookworm: 1.63).
#
# Parameters (environment):
#   POOKIE_NS_RUST_DEBARCH   the target's Debian arch (arm64)
#   POOKIE_NS_RUST_TARGET    the target's Rust triple (aarch64-unknown-linux-gnu)

set -eu
: "${POOKIE_NS_RUST_DEBARCH:?}" "${POOKIE_NS_RUST_TARGET:?}"

native=$(dpkg --print-architecture)
std="libstd-rust-dev"
if [ "$POOKIE_NS_RUST_DEBARCH" != "$native" ]; then
    dpkg --add-architecture "$POOKIE_NS_RUST_DEBARCH"
    std="libstd-rust-dev:$POOKIE_NS_RUST_DEBARCH"
fi
echo "+ rust: rustc, cargo and $std from the suite"
apt-get update -qq
apt-get install -y --no-install-recommends rustc cargo "$std"
if [ ! -d "/usr/lib/rustlib/$POOKIE_NS_RUST_TARGET/lib" ]; then
    echo "pookie-ns: $std installed no /usr/lib/rustlib/$POOKIE_NS_RUST_TARGET/lib" >&2
    exit 1
fi
rustc --version
