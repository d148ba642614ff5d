#!/usr/bin/env bash
# Builds the systemd test image (Debian 12 minbase + systemd as PID 1) from
# Debian's packages, because no container registry is reachable. The mirror is
# read from this machine's own apt sources. Cached: the rootfs tarball is kept
# under the cache dir and re-imported when podman lost the image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

image=${SFF_IMAGE:-localhost/secretflow-federation/debian12-systemd:latest}
# Packages the image needs to behave like a fresh Debian 12 server that
# Ansible can manage. Anything a role installs itself is deliberately absent.
packages=systemd,systemd-sysv,dbus,sudo,python3,python3-apt,ca-certificates,iproute2,procps,netcat-openbsd,tar,gzip,zstd,less
recipe_id=$(printf '%s' "bookworm $packages v1" | sha256sum | cut -c1-12)
tarball="$SFF_CACHE/images/debian12-systemd-$recipe_id.tar"

mirror() {
  local uri
  uri=$(grep -rhoE '^(URIs:|deb)\s+\S+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  [ -n "$uri" ] || { echo "build-image: no Debian mirror found in this machine's apt sources" >&2; exit 1; }
  echo "$uri"
}

if [ ! -s "$tarball" ]; then
  mkdir -p "$SFF_CACHE/images"
  root=$(mktemp -d "$SFF_CACHE/images/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "build-image: debootstrap bookworm into $root"
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "$(mirror)" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  # Containers start without a machine id; systemd makes one at boot.
  : >"$root/etc/machine-id"
  # apt in the container goes through the same (plain HTTP) mirror.
  echo "deb $(mirror) bookworm main" >"$root/etc/apt/sources.list"
  echo "deb $(mirror) bookworm-updates main" >>"$root/etc/apt/sources.list"
  # Services a real server would not have and that only slow a container boot.
  for unit in systemd-resolved.service systemd-timesyncd.service getty.target console-getty.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi

if ! podman image exists "$image" || [ "$(podman image inspect -f '{{ index .Labels "recipe" }}' "$image" 2>/dev/null)" != "$recipe_id" ]; then
  podman import --change "LABEL recipe=$recipe_id" --change 'CMD ["/sbin/init"]' \
    --change 'ENV container=podman' "$tarball" "$image" >/dev/null
fi
echo "build-image: $image ready (recipe $recipe_id)"
