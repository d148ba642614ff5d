"""A pipeline's steps, run with SecretFlow's component entry (``comp_eval``).

Only the runner imports this module: it imports SecretFlow's component library.
Every party builds the same ``NodeEvalParam`` for a step from the validated
spec (attributes typed by the catalogue, inputs in the component's order,
output URIs ``<job>/steps/<step>/<output>``) and runs it against its own
storage root, JOB_DIR: a step's outputs land in this party's work dir, the
inputs it owns are links in ``<job>/inputs`` to files under DATA_DIR, and a
model kept by an earlier job is read where that job wrote it.

The component entry starts SecretFlow without Ray for each step (rayfed's
brpc link on the job's rayfed port, SPU's links on its SPU port) and shuts it
down after. It never turns TLS on by itself: :func:`require_tls` makes both
kinds of link mutual TLS with this node's certificate and the job's trust
bundle, as the other kinds' links are.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from sfnode import catalogue
from sfnode.components import resolve
from sfnode.jobdir import OUTPUTS_DIR, output_record, write_json_atomic, write_text_atomic
from sfnode.sfargs import (LINK_SEND_TIMEOUT_MS, SPU_FIELD, SPU_TLS_VERIFY_DEPTH, JobContext,
                           spu_link_desc, tls_files)

INPUTS_DIR = "inputs"
STEPS_DIR = "steps"
STEPS_NAME = "steps.json"
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
# rayfed's error in a step is raised here, not turned into os._exit(1) (what SecretFlow's
# fed layer does unless this is set): the runner then records which step failed.
NO_EXIT_FLAG = "SF_UT_DO_NOT_EXIT_ENV_FLAG"


class StepFailed(RuntimeError):
    """A step of the pipeline failed on this party."""


def require_tls(tls: Mapping[str, str]) -> None:
    """Make the component entry's links mutual TLS (it passes no TLS settings on its own).

    - rayfed: the entry calls ``init`` (imported into its module by name) without
      ``tls_config``; it gets this node's.
    - rayfed's brpc link fills its TLS options from ``tls_config`` but never sets
      ``enable_ssl``: a subclass of its proxy does.
    - SPU: the device config the entry builds has no ``tls_opts``; this party's node gets
      them (each party reads only its own node's).
    """
    import secretflow.component.core.context as sf_context  # noqa: PLC0415
    import secretflow.component.core.entry as sf_entry  # noqa: PLC0415
    import secretflow.distributed.fed.api as fed_api  # noqa: PLC0415
    from secretflow.distributed.fed.proxy.brpc_link.brpc_link import BrpcLinkProxy  # noqa: PLC0415

    class TlsBrpcLinkProxy(BrpcLinkProxy):  # type: ignore[misc, valid-type]
        def __init__(self, addresses: Any, self_party: str, job_name: str,
                     tls_config: Any = None, proxy_config: Any = None) -> None:
            if not tls_config:
                raise RuntimeError("sfnode: a component link without TLS on a TLS node")
            # brpc's own protocol, as SPU's links have it: with the entry's http and pooled
            # connections, a step between two containers stalled with both sides waiting to
            # receive (seen in a PSI and in SS-SGD training). Its addresses carry no scheme.
            addresses = {party: address.removeprefix("http://") for party, address in addresses.items()}
            # A send that waits longer for its answer than LINK_SEND_TIMEOUT_MS is sent
            # again (the entry's 300 s made a request stuck in TLS a 300 s pause).
            super().__init__(addresses, self_party, job_name, tls_config,
                             {**(proxy_config or {}), "brpc_channel_protocol": "baidu_std",
                              "brpc_channel_connection_type": "single",
                              "timeout_in_ms": LINK_SEND_TIMEOUT_MS})
            self._desc.enable_ssl = True
            self._desc.server_ssl_opts.verify.verify_depth = SPU_TLS_VERIFY_DEPTH
            self._desc.client_ssl_opts.verify.verify_depth = SPU_TLS_VERIFY_DEPTH

    fed_api.BrpcLinkProxy = TlsBrpcLinkProxy

    tls_config = {"cert": tls["cert"], "key": tls["key"], "ca_cert": tls["ca_cert"]}
    original_init = sf_entry.init

    @functools.wraps(original_init)
    def init(*args: Any, **kwargs: Any) -> Any:
        kwargs["tls_config"] = dict(tls_config)
        return original_init(*args, **kwargs)

    sf_entry.init = init

    original_extract = sf_context.extract_device_config
    ssl_opts = {"certificate_path": tls["cert"], "private_key_path": tls["key"],
                "ca_file_path": tls["ca_cert"], "verify_depth": SPU_TLS_VERIFY_DEPTH}

    @functools.wraps(original_extract)
    def extract_device_config(cluster_config: Any) -> Any:
        spu_configs, heu_config = original_extract(cluster_config)
        me = cluster_config.private_config.self_party
        for config in (spu_configs or {}).values():
            for node in config["cluster_def"]["nodes"]:
                if node["party"] == me:
                    node["tls_opts"] = {"server_ssl_opts": dict(ssl_opts),
                                        "client_ssl_opts": dict(ssl_opts)}
        return spu_configs, heu_config

    sf_context.extract_device_config = extract_device_config


def one_spu_per_session() -> None:
    """Give every step of the session the same SPU device while its settings stay the same.

    Each component asks the entry's context for an SPU device of its own; a second device
    would start its links on the SPU port again, which the first one still holds until the
    session ends ("Fail to listen"). Components of one pipeline share the device, as
    SecretFlow's own notebooks share one. A component that asks for other settings (a
    different fixed-point precision) gets a new device once the old one's links stopped.
    """
    import gc  # noqa: PLC0415

    import secretflow.component.core.context as sf_context  # noqa: PLC0415
    from secretflow.device.device.spu import SPURuntime  # noqa: PLC0415

    original = sf_context.Context._make_spu
    devices: dict[str, Any] = {}

    def make_spu(spu_config: Any, config: Any = None) -> Any:
        runtime = dict(spu_config["cluster_def"].get("runtime_config", {}))
        if config is not None:
            config.update_config(runtime)
        key = json.dumps(runtime, sort_keys=True, default=str)
        if key not in devices:
            if devices:  # other settings: stop the links of the device before
                devices.clear()
                for obj in gc.get_objects():
                    if isinstance(obj, SPURuntime):
                        obj.link.stop_link()
                gc.collect()
            devices[key] = original(spu_config, config)
        return devices[key]

    sf_context.Context._make_spu = staticmethod(make_spu)


def cluster_config(ctx: JobContext) -> Any:
    """The job's ``SFClusterConfig``: its parties on the slot's rayfed and SPU ports, an SPU
    device (the spec's protocol, FM128) and an HEU device."""
    from secretflow.spec.extend.cluster_pb2 import SFClusterConfig, SFClusterDesc  # noqa: PLC0415

    spec = ctx.spec
    ids = spec.party_ids
    params = spec.params
    # SPU's links as the other kinds have them (brpc's own protocol): with http and pooled
    # connections, a PSI between two containers stalled in its first large exchange
    spu = {"runtime_config": {"protocol": params["spu"]["protocol"], "field": SPU_FIELD},
           "link_desc": spu_link_desc(ctx)}
    heu = {"mode": "PHEU", "schema": params["heu"]["schema"], "key_size": params["heu"]["key_size"]}
    desc = SFClusterDesc(
        parties=ids,
        devices=[SFClusterDesc.DeviceDesc(name="spu", type="spu", parties=ids, config=json.dumps(spu)),
                 SFClusterDesc.DeviceDesc(name="heu", type="heu", parties=ids, config=json.dumps(heu))],
        ray_fed_config=SFClusterDesc.RayFedConfig(cross_silo_comm_backend="brpc_link"),
    )
    public = SFClusterConfig.PublicConfig(
        ray_fed_config=SFClusterConfig.RayFedConfig(parties=ids, addresses=[p.rayfed_address for p in spec.parties]),
        spu_configs=[SFClusterConfig.SPUConfig(
            name="spu", parties=ids, addresses=[p.spu_address for p in spec.parties],
            listen_addresses=[f"0.0.0.0:{p.spu_port}" for p in spec.parties])],
        barrier_on_shutdown=True,
    )
    private = SFClusterConfig.PrivateConfig(self_party=ctx.self_id)
    return SFClusterConfig(desc=desc, public_config=public, private_config=private)


def table_input(ctx: JobContext, name: str, table: Mapping[str, Any]) -> Any:
    """A party's table as the components read it (an individual CSV table with its
    schema); this party's own is linked into the work dir first."""
    from secretflow_spec import VTable, VTableParty  # noqa: PLC0415

    uri = f"{ctx.spec.job_id}/{INPUTS_DIR}/{name}.csv"
    if table["party"] == ctx.self_id:
        link = ctx.config.job_dir / uri
        link.parent.mkdir(exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.realpath(ctx.config.data_dir / os.path.normpath(table["path"])))
    party = VTableParty.from_dict(party=table["party"], format="csv", uri=uri,
                                  ids=table.get("ids", {}), features=table.get("features", {}),
                                  labels=table.get("labels", {}))
    return VTable(name, [party]).to_distdata()


def attribute(field: str, value: Any) -> Any:
    from secretflow_spec.v1.component_pb2 import Attribute  # noqa: PLC0415

    return Attribute(**{field: value})


def run_pipeline(ctx: JobContext, before_shutdown: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every step in order in one SecretFlow session; this party's result: each
    step's reports and outputs.

    The component entry would start and shut down the links (rayfed's on the rayfed port,
    yacl's handshake) for every step. A party that finished a step first would then greet
    the next step's peer while the peer's link of the step before still listens on that
    port; the old link takes the greeting, and the peer's new one waits for it forever
    (seen with and without TLS, in one process and with a process per step). So the links
    start once for the job, and the steps run inside that session.
    """
    os.environ[NO_EXIT_FLAG] = "1"
    import secretflow.component.core.entry as core_entry  # noqa: PLC0415
    import secretflow.component.entry as entry  # noqa: PLC0415  (registers the components)

    spec = ctx.spec
    tls = tls_files(ctx)
    if tls is not None:
        require_tls(tls)
    one_spu_per_session()
    cluster = cluster_config(ctx)
    setup, shutdown = core_entry.setup_sf_cluster, core_entry.shutdown
    core_entry.setup_sf_cluster = lambda config: None
    core_entry.shutdown = lambda **kwargs: None
    (ctx.workdir / OUTPUTS_DIR).mkdir(exist_ok=True)
    result: dict[str, Any] = {"steps": []}
    failed = True
    setup(cluster)
    try:
        for index, step in enumerate(spec.params["steps"]):
            if ctx.on_phase is not None:
                ctx.on_phase(f"step {step['id']}")
            try:
                result["steps"].append(run_step(ctx, index, entry.comp_eval, cluster))
            except BaseException as exc:  # noqa: BLE001  (rayfed raises SystemExit/KeyboardInterrupt too)
                text = ANSI_COLOUR.sub("", str(exc)).strip() or repr(exc)
                raise StepFailed(f"step {step['id']} ({step['component']}) failed on party "
                                 f"{ctx.self_id}: {type(exc).__name__}: {text}") from exc
            write_json_atomic(ctx.workdir / STEPS_NAME, result)
        failed = False
    finally:
        if not failed and before_shutdown is not None:
            before_shutdown(result)  # the result stands even if the shutdown fails
        try:
            shutdown(barrier_on_shutdown=not failed, on_error=failed)
        except Exception:  # noqa: BLE001  (the steps are done; a peer may have left first)
            if failed:
                raise
            traceback.print_exc()
    return result


def run_step(ctx: JobContext, index: int, comp_eval: Any, cluster: Any) -> dict[str, Any]:
    """One step: its NodeEvalParam, run with ``comp_eval`` in the job's session."""
    from google.protobuf.json_format import MessageToJson, Parse  # noqa: PLC0415
    from secretflow_spec.v1.data_pb2 import DistData, StorageConfig  # noqa: PLC0415
    from secretflow_spec.v1.evaluation_pb2 import NodeEvalParam  # noqa: PLC0415

    spec = ctx.spec
    params = spec.params
    step = params["steps"][index]
    comp = resolve(catalogue.load().components, step["component"])
    assert not isinstance(comp, str), comp  # validated
    storage = StorageConfig(type="local_fs", local_fs=StorageConfig.LocalFSConfig(wd=str(ctx.config.job_dir)))
    inputs = []
    for io in comp.inputs:
        ref = step["inputs"].get(io.name)
        if ref is None:
            inputs.append(DistData(name=io.name, type="sf.null"))
        elif isinstance(ref, Mapping):
            record = output_record(ctx.config.job_dir, ref["job"], ref["output"])
            inputs.append(Parse(record.read_text(encoding="utf-8"), DistData()))
        elif ref in params["tables"]:
            inputs.append(table_input(ctx, ref, params["tables"][ref]))
        else:
            record = output_record(ctx.config.job_dir, spec.job_id, ref)
            inputs.append(Parse(record.read_text(encoding="utf-8"), DistData()))
    uris = [f"{spec.job_id}/{STEPS_DIR}/{step['id']}/{out.name}" for out in comp.outputs]
    attrs = step["attrs"]
    param = NodeEvalParam(comp_id=step["component"], attr_paths=list(attrs),
                          attrs=[attribute(comp.attribute_field(p), v) for p, v in attrs.items()],
                          inputs=inputs, output_uris=uris)
    started = time.monotonic()
    evaluated = comp_eval(param, storage, cluster)
    described: dict[str, Any] = {"id": step["id"], "component": step["component"],
                                 "seconds": round(time.monotonic() - started, 3), "outputs": {}}
    for out, data in zip(comp.outputs, evaluated.outputs):
        ref = f"{step['id']}.{out.name}"
        write_text_atomic(output_record(ctx.config.job_dir, spec.job_id, ref), MessageToJson(data))
        described["outputs"][out.name] = _describe_output(ctx, data)
    return described


def _describe_output(ctx: JobContext, data: Any) -> dict[str, Any]:
    """What this party learns of an output: its type, the paths of its own files, and a
    report's content (metrics, statistics)."""
    described: dict[str, Any] = {"type": data.type}
    own = [str(ctx.config.job_dir / ref.uri) for ref in data.data_refs if ref.party == ctx.self_id]
    if own:
        described["paths"] = own
    if data.type == "sf.report":
        described["report"] = report_values(data)
    return described


def report_values(data: Any) -> dict[str, Any]:
    """A report's tables and descriptions as plain values: ``{tab: {item: value}}`` for
    descriptions and ``{tab: {row: {column: value}}}`` for tables."""
    from secretflow_spec.v1.report_pb2 import Report  # noqa: PLC0415

    report = Report()
    data.meta.Unpack(report)
    values: dict[str, Any] = {}
    for number, tab in enumerate(report.tabs):
        name = tab.name or f"tab{number}"
        for div in tab.divs:
            for child in div.children:
                if child.type == "descriptions":
                    values.setdefault(name, {}).update(
                        {item.name: _value(item.value, item.type) for item in child.descriptions.items})
                elif child.type == "table":
                    headers = [(h.name, h.type) for h in child.table.headers]
                    values.setdefault(name, {}).update(
                        {row.name: {h: _value(v, t) for (h, t), v in zip(headers, row.items)}
                         for row in child.table.rows})
    return values


def _value(attribute: Any, kind: str) -> Any:
    if kind == "float":  # JSON has no NaN: an undefined metric (an F1 of no positives) is null
        return attribute.f if math.isfinite(attribute.f) else None
    if kind == "int":
        return attribute.i64
    if kind == "bool":
        return attribute.b
    if kind == "str":
        return attribute.s
    for field in ("fs", "i64s", "ss", "bs"):
        if len(getattr(attribute, field)):
            return list(getattr(attribute, field))
    return attribute.s or attribute.f or attribute.i64
