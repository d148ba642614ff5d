#!/usr/bin/env bash
# Builds the runtime test image: the systemd test image with the pinned
# interpreter and the SecretFlow venv already installed by the roles, so
# that scenarios which do not test the install (the federation) converge in
# minutes. The default scenario keeps installing from scratch. Built once per
# recipe (the base image, the lock, the stand-in interpreter and the roles
# that install them) and kept by podman; rebuilt when the recipe changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cd "$SFF_ROOT"
# Started from molecule's dependency step: its settings are not ours.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(ANSIBLE|MOLECULE)_' || true)
export PATH=$SFF_ROOT/.venv/bin:$PATH

base=localhost/secretflow-federation/debian12-systemd:latest
image=${SFF_RUNTIME_IMAGE:-localhost/secretflow-federation/debian12-runtime:latest}
name=sff-runtime-build
network=sff-runtime-build
vars=$SFF_CACHE/python/standin-vars.yml

"$here/build-image.sh" >/dev/null
"$here/build-python-standin.sh" >/dev/null
# Of the scenario's molecule.yml, only the group vars go into the image (its
# hosts' own vars and the test sequence do not).
recipe=$( { podman image inspect -f '{{ index .Labels "recipe" }}' "$base"
            cat "$vars" "$0" molecule/federation/runtime-image.yml
            python3 -c 'import sys, yaml; print(yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["provisioner"]["inventory"]["group_vars"], sort_keys=True))' \
              molecule/federation/molecule.yml
            find roles/common roles/python roles/secretflow_runtime roles/node/defaults -type f | LC_ALL=C sort | xargs cat
          } | sha256sum | cut -c1-12)
if [ "$(podman image inspect -f '{{ index .Labels "recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  echo "build-runtime-image: $image ready (recipe $recipe)"
  exit 0
fi

cleanup() {
  podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
  podman network rm -f "$network" >/dev/null 2>&1 || true
  [ -z "$work" ] || rm -rf "$work"
}
work=
trap cleanup EXIT
cleanup
work=$(mktemp -d)

# The wheelhouse mounted read-only where the federation scenario mounts it.
ansible-playbook playbooks/wheelhouse.yml -e "@$vars" >"$work/wheelhouse.log" 2>&1 \
  || { tail -n 30 "$work/wheelhouse.log" >&2; exit 1; }
podman network create "$network" >/dev/null
podman run -d --name "$name" --network "$network" --systemd=always --shm-size=2g \
  -v "$SFF_CACHE/wheelhouse:/srv/wheelhouses:ro" "$base" /sbin/init >/dev/null
# The builder's inventory: the federation scenario's group vars (its install
# source among them), so the venv is installed as that scenario installs it.
python3 - "$work/hosts.yml" "$name" <<'PY'
import sys
import yaml
scenario = yaml.safe_load(open("molecule/federation/molecule.yml"))
group_vars = scenario["provisioner"]["inventory"]["group_vars"]["federation"]
inventory = {"federation": {"vars": {**group_vars, "ansible_connection": "containers.podman.podman"},
                            "hosts": {sys.argv[2]: {"node_id": "builder"}}}}
open(sys.argv[1], "w").write(yaml.safe_dump(inventory))
PY
echo "build-runtime-image: installing the runtime into $name (several minutes, once per recipe)"
t0=$SECONDS
ANSIBLE_ERROR_ON_MISSING_HANDLER=false ANSIBLE_LOCALHOST_WARNING=false \
  ansible-playbook molecule/federation/runtime-image.yml -i "$work/hosts.yml" -e "@$vars" \
  --tags python_preflight,python_install,secretflow_runtime_preflight,secretflow_runtime_install \
  >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log" >&2; exit 1; }
# A fresh machine id for every container started from the image.
podman exec "$name" sh -c ': >/etc/machine-id; apt-get clean'
podman stop -t 10 "$name" >/dev/null
previous=$(podman image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
podman commit -q --change "LABEL recipe=$recipe" --change 'CMD ["/sbin/init"]' "$name" "$image" >/dev/null
# The image of the previous recipe (about 9 GB) goes, unless a container still uses it;
# so do earlier ones left untagged when a container used them then.
[ -z "$previous" ] || podman rmi "$previous" >/dev/null 2>&1 || true
podman image prune -f --filter label=recipe >/dev/null 2>&1 || true
echo "build-runtime-image: $image built in $((SECONDS - t0)) s (recipe $recipe)"
