#!/usr/bin/env bash
# A local two-party federation of two organisations: alice and bob as
# Debian 12 systemd containers on a podman network of their own. Each
# organisation provisions only its own node with site.yml, from its own
# inventory and secrets, and trusts the other through the card (address,
# ports, certificate) that the other's site.yml wrote; then each submits its
# own side of a PSI through job.yml, over mutual TLS.
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

# Each organisation's own controller state: its inventory (its own host and
# the cards it received), its secrets directory and the card site.yml writes.
inventory() {
  local p=$1 cards=$2 peer
  peer=$([ "$p" = alice ] && echo bob || echo alice)
  cat >"$out/$p/hosts.yml" <<YAML
# $p's organisation: its own node only; the peer is known by its card.
federation:
  vars:
    ansible_connection: podman_nsenter
    node_ip: "{{ ansible_facts['default_ipv4']['address'] }}"
    redis_password_dir: "{{ inventory_dir }}/secrets"
    node_peer_cards: [$cards]
    # What $p lets its peer do on its node: PSI jobs and pipelines of SecretFlow
    # components on the files under demo/ and bc/, the result revealed to that peer too.
    job_channel_policy:
      $peer: {kinds: {psi: accept, ping: accept, pipeline: accept}, datasets: ["demo/*", "bc/*"], reveal_to: [$peer]}
  hosts:
    $p: {ansible_host: sff-demo-$p}
YAML
}

# Runs one playbook for every organisation at once, each on its own
# inventory; each one's output goes to build/demo/<party>/<name>.log and its
# recap is printed.
each_org() {
  local name=$1; shift
  local -A pids=()
  local p rc=0
  for p in "${parties[@]}"; do
    ansible-playbook -i "$out/$p/hosts.yml" "$@" >"$out/$p/$name.log" 2>&1 &
    pids[$p]=$!
  done
  for p in "${parties[@]}"; do
    if wait "${pids[$p]}"; then echo "demo: $p: $name ok"
    else rc=1; echo "demo: $p: $name FAILED (build/demo/$p/$name.log)"; tail -n 30 "$out/$p/$name.log"; fi
    sed -n '/PLAY RECAP/,$p' "$out/$p/$name.log" | grep ' : ok=' | sed "s/^/demo: $p:   /" || true
  done
  return "$rc"
}

up() {
  "$here/setup.sh"
  export PATH=$SFF_ROOT/.venv/bin:$PATH
  for p in "${parties[@]}"; do mkdir -p "$out/$p/received-cards"; done
  podman network exists "$network" || podman network create "$network" >/dev/null
  for p in "${parties[@]}"; do
    podman container exists "sff-demo-$p" || podman run -d --name "sff-demo-$p" --hostname "$p" \
      --network "$network" --systemd=always --shm-size=2g --cap-add NET_ADMIN "$image" /sbin/init >/dev/null
  done

  # alice and bob are two organisations: each provisions only its own node,
  # from its own inventory, and knows the other only by its card.
  inventory alice ""
  inventory bob ""
  echo "demo: alice and bob each provision their own node with site.yml (the first time takes several minutes)"
  each_org site site.yml -e "@$SFF_CACHE/python/standin-vars.yml"

  # The cards site.yml wrote (id, address, ports, certificate; no secret)
  # are what the organisations send each other.
  cp "$out/alice/party-cards/alice.yml" "$out/bob/received-cards/"
  cp "$out/bob/party-cards/bob.yml" "$out/alice/received-cards/"
  inventory alice '"{{ inventory_dir }}/received-cards/bob.yml"'
  inventory bob '"{{ inventory_dir }}/received-cards/alice.yml"'
  echo "demo: cards exchanged; each runs site.yml again to trust the other (mutual TLS, firewall open to the peer)"
  each_org site-peer site.yml -e "@$SFF_CACHE/python/standin-vars.yml"

  # Generated ids: alice has 0..49999, bob 25000..74999, so 25000 are shared.
  python3 - "$out" <<'PY'
import sys
out = sys.argv[1]
for party, (low, high) in {"alice": (0, 50000), "bob": (25000, 75000)}.items():
    with open(f"{out}/{party}/customers.csv", "w") as f:
        f.write("customer_id,segment\n")
        f.writelines(f"c{i:07d},{i % 5}\n" for i in range(low, high))
PY
  for p in "${parties[@]}"; do
    ansible-playbook playbooks/upload.yml -i "$out/$p/hosts.yml" -e "src=$out/$p/customers.csv" \
      -e dest=demo/customers.csv >"$out/$p/upload.log" 2>&1 \
      || { tail -n 30 "$out/$p/upload.log"; exit 1; }
    echo "demo: $p uploaded its customers to its own node"
  done

  job_id="psi-demo-$(date +%Y%m%d%H%M%S)"
  cat >"$out/psi.json" <<JSON
{"job_id": "$job_id", "kind": "psi", "parties": ["alice", "bob"], "slot": 0,
 "params": {"inputs": {"alice": {"path": "demo/customers.csv", "keys": ["customer_id"]},
                       "bob": {"path": "demo/customers.csv", "keys": ["customer_id"]}},
            "receiver": "alice", "protocol": "PROTOCOL_RR22", "broadcast_result": true}}
JSON
  echo "demo: PSI $job_id: alice proposes it to bob over the job channel (playbooks/propose.yml, alice's inventory only);"
  echo "demo: bob's node decides by bob's policy (job_channel_policy) and runs its side; alice runs hers"
  local ok=0
  ansible-playbook playbooks/propose.yml -i "$out/alice/hosts.yml" -e "job_spec=$out/psi.json" \
    >"$out/alice/propose.log" 2>&1 || ok=1
  awk '/^TASK \[Decisions, results and states by party\]/ {on=1; next} /^TASK / {on=0} on && NF' "$out/alice/propose.log"
  [ "$ok" -eq 0 ] || { tail -n 30 "$out/alice/propose.log"; exit 1; }
  echo "demo: expected 50000 ids on each side and 25000 in the intersection (see the results above)."
  lr_pipeline
  echo "demo: what each node recorded: podman exec sff-demo-bob sfnode audit --job $job_id"
  echo
  echo "demo: the output file is on alice: podman exec sff-demo-alice head /var/lib/secretflow/jobs/$job_id/psi_output.csv"
  echo "demo: each organisation's state is in build/demo/<party>/ (inventory, secrets, its card, the card it received)"
  echo "demo: try 'podman exec sff-demo-alice sfnode health'; remove everything with: make demo-down"
}

# Vertical logistic regression between the two organisations, the example of
# docs/pipelines.md: scikit-learn's breast-cancer data (in the nodes' venv),
# 15 features and the label at alice, the other 15 at bob, each side's rows in
# its own order, a few rows on one side only (examples/breast_cancer.py);
# alice proposes examples/pipelines/lr.json: PSI -> split -> statistics ->
# standardise -> SS-SGD -> predict -> evaluate.
lr_pipeline() {
  local venv=/opt/secretflow/venv
  podman exec sff-demo-alice sh -c 'rm -rf /tmp/bc && mkdir /tmp/bc'
  podman exec -i sff-demo-alice "$venv/bin/python" - /tmp/bc <examples/breast_cancer.py
  for p in "${parties[@]}"; do
    podman exec sff-demo-alice cat "/tmp/bc/$p.csv" >"$out/$p/bc.csv"
    ansible-playbook playbooks/upload.yml -i "$out/$p/hosts.yml" -e "src=$out/$p/bc.csv" \
      -e "dest=bc/$p.csv" >"$out/$p/upload-bc.log" 2>&1 || { tail -n 30 "$out/$p/upload-bc.log"; exit 1; }
  done
  local lr_id="lr-demo-$(date +%Y%m%d%H%M%S)"
  python3 -c 'import json, sys; spec = json.load(open(sys.argv[1])); spec["job_id"] = sys.argv[2]; print(json.dumps(spec))' \
    examples/pipelines/lr.json "$lr_id" >"$out/lr.json"
  echo "demo: pipeline $lr_id: alice proposes vertical LR on the breast-cancer data (examples/pipelines/lr.json)"
  ansible-playbook playbooks/propose.yml -i "$out/alice/hosts.yml" -e "job_spec=$out/lr.json" \
    >"$out/alice/propose-lr.log" 2>&1 || { tail -n 30 "$out/alice/propose-lr.log"; exit 1; }
  for p in "${parties[@]}"; do
    podman exec "sff-demo-$p" cat "/var/lib/secretflow/jobs/$lr_id/result.json" | python3 -c "
import json, sys
result = json.load(sys.stdin)
report = next(s for s in result['result']['steps'] if s['id'] == 'eval')['outputs']['report']['report']['SummaryReport']
print(f\"demo: $p: vertical LR on the test split: AUC {report['auc']:.4f}, KS {report['ks']:.4f}, {report['total_samples']} rows, {result['seconds']:.0f} s\")"
  done
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
