# A Debian recipe's instance refresh: the branch's package lists, then `apt-get dist-upgrade`,
# committed as a new instance layer. A foreign instance's lists and packages may have been
# fetched natively already (apt-prefetch.sh): they are then at /run/pookie-ns/apt and only
# dpkg and the maintainer scripts run here, under QEMU.
#
# Parameters: /run/pookie-ns/branch.list (the branch's sources.list), /run/pookie-ns/apt
# (optional, the prefetched lists and archives). `apt_update` is apt-update.sh's, put before.

set -eu
rm -f /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
cp /run/pookie-ns/branch.list /etc/apt/sources.list
prefetched=/run/pookie-ns/apt
if [ -d "$prefetched/lists" ]; then
    echo "+ package lists and packages fetched natively: $(find "$prefetched/archives" -maxdepth 1 -name '*.deb' | wc -l) to install"
    find /var/lib/apt/lists -maxdepth 1 -type f ! -name lock -delete
    find "$prefetched/lists" -maxdepth 1 -type f ! -name lock -exec cp {} /var/lib/apt/lists/ \;
    find "$prefetched/archives" -maxdepth 1 -name '*.deb' -exec cp {} /var/cache/apt/archives/ \;
else
    apt_update
fi
apt-get -y -o Dpkg::Options::=--force-confold dist-upgrade
apt-get clean
