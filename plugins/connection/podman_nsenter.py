# The connection of the demo's and the tests' hosts: local podman containers
# with systemd as PID 1, on the controller's own machine, as root.
#
# `podman exec` costs 0.15-0.4 s a command on this machine, and Ansible runs
# three to six commands a task (a template: home dir, temp dir, stat, file,
# clean up), so a no-op site.yml spent most of its time starting podman.
# This connection asks podman once per task for the container's PID 1 and
# then enters its namespaces with nsenter (a few ms a command), with
# pipelining as SSH has it on a real node. Files go through the same door
# (cat into the container), so paths resolve inside the container.
#
# What differs from podman exec: the commands keep the controller's cgroup
# and capabilities (they are root's commands on this machine either way), and
# get a fixed environment (that of podman exec's root).
from __future__ import annotations

import shlex
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible.utils.display import Display

DOCUMENTATION = """
    name: podman_nsenter
    short_description: Run commands in a local, running podman container through nsenter
    description:
      - Enters the namespaces and the root of a running container's first process
        (found with podman inspect) to run commands, put and fetch files; supports
        pipelining. Needs root on the machine that runs the containers.
    options:
      remote_addr:
        description: The name or ID of the container.
        default: inventory_hostname
        vars:
          - name: inventory_hostname
          - name: ansible_host
          - name: ansible_podman_host
      podman_executable:
        description: The podman executable.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
"""

display = Display()

# podman exec's environment for root in these containers
ENVIRONMENT = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
               "TERM=xterm", "container=podman")


# The two functions below are the whole door; the tests' hosts use them too
# (container_host in molecule/shared.py).
def container_pid(container: str, podman: str = "podman") -> tuple[int, str]:
    """The PID (on this machine) of a running container's first process, and the container's ID.
    Raises LookupError naming the container when it is not running."""
    found = subprocess.run([podman, "container", "inspect", "--format", "{{.State.Pid}} {{.Id}}", container],
                           capture_output=True, text=True, check=False)
    fields = found.stdout.split()
    if found.returncode != 0 or len(fields) != 2 or not fields[0].isdigit() or fields[0] == "0":
        raise LookupError(f"container {container} is not running: {(found.stderr or found.stdout).strip()}")
    return int(fields[0]), fields[1]


def nsenter_command(pid: int, argv: list[str]) -> list[str]:
    """argv run inside the namespaces and the root of process pid, with podman exec's environment."""
    return ["nsenter", f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd",
            "/usr/bin/env", "-i", *ENVIRONMENT, *argv]


class Connection(ConnectionBase):
    """Commands and files into a running podman container, through nsenter."""

    transport = "podman_nsenter"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pid: int | None = None

    def _connect(self):
        super()._connect()
        if not self._connected:
            try:
                self._pid, _ = container_pid(self.get_option("remote_addr"), self.get_option("podman_executable"))
            except LookupError as exc:
                raise AnsibleConnectionFailure(str(exc)) from exc
            self._connected = True
        return self

    def _enter(self, argv: list[str], in_data: bytes | None = None) -> tuple[int, bytes, bytes]:
        command = nsenter_command(self._pid, argv)
        display.vvv(f"NSENTER {command}", host=self.get_option("remote_addr"))
        run = subprocess.run([to_bytes(arg, errors="surrogate_or_strict") for arg in command],
                             input=in_data, stdin=None if in_data is not None else subprocess.DEVNULL,
                             capture_output=True, check=False)
        return run.returncode, run.stdout, run.stderr

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        """Run cmd in the container; in_data (a pipelined module) goes to its stdin."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        return self._enter(shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)

    @ensure_connect
    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as source:
            data = source.read()
        rc, _, stderr = self._enter(["/bin/sh", "-c", 'cat > "$1"', "put", to_native(out_path)], data)
        if rc != 0:
            raise AnsibleError(f"cannot write {out_path} in the container: {to_native(stderr).strip()}")

    @ensure_connect
    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        rc, stdout, stderr = self._enter(["/bin/cat", to_native(in_path)])
        if rc != 0:
            raise AnsibleError(f"cannot read {in_path} in the container: {to_native(stderr).strip()}")
        with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb") as target:
            target.write(stdout)

    def close(self):
        super().close()
        self._connected = False
