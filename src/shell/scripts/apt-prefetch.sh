# The download half of a foreign instance's refresh, run natively: the host-arch base OS's apt
# (same recipe, same suite) fetches the branch's package lists and the upgrade's packages for
# the foreign instance, whose root is mounted read-only at /target (apt reads its dpkg status
# and its keyring there), into /run/pookie-ns/apt. The instance's own refresh then copies them
# in and runs only dpkg and the maintainer scripts under QEMU: apt's HTTP, hashing and index
# decompression cost ~4x more emulated (bench/README.md, "First refresh of a foreign instance").
#
# Parameters (environment):
#   POOKIE_NS_APT_ARCH   the instance's Debian arch (arm64)

set -eu
: "${POOKIE_NS_APT_ARCH:?}"
out=/run/pookie-ns/apt
mkdir -p "$out/lists/partial" "$out/archives/partial"
# The instance's lists, when it has some, make the fetch incremental (pdiffs, unchanged files).
if [ -d /target/var/lib/apt/lists ]; then
    find /target/var/lib/apt/lists -maxdepth 1 -type f ! -name lock -exec cp -p {} "$out/lists/" \;
fi
set -- -o "APT::Architecture=$POOKIE_NS_APT_ARCH" -o "APT::Architectures::=$POOKIE_NS_APT_ARCH" \
    -o Dir::State::status=/target/var/lib/dpkg/status \
    -o "Dir::State::Lists=$out/lists" -o "Dir::Cache::Archives=$out/archives" \
    -o Dir::Etc::SourceList=/run/pookie-ns/branch.list -o Dir::Etc::SourceParts=/nonexistent \
    -o Dir::Etc::Trusted=/target/etc/apt/trusted.gpg \
    -o Dir::Etc::TrustedParts=/target/etc/apt/trusted.gpg.d \
    -o Debug::NoLocking=true
echo "+ apt for $POOKIE_NS_APT_ARCH, run natively: update"
# As in the emulated refresh, a failed index after three tries leaves the old one (apt-update.sh).
apt_update "$@"
echo "+ apt for $POOKIE_NS_APT_ARCH, run natively: dist-upgrade --download-only"
apt-get "$@" -y --download-only dist-upgrade
