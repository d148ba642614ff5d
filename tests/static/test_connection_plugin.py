"""The test and demo containers' connection: which container a host's commands go to."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

PLUGINS = Path(__file__).resolve().parents[2] / "plugins" / "connection"


@pytest.fixture(scope="module")
def connection_class():
    connection_loader.add_directory(str(PLUGINS))
    return connection_loader.get("podman_nsenter", PlayContext(), None, class_only=True)


def remote_addr(connection_class, variables: dict[str, str]) -> str:
    connection = connection_class(PlayContext(), None)
    connection.set_options(var_options=variables)
    return connection.get_option("remote_addr")


def test_ansible_host_names_the_container(connection_class):
    # The demo's hosts are alice and bob, in containers sff-demo-alice and sff-demo-bob.
    assert remote_addr(connection_class, {"inventory_hostname": "alice",
                                          "ansible_host": "sff-demo-alice"}) == "sff-demo-alice"


def test_podman_host_names_the_container(connection_class):
    assert remote_addr(connection_class, {"inventory_hostname": "alice",
                                          "ansible_podman_host": "c1"}) == "c1"


def test_without_ansible_host_the_inventory_name_is_the_container(connection_class):
    # molecule's hosts are named after their containers
    assert remote_addr(connection_class, {"inventory_hostname": "sff-fed-alice"}) == "sff-fed-alice"
