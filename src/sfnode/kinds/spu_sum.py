"""Kind ``spu_sum``: each party contributes one integer, SPU adds them and reveals the sum.

Params: ``values`` (one integer per party; each party's node reads only its
own) and ``protocol`` (an SPU protocol, default SEMI2K).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

from sfnode.kinds._kind import Kind, ParamCheck
from sfnode.problems import MISSING, is_int
from sfnode.sfargs import JobContext, spu_device

# The SPU protocols offered, each with the number of parties it needs (None: any).
SPU_PROTOCOLS: dict[str, int | None] = {"SEMI2K": None, "ABY3": 3, "CHEETAH": 2}
DEFAULT_SPU_PROTOCOL = "SEMI2K"
# secretflow does not enable jax x64, so plaintext ints enter and leave SPU as int32.
SPU_SUM_LIMIT = 2**31 - 1


def validate(params: dict[str, Any], check: ParamCheck) -> dict[str, Any]:
    check.known_params(params, ("values", "protocol"))
    protocol = params.get("protocol", DEFAULT_SPU_PROTOCOL)
    _check_protocol(protocol, check)
    return {"values": _check_values(params.get("values", MISSING), check), "protocol": protocol}


def _check_protocol(protocol: Any, check: ParamCheck) -> None:
    if not check.one_of("params.protocol", protocol, tuple(SPU_PROTOCOLS),
                        "is not an SPU protocol"):
        return
    needs, has = SPU_PROTOCOLS[protocol], len(check.party_ids)
    if needs is not None and has != needs:
        flexible = ", ".join(p for p, n in SPU_PROTOCOLS.items() if n is None)
        check.add("params.protocol", protocol, f"needs exactly {needs} parties, the job has "
                  f"{has}; expected {flexible} (any number of parties) or {needs} parties",
                  f"exactly {needs} parties")


def _check_values(values: Any, check: ParamCheck) -> dict[str, int]:
    ids = check.party_ids
    clean: dict[str, int] = {}
    if not isinstance(values, Mapping):
        check.add("params.values", values, f"is not valid; expected an object with one "
                  f"integer per party ({', '.join(ids)})", "{party: int}")
        return clean
    valid = f"an integer in -{SPU_SUM_LIMIT}..{SPU_SUM_LIMIT}"
    for pid in ids:
        value = values.get(pid, MISSING)
        if not is_int(value) or abs(value) > SPU_SUM_LIMIT:
            check.add(f"params.values.{pid}", value, f"is not valid; expected {valid}", valid)
        else:
            clean[pid] = value
    if len(clean) == len(ids) and sum(abs(v) for v in clean.values()) > SPU_SUM_LIMIT:
        check.add("params.values", values, f"could overflow: the sum of absolute values "
                  f"exceeds {SPU_SUM_LIMIT}; expected values whose sum fits a 32-bit "
                  "integer (SPU reveals int32 here)", f"|sum| <= {SPU_SUM_LIMIT}")
    check.of_parties("params.values", values)
    return clean


def _as_int32(value: int) -> Any:
    import numpy as np

    return np.int32(value)


def _add_all(*values: Any) -> Any:
    return functools.reduce(operator.add, values)


def run(sf: Any, ctx: JobContext) -> dict[str, Any]:
    """Each party contributes only its own value; SPU adds them and reveals the sum."""
    params = ctx.spec.params
    protocol = params["protocol"]
    ids = ctx.spec.party_ids
    spu = spu_device(sf, ctx, protocol)
    own_value = params["values"][ctx.self_id]
    shares = []
    for pid in ids:
        # The argument is only evaluated where the PYU lives: 0 elsewhere is never used.
        value = own_value if pid == ctx.self_id else 0
        shares.append(sf.PYU(pid)(_as_int32)(value).to(spu))
    total = sf.reveal(spu(_add_all)(*shares))
    return {"sum": int(total), "protocol": protocol, "parties": ids}


KIND = Kind(validate=validate, run=run, uses_spu=True)
