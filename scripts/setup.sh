#!/usr/bin/env bash
# Prepares this machine (Debian 12, root) for the demo and the tests: the
# Debian packages, the controller venv, the systemd test image and the
# stand-in Python archive. Every step is skipped when already done.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

apt_packages=(podman runc netavark aardvark-dns uidmap slirp4netns iptables debootstrap patchelf dpkg-dev
              python3 python3-venv ca-certificates make tar)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=$SFF_ROOT/.venv
stamp=$venv/.requirements.sha256
want=$(cat "$SFF_ROOT/requirements/controller.txt" "$SFF_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: controller venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$SFF_ROOT/requirements/controller.txt"
  # The worker app, for its unit tests and the sfnode command on the controller.
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$SFF_ROOT"
  echo "$want" >"$stamp"
fi

"$here/build-image.sh"
"$here/build-python-standin.sh" >/dev/null
echo "setup: done"
