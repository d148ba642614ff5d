# Shared settings of the demo and test scripts; sourced, not run.
SFF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SFF_ROOT
export SFF_CACHE=${SFF_CACHE:-$HOME/.cache/secretflow-federation}
# podman here needs runc and no default ulimits (docs/testing.md).
export CONTAINERS_CONF=$SFF_ROOT/scripts/containers.conf
