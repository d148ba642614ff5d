#!/usr/bin/env bash
# CPython 3.10.16 cannot be downloaded on the test machines. This packs the
# machine's own CPython 3.10 (pyenv) into the same layout as the pinned
# python-build-standalone archive (python/bin/python3.10, relocatable), so the
# python role runs its real path with only version, source and checksum
# overridden. Prints nothing but the path of a vars file for the scenarios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"

find_python310() {
  if command -v pyenv >/dev/null 2>&1; then
    local p; p=$(pyenv prefix 3.10 2>/dev/null || pyenv prefix "$(pyenv versions --bare | grep -E '^3\.10\.' | tail -n1)" 2>/dev/null || true)
    [ -x "$p/bin/python3.10" ] && { echo "$p"; return; }
  fi
  for p in /root/.pyenv/versions/3.10.*; do [ -x "$p/bin/python3.10" ] && { echo "$p"; return; }; done
  echo "build-python-standin: no CPython 3.10 found (pyenv versions 3.10.x); it is the stand-in for 3.10.16" >&2
  exit 1
}

src=$(find_python310)
version=$("$src/bin/python3.10" -c 'import platform; print(platform.python_version())')
arch=$(uname -m)
out="$SFF_CACHE/python"
archive="$out/cpython-$version-$arch-standin.tar.gz"
vars="$out/standin-vars.yml"
mkdir -p "$out"
if [ ! -s "$archive" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -a "$src" "$work/python"
  # pyenv's build has an absolute RPATH to its own prefix; point it next door.
  patchelf --set-rpath '$ORIGIN/../lib' "$work/python/bin/python3.10"
  rm -rf "$work/python/lib/python3.10/test" "$work/python/lib/python3.10/site-packages"/*
  find "$work/python" -name __pycache__ -prune -exec rm -rf {} +
  tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -czf "$archive.tmp" python
  mv "$archive.tmp" "$archive"
fi
sum=$(sha256sum "$archive" | cut -d' ' -f1)
cat >"$vars.tmp" <<VARS
# Written by scripts/build-python-standin.sh: the test stand-in for
# the pinned CPython archive (see docs/testing.md).
python_version: "$version"
python_archive_local_path: "$archive"
python_archive_checksums:
  $arch: "$sum"
VARS
mv "$vars.tmp" "$vars"
echo "$vars"
