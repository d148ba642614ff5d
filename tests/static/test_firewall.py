"""The firewall's table and the port gate agree on the gate's sets."""
from __future__ import annotations

import re
from pathlib import Path

from sfnode import gate

TEMPLATE = Path(__file__).resolve().parents[2] / "roles/firewall/templates/firewall.nft.j2"


def test_the_table_declares_the_sets_the_gate_fills_and_its_rules_read_them() -> None:
    text = TEMPLATE.read_text()
    declared = dict(re.findall(r"set (\w+) \{\s*type ([\w .]+?)\n", text))
    assert declared[gate.BUSY_SET] == "inet_service"
    assert declared[gate.PEER_SETS[4]] == "inet_service . ipv4_addr"
    assert declared[gate.PEER_SETS[6]] == "inet_service . ipv6_addr"
    rules = text[text.rindex("chain input"):]
    # the job's peers are let in before the busy ports are dropped, and both before the
    # federation-wide rule
    order = [rules.index(f"@{gate.PEER_SETS[4]} accept"), rules.index(f"@{gate.PEER_SETS[6]} accept"),
             rules.index(f"@{gate.BUSY_SET} counter drop"), rules.index("ip saddr @peers4")]
    assert order == sorted(order)
    # a reload never deletes the table (that would drop the elements of running jobs)
    assert "delete table" not in text


def test_a_tls_node_drops_a_connection_whose_first_data_is_not_a_tls_record() -> None:
    text = TEMPLATE.read_text()
    chain = text[text.rindex("chain input"):]
    tls = chain.index("@ih,0,16 0x1603 ct mark set")
    drop = chain.index('@ih,0,16 != 0x1603 counter drop comment "clear text to a TLS port"')
    # before the rule that accepts every packet of an established connection
    assert tls < drop < chain.index("ct state established,related accept")
    assert "{% if node_tls_enabled | bool %}" in chain[:tls]
