# A Debian recipe's instance refresh: the branch's package lists, then `apt-get dist-upgrade`,
# committed as a new instance layer. A foreign instance's lists and packages may have been
# fetched natively already (apt-prefetch.sh): they are then at /run/pookie-ns/apt and only
# dpkg and the maintainer scripts run here, under QEMU.
#
# Parameters: /run/pookie-ns/branch.list (the branch's sources.list), /run/pookie-ns/apt
# (optional, the prefetched lists and archives).

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
    # `apt-get update`, tried three times: Debian's mirrors are sometimes mid-sync for one
    # index ("File has unexpected size ... Mirror sync in progress?", seen for bookworm-security
    # armhf). When the last try still fails, apt has kept every index it fetched and the old one
    # of the failed, so the upgrade goes on from those, and the log says so.
    try=1
    until apt-get update; do
        if [ "$try" = 3 ]; then
            echo "pookie-ns: apt-get update failed 3 times (a mirror mid-sync?): upgrading from the package lists it could fetch" >&2
            break
        fi
        try=$((try + 1))
        sleep 10
    done
fi
apt-get -y -o Dpkg::Options::=--force-confold dist-upgrade
apt-get clean
