"""Kind ``pipeline``: SecretFlow components (PSI, splits, statistics, training,
prediction, evaluation) run as steps of one job.

Params:

``tables``
    by name, each party's input tables: ``party``, ``path`` (relative to that
    party's DATA_DIR, a CSV file) and its schema, ``ids``, ``features`` and
    ``labels``, each a mapping of column name to type (``int``, ``float``,
    ``str``, ``bool``, ``int64``, ...). Every party parses every input, so
    every party's schema travels in the spec; only the owner opens the file.
``steps``
    a list of ``{id, component, inputs, attrs}``: ``component`` is a
    library component id (``domain/name:X.Y.Z``, as ``sfnode components``
    lists them), ``inputs`` maps each input of the component to a table name,
    to ``<step>.<output>`` of an earlier step, or to ``{"job": ID, "output":
    "<step>.<output>"}`` of an earlier job with the same parties (a trained
    model, say), and ``attrs`` maps attribute paths (``epochs``,
    ``input/input_ds/label``) to values.
``spu``
    ``{"protocol": "SEMI2K"}`` (default) or ``CHEETAH`` (two parties); the
    field is FM128.
``heu``
    ``{"schema": "paillier", "key_size": 2048}`` (defaults), for components
    that use homomorphic encryption (SecureBoost).

The steps run in the runner process with SecretFlow's component entry (no
Ray; the component library starts its own links on the job's rayfed and SPU
ports, with this node's TLS). Outputs are written under this party's work
dir; the result holds each step's reports (metrics, statistics) and the paths
of this party's own output files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sfnode import catalogue as catalogue_module
from sfnode.components import AttrCheck, Component, check_attrs, resolve
from sfnode.jobdir import SPEC_NAME, output_record, read_json, workdir
from sfnode.kinds._inputs import check_own_file, check_relative_path
from sfnode.kinds._kind import Kind, ParamCheck
from sfnode.problems import MISSING
from sfnode.sfargs import JobContext

PARAMS = ("tables", "steps", "spu", "heu")
TABLE_FIELDS = ("party", "path", "ids", "features", "labels")
SCHEMA_FIELDS = ("ids", "features", "labels")
STEP_FIELDS = ("id", "component", "inputs", "attrs")
NAME_PATTERN = "[a-z][a-z0-9_]{0,31}"
NAME_RE = re.compile(NAME_PATTERN)
JOB_ID_RE = re.compile("[a-z0-9][a-z0-9-]{0,62}")
COLUMN_TYPES = ("int", "float", "str", "bool", "int8", "int16", "int32", "int64", "uint8",
                "uint16", "uint32", "uint64", "float16", "float32", "float64")
MAX_STEPS = 16
MAX_TABLES = 16
MAX_COLUMNS = 4096
SPU_PROTOCOLS = ("SEMI2K", "CHEETAH")
HEU_SCHEMAS = ("paillier", "ou", "elgamal")
HEU_KEY_SIZES = (2048, 3072, 4096)
DEFAULT_SPU = {"protocol": "SEMI2K"}
DEFAULT_HEU = {"schema": "paillier", "key_size": 2048}
INDIVIDUAL_TABLE = "sf.table.individual"
# Outputs of earlier steps whose columns are known before the job runs: the joined table
# of a PSI has the columns of both inputs, a split's parts and a preprocessed table those
# of their input.
COLUMNS_FROM_INPUTS = {
    ("data_prep/psi", "output_ds"): ("input_ds1", "input_ds2"),
    ("data_prep/train_test_split", "train_ds"): ("input_ds",),
    ("data_prep/train_test_split", "test_ds"): ("input_ds",),
    ("preprocessing/feature_calculate", "output_ds"): ("input_ds",),
    ("preprocessing/substitution", "output_ds"): ("input_ds",),
}
def validate(params: dict[str, Any], check: ParamCheck) -> dict[str, Any]:
    check.known_params(params, PARAMS)
    try:
        catalogue = catalogue_module.load().components
    except catalogue_module.CatalogueMissing as exc:
        check.add("params.steps", MISSING, f"cannot be checked on party {check.config.node_id}: "
                  f"{exc}", "a node with its component catalogue")
        return dict(params)
    tables, broken = _check_tables(params.get("tables", {}), check)
    steps = _check_steps(params.get("steps", MISSING), tables, broken, catalogue, check)
    spu = _check_spu(params.get("spu", DEFAULT_SPU), check)
    heu = _check_heu(params.get("heu", DEFAULT_HEU), check)
    return {"tables": tables, "steps": steps, "spu": spu, "heu": heu}


def _check_tables(tables: Any, check: ParamCheck) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The valid tables, and the names of those with problems."""
    if not isinstance(tables, Mapping) or len(tables) > MAX_TABLES:
        check.add("params.tables", tables, f"is not valid; expected an object of up to "
                  f"{MAX_TABLES} tables by name", "{name: {party, path, ids, features, labels}}")
        return {}, set()
    clean = {}
    for name, table in tables.items():
        where = f"params.tables.{name}"
        if not NAME_RE.fullmatch(str(name)):
            check.add(where, name, f"is not a table name; expected {NAME_PATTERN}", NAME_PATTERN)
            continue
        if not isinstance(table, Mapping):
            check.add(where, table, "is not valid; expected {party, path, ids, features, labels}",
                      "{party, path, ids, features, labels}")
            continue
        check.problems.only(f"{where}.", table, TABLE_FIELDS, "is not a table field")
        party = table.get("party", MISSING)
        party_ok = check.one_of(f"{where}.party", party, check.party_ids, "is not a party of the job")
        path = check_relative_path(f"{where}.path", table.get("path", MISSING), check)
        schema = _check_schema(where, table, check)
        if party_ok and path is not None and party == check.config.node_id and check.check_files \
                and schema is not None:
            check_own_file(where, table["path"], path, [c for k in SCHEMA_FIELDS for c in schema[k]],
                           check, "features")
        if party_ok and path is not None and schema is not None:
            clean[name] = {"party": party, "path": path, **schema}
    return clean, {str(name) for name in tables if name not in clean}


def _check_schema(where: str, table: Mapping[str, Any], check: ParamCheck) -> dict[str, dict[str, str]] | None:
    schema: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    ok = True
    for part in SCHEMA_FIELDS:
        columns = table.get(part, {})
        if not isinstance(columns, Mapping) or len(columns) > MAX_COLUMNS or not all(
                isinstance(c, str) and c and t in COLUMN_TYPES for c, t in columns.items()):
            check.add(f"{where}.{part}", columns, f"is not valid; expected an object of column "
                      f"name to type ({', '.join(COLUMN_TYPES[:4])}, ...)", "{column: type}")
            ok = False
            continue
        for column in columns:
            if column in seen:
                check.add(f"{where}.{part}", column, "names a column twice in the table's "
                          "schema; expected each column once", "distinct columns")
                ok = False
            seen.add(column)
        schema[part] = dict(columns)
    if ok and not seen:
        check.add(f"{where}.features", MISSING, "is missing: the table has no columns; expected "
                  "its ids, features and labels", "{column: type}")
        ok = False
    return schema if ok else None


def _check_steps(steps: Any, tables: Mapping[str, Mapping[str, Any]], broken_tables: set[str],
                 catalogue: Mapping[str, Mapping[str, Any]], check: ParamCheck) -> list[dict[str, Any]]:
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        check.add("params.steps", steps, f"is not valid; expected a list of 1 to {MAX_STEPS} "
                  "steps {id, component, inputs, attrs}", "a list of steps")
        return []
    # what earlier steps produce: "<step>.<output>" -> (types, columns or None)
    produced: dict[str, tuple[tuple[str, ...], set[str] | None]] = {}
    # steps whose component is wrong: a later step's use of them is not a problem of its own
    broken: set[str] = set(broken_tables)
    clean = []
    for index, step in enumerate(steps):
        step_id = step.get("id") if isinstance(step, Mapping) else None
        where = f"params.steps[{step_id if isinstance(step_id, str) and NAME_RE.fullmatch(step_id) else index}]"
        if not isinstance(step, Mapping):
            check.add(where, step, "is not valid; expected {id, component, inputs, attrs}",
                      "{id, component, inputs, attrs}")
            continue
        check.problems.only(f"{where}.", step, STEP_FIELDS, "is not a step field")
        if not isinstance(step_id, str) or not NAME_RE.fullmatch(step_id):
            check.add(f"{where}.id", step.get("id", MISSING), f"is not a step id; expected {NAME_PATTERN}",
                      NAME_PATTERN)
            continue
        if step_id in broken or step_id in tables or any(ref.startswith(step_id + ".") for ref in produced):
            check.add(f"{where}.id", step_id, "is the name of a table or an earlier step; "
                      "expected a new one", "a new step id")
            continue
        comp = resolve(catalogue, step.get("component", MISSING))
        if isinstance(comp, str):
            check.add(f"{where}.component", step.get("component", MISSING), comp,
                      "a component id of this node's SecretFlow")
            broken.add(step_id)
            continue
        inputs, columns = _check_inputs(where, comp, step.get("inputs", {}), tables, produced,
                                        broken, check)
        attrs_given = step.get("attrs", {})
        if not isinstance(attrs_given, Mapping):
            check.add(f"{where}.attrs", attrs_given, "is not valid; expected an object of "
                      "attribute path to value", "{attribute: value}")
            continue
        attr_check = AttrCheck(comp, check.party_ids, columns)
        attrs = check_attrs(attrs_given, attr_check)
        for path, value, reason, expected in attr_check.problems:
            check.add(f"{where}.attrs.{path}", value, reason, expected)
        for output in comp.outputs:
            sources = COLUMNS_FROM_INPUTS.get((comp.key, output.name))
            known: set[str] | None = None
            if sources is not None and all(columns.get(s) is not None for s in sources):
                known = set().union(*(columns[s] or set() for s in sources))
            produced[f"{step_id}.{output.name}"] = (output.types, known)
        clean.append({"id": step_id, "component": comp.id, "inputs": inputs, "attrs": attrs})
    return clean


def _check_inputs(where: str, comp: Component, given: Any, tables: Mapping[str, Mapping[str, Any]],
                  produced: Mapping[str, tuple[tuple[str, ...], set[str] | None]],
                  broken: set[str], check: ParamCheck) -> tuple[dict[str, Any], dict[str, set[str] | None]]:
    names = [io.name for io in comp.inputs]
    if not isinstance(given, Mapping):
        check.add(f"{where}.inputs", given, f"is not valid; expected an object with the inputs of "
                  f"{comp.key} ({', '.join(names)})", "{input: table or step.output}")
        return {}, {}
    check.problems.only(f"{where}.inputs.", given, names, f"is not an input of {comp.key}")
    inputs: dict[str, Any] = {}
    columns: dict[str, set[str] | None] = {}
    for io in comp.inputs:
        ref = given.get(io.name, MISSING)
        field = f"{where}.inputs.{io.name}"
        if ref is MISSING:
            if not io.optional:
                check.add(field, MISSING, f"is required by {comp.key}; expected a table name, "
                          "<step>.<output> of an earlier step or {job, output}",
                          "a table or an earlier output")
            continue
        if isinstance(ref, str) and ref.split(".")[0] in broken:
            columns[io.name] = None  # that step's problem is reported already
            continue
        found = _check_ref(field, ref, io.types, tables, produced, check)
        if found is not MISSING:
            inputs[io.name] = ref
            columns[io.name] = found
    return inputs, columns


def _check_ref(field: str, ref: Any, types: tuple[str, ...], tables: Mapping[str, Mapping[str, Any]],
               produced: Mapping[str, tuple[tuple[str, ...], set[str] | None]],
               check: ParamCheck) -> Any:
    """The columns of what ``ref`` names (None: not known yet); MISSING with a problem."""
    expected = f"an input of type {' or '.join(types)}"
    if isinstance(ref, str) and ref in tables:
        if INDIVIDUAL_TABLE not in types:
            check.add(field, ref, f"is one party's table; the component reads {' or '.join(types)} "
                      "here, expected the output of an earlier step (a PSI's joined table)", expected)
            return MISSING
        table = tables[ref]
        return {c for k in SCHEMA_FIELDS for c in table[k]}
    if isinstance(ref, str) and ref in produced:
        out_types, known = produced[ref]
        if not set(out_types) & set(types):
            check.add(field, ref, f"is of type {' or '.join(out_types)}; expected {expected}", expected)
            return MISSING
        return known
    if isinstance(ref, Mapping):
        return _check_earlier_job(field, ref, types, check)
    earlier = ", ".join([*tables, *produced]) or "none"
    check.add(field, ref, f"is neither a table of params.tables nor the output of an earlier "
              f"step (known: {earlier}); expected one of them or {{job, output}}", expected)
    return MISSING


def _check_earlier_job(field: str, ref: Mapping[str, Any], types: tuple[str, ...],
                       check: ParamCheck) -> Any:
    check.problems.only(f"{field}.", ref, ("job", "output"), "is not a field of an earlier job's output")
    job_id, output = ref.get("job", MISSING), ref.get("output", MISSING)
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        check.add(f"{field}.job", job_id, "is not a job id; expected the id of an earlier job",
                  "a job id")
        return MISSING
    if not isinstance(output, str) or not re.fullmatch(rf"{NAME_PATTERN}\.[a-z][a-z0-9_]*", output):
        check.add(f"{field}.output", output, "is not an output; expected <step>.<output> of "
                  "that job", "<step>.<output>")
        return MISSING
    if not check.check_files:
        return None
    root = check.config.job_dir
    record = output_record(root, job_id, output)
    earlier = read_json(workdir(root, job_id) / SPEC_NAME)
    saved = read_json(record)
    if not isinstance(earlier, Mapping) or not isinstance(saved, Mapping):
        check.add(f"{field}", dict(ref), f"is not an output that party {check.config.node_id} "
                  f"keeps ({record} is missing: the job never ran here, failed before that "
                  "step, or was pruned); expected an output of an earlier job of this party",
                  "a kept output of an earlier job")
        return MISSING
    parties = sorted(p.get("id") for p in earlier.get("parties", []) if isinstance(p, Mapping))
    if parties != sorted(check.party_ids):
        check.add(f"{field}.job", job_id, f"ran between {', '.join(parties)}; an output may go "
                  f"on only among the same parties ({', '.join(sorted(check.party_ids))})",
                  "an earlier job of the same parties")
        return MISSING
    if saved.get("type") not in types:
        check.add(f"{field}.output", output, f"is of type {saved.get('type')}; expected "
                  f"{' or '.join(types)}", " or ".join(types))
        return MISSING
    return None


def _check_spu(spu: Any, check: ParamCheck) -> dict[str, Any]:
    if not isinstance(spu, Mapping):
        check.add("params.spu", spu, "is not valid; expected {\"protocol\": \"SEMI2K\"}", "{protocol}")
        return dict(DEFAULT_SPU)
    check.problems.only("params.spu.", spu, ("protocol",), "is not an SPU setting")
    protocol = spu.get("protocol", DEFAULT_SPU["protocol"])
    check.one_of("params.spu.protocol", protocol, SPU_PROTOCOLS, "is not an SPU protocol offered here")
    if protocol == "CHEETAH" and len(check.party_ids) != 2:
        check.add("params.spu.protocol", protocol, f"works for two parties, the job has "
                  f"{len(check.party_ids)}; expected SEMI2K", "SEMI2K")
    return {"protocol": protocol}


def _check_heu(heu: Any, check: ParamCheck) -> dict[str, Any]:
    if not isinstance(heu, Mapping):
        check.add("params.heu", heu, "is not valid; expected {schema, key_size}", "{schema, key_size}")
        return dict(DEFAULT_HEU)
    check.problems.only("params.heu.", heu, ("schema", "key_size"), "is not an HEU setting")
    schema = heu.get("schema", DEFAULT_HEU["schema"])
    key_size = heu.get("key_size", DEFAULT_HEU["key_size"])
    check.one_of("params.heu.schema", schema, HEU_SCHEMAS, "is not an HEU schema")
    if key_size not in HEU_KEY_SIZES or isinstance(key_size, bool):
        check.add("params.heu.key_size", key_size, f"is not a key size offered here; expected one "
                  f"of {', '.join(map(str, HEU_KEY_SIZES))}", "2048, 3072 or 4096")
    return {"schema": schema, "key_size": key_size}


def run(sf: Any, ctx: JobContext) -> dict[str, Any]:
    """Run the steps in order (``sf`` is unused: the component entry starts SecretFlow)."""
    from sfnode import compeval  # noqa: PLC0415  (imports SecretFlow's component library)

    return compeval.run_pipeline(ctx, ctx.on_result)


def reads(params: dict[str, Any], party: str) -> tuple[str, ...]:
    """The paths of ``party``'s tables (relative to its DATA_DIR)."""
    tables = params.get("tables") or {}
    return tuple(t["path"] for t in tables.values()
                 if isinstance(t, Mapping) and t.get("party") == party and t.get("path"))


def reveals(params: dict[str, Any], parties: tuple[str, ...]) -> tuple[str, ...]:
    """Every party: the components' reports (metrics, statistics) reach all of them."""
    return parties


KIND = Kind(validate=validate, run=run, uses_spu=True, reads=reads, reveals=reveals,
            starts_secretflow=True)
