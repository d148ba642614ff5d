#!/usr/bin/env bash
# A local two-party federation: alice and bob as Debian 12 systemd
# containers on a podman network of their own, provisioned by site.yml
# exactly as real hosts are, then a PSI between them through job.yml.
#   scripts/demo.sh up     build, provision, run the PSI, print the result
#   scripts/demo.sh down   remove the containers, the network and build/demo
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/env.sh"
cd "$SFF_ROOT"

image=localhost/secretflow-federation/debian12-systemd:latest
network=sff-demo
parties=(alice bob)
out=$SFF_ROOT/build/demo

down() {
  for p in "${parties[@]}"; do podman rm -f -t 5 "sff-demo-$p" >/dev/null 2>&1 || true; done
  podman network rm -f "$network" >/dev/null 2>&1 || true
  rm -rf "$out"
  echo "demo: removed the containers, the network and build/demo"
}

up() {
  "$here/setup.sh"
  export PATH=$SFF_ROOT/.venv/bin:$PATH
  mkdir -p "$out"
  podman network exists "$network" || podman network create "$network" >/dev/null
  for p in "${parties[@]}"; do
    podman container exists "sff-demo-$p" || podman run -d --name "sff-demo-$p" --hostname "$p" \
      --network "$network" --systemd=always --shm-size=2g --cap-add NET_ADMIN "$image" /sbin/init >/dev/null
  done

  # The inventory of this federation: the same shape as inventories/example,
  # with podman instead of SSH as the connection.
  cat >"$out/hosts.yml" <<YAML
federation:
  vars:
    ansible_connection: containers.podman.podman
    node_ip: "{{ ansible_facts['default_ipv4']['address'] }}"
  hosts:
    alice: {ansible_host: sff-demo-alice}
    bob: {ansible_host: sff-demo-bob}
YAML

  echo "demo: provisioning alice and bob with site.yml (the first time takes several minutes)"
  ansible-playbook site.yml -i "$out/hosts.yml" -e "@$SFF_CACHE/python/standin-vars.yml"

  # Generated ids: alice has 0..49999, bob 25000..74999, so 25000 are shared.
  python3 - "$out" <<'PY'
import sys
out = sys.argv[1]
for party, (low, high) in {"alice": (0, 50000), "bob": (25000, 75000)}.items():
    with open(f"{out}/{party}.csv", "w") as f:
        f.write("customer_id,segment\n")
        f.writelines(f"c{i:07d},{i % 5}\n" for i in range(low, high))
PY
  for p in "${parties[@]}"; do
    ansible-playbook playbooks/upload.yml -i "$out/hosts.yml" -l "$p" -e "src=$out/$p.csv" -e dest=demo/customers.csv
  done

  job_id="psi-demo-$(date +%Y%m%d%H%M%S)"
  cat >"$out/psi.json" <<JSON
{"job_id": "$job_id", "kind": "psi", "parties": ["alice", "bob"], "slot": 0,
 "params": {"inputs": {"alice": {"path": "demo/customers.csv", "keys": ["customer_id"]},
                       "bob": {"path": "demo/customers.csv", "keys": ["customer_id"]}},
            "receiver": "alice", "protocol": "PROTOCOL_RR22", "broadcast_result": true}}
JSON
  echo "demo: running PSI $job_id through playbooks/job.yml"
  ansible-playbook playbooks/job.yml -i "$out/hosts.yml" -e "job_spec=$out/psi.json"
  echo
  echo "demo: expected 50000 ids on each side and 25000 in the intersection (see the results above)."
  echo "demo: the output file is on alice: podman exec sff-demo-alice head /var/lib/secretflow/jobs/$job_id/psi_output.csv"
  echo "demo: try 'podman exec sff-demo-alice sfnode health'; remove everything with: make demo-down"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
