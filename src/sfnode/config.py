"""This node's configuration: the KEY=VALUE env file the roles render.

See docs/interfaces.md. Values are validated by parsing them (URLs with
urllib.parse, addresses with ipaddress, ranges into ints), and every problem
is reported at once, each naming the key, the value and what would be valid.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from sfnode.problems import MISSING, Problems, ProblemsError, Style

DEFAULT_ENV_FILE = "/etc/secretflow/node.env"

# A party id: also a Ray/rayfed party name and a Celery worker name prefix.
NODE_ID_PATTERN = "[a-z][a-z0-9_-]{0,31}"
NODE_ID_RE = re.compile(NODE_ID_PATTERN)
APP_ENVS = ("production", "development")
REDIS_SCHEMES = ("redis", "rediss")
# Party port ranges must stay out of the privileged ports.
PORT_MIN, PORT_MAX = 1024, 65535
MAX_DEADLINE_SECONDS = 86400
MAX_WORKER_CONCURRENCY = 1024
MAX_WARM_WORKERS = 64
QUEUE_PATTERN = "[A-Za-z0-9_.-]{1,64}"
PATH_KEYS = ("FEDERATION_FILE", "DATA_DIR", "JOB_DIR")
COMPONENT_PATTERN = "[a-z_]+"
UNIT_PATTERN = r"[A-Za-z0-9@._-]+\.service"

REQUIRED_KEYS = (
    "NODE_ID",
    "NODE_IP",
    "REDIS_URL",
    "RESULT_BACKEND_URL",
    "RAY_PORT",
    "RAYFED_PORTS",
    "SPU_PORTS",
    "FEDERATION_FILE",
    "DATA_DIR",
    "JOB_DIR",
)
# Optional keys and their defaults; APP_ENV defaults to the strict setting.
DEFAULTS = {
    "APP_ENV": "production",
    "JOB_DEADLINE_SECONDS": "600",
    # The longest deadline this node accepts from a spec: a stalled peer holds
    # a slot (and a worker process) until the deadline.
    "JOB_MAX_DEADLINE_SECONDS": "3600",
    "CELERY_QUEUE": "secretflow",
    "WORKER_CONCURRENCY": "1",
    # The roles name their units (COMPONENT=UNIT,...); none: `sfnode status` checks no unit.
    "SERVICE_UNITS": "",
    # Finished jobs' work dirs are kept this long, and all of them together at
    # most this size (the oldest go first); Ray's old session logs this long.
    "JOB_RETENTION_DAYS": "14",
    "JOB_RETENTION_MB": "20480",
    # Ray's temp dir (its session logs); empty: none are pruned.
    "RAY_TEMP_DIR": "",
    # Idle Ray workers to keep ready for jobs (0: none), and the port of the head's
    # raylet that starts them (empty: none are started).
    "RAY_WARM_WORKERS": "0",
    "RAY_NODE_MANAGER_PORT": "",
    # This node's certificate and private key (PEM files) for mutual TLS between
    # parties; both empty: this node runs without TLS (a lab opt-out).
    "TLS_CERT": "",
    "TLS_KEY": "",
    # The port gate's unix socket (see sfnode.gate): while a job runs, its ports
    # take only its parties. Empty: no gate (the firewall is off on this node).
    "PORT_GATE": "",
    # The job channel (sfnode.channel): its port on NODE_IP (empty: no channel), and this
    # party's job policy (empty: the federation file's directory's policy.json).
    "CHANNEL_PORT": "",
    "POLICY_FILE": "",
}
KEYS = REQUIRED_KEYS + tuple(DEFAULTS)
TLS_KEYS = ("TLS_CERT", "TLS_KEY")

# How the env file's problems read: ``RAY_PORT='80' is not valid; ...``.
ENV_STYLE = Style(with_value="{field}={value} {reason}", without_value="{field} {reason}")


class ConfigError(ProblemsError):
    """Problems in a node's configuration."""

    what = "node configuration"
    default_source = "environment"


@dataclass(frozen=True)
class PortRange:
    """An inclusive port range ``start-end``."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def port(self, slot: int) -> int:
        """The port of ``slot`` (0-based); IndexError when the range is too short."""
        if not 0 <= slot < len(self):
            raise IndexError(f"slot {slot} is outside 0..{len(self) - 1}")
        return self.start + slot

    def overlaps(self, other: PortRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def port_slots(rayfed_ports: PortRange, spu_ports: PortRange) -> int:
    """How many jobs a party can take part in at once: each holds one port of each range."""
    return min(len(rayfed_ports), len(spu_ports))


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{hostport}").geturl()


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_port_range(text: str) -> PortRange:
    """Parse ``A-B`` with 1024 <= A <= B <= 65535; ValueError says what is wrong."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not match:
        raise ValueError("is not a range 'START-END' of two port numbers")
    start, end = int(match.group(1)), int(match.group(2))
    for port in (start, end):
        if not PORT_MIN <= port <= PORT_MAX:
            raise ValueError(f"port {port} is outside {PORT_MIN}..{PORT_MAX}")
    if start > end:
        raise ValueError(f"start {start} is greater than end {end}")
    return PortRange(start, end)


class _EnvReader:
    """Reads the env file's keys one at a time, each into its type.

    A key that cannot be read adds its problem and reads as an empty value
    (0, "", None), so the other keys are still checked; the caller raises.
    """

    def __init__(self, env: Mapping[str, str], problems: Problems) -> None:
        self.values = {**DEFAULTS, **{k: env[k] for k in KEYS if k in env}}
        self.problems = problems
        for key in REQUIRED_KEYS:
            if not self.text(key).strip():
                problems.add(key, MISSING, "is missing or empty; it is required "
                             "(see docs/interfaces.md)", "a value")

    def text(self, key: str) -> str:
        return self.values.get(key, "")

    def node_id(self, key: str) -> str:
        text = self.text(key)
        if text and not NODE_ID_RE.fullmatch(text):
            self.problems.add(key, text, f"is not a valid party id; expected {NODE_ID_PATTERN}",
                              NODE_ID_PATTERN)
        return text

    def ip_address(self, key: str) -> str:
        text = self.text(key)
        if not text:
            return text
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            self.problems.add(key, text, "is not an IP address; expected e.g. 10.89.0.2",
                              "an IP address")
            return text

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        text = self.text(key)
        self.problems.one_of(key, text, choices, "is not valid")
        return text

    def matching(self, key: str, pattern: str) -> str:
        text = self.text(key)
        if not re.fullmatch(pattern, text):
            self.problems.add(key, text, f"is not valid; expected {pattern}", pattern)
        return text

    def integer(self, key: str, low: int, high: int) -> int:
        text = self.text(key)
        if not text:
            return 0
        try:
            number: int | None = int(text)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            self.problems.add(key, text, f"is not valid; expected an integer in {low}..{high}",
                              f"an integer in {low}..{high}")
            return 0
        return number

    def port_range(self, key: str) -> PortRange | None:
        text = self.text(key)
        if not text:
            return None
        try:
            return parse_port_range(text)
        except ValueError as exc:
            valid = f"'START-END' with {PORT_MIN} <= START <= END <= {PORT_MAX}"
            self.problems.add(key, text, f"{exc}; expected {valid}", valid)
            return None

    def absolute_path(self, key: str) -> Path:
        text = self.text(key)
        if text and not os.path.isabs(text):
            self.problems.add(key, text, "is a relative path; expected an absolute path",
                              "an absolute path")
        return Path(text)

    def optional_path(self, key: str) -> Path | None:
        """An absolute path, or None when the key is empty."""
        return self.absolute_path(key) if self.text(key).strip() else None

    def tls_files(self) -> tuple[Path | None, Path | None]:
        """TLS_CERT and TLS_KEY: both set (TLS on) or both empty (no TLS)."""
        cert, key = (self.optional_path(k) for k in TLS_KEYS)
        for name, value, other in (("TLS_CERT", cert, "TLS_KEY"), ("TLS_KEY", key, "TLS_CERT")):
            if value is None and self.text(other).strip():
                self.problems.add(name, MISSING, f"is empty while {other} is set; expected both "
                                  "TLS_CERT and TLS_KEY (this node's certificate and private key, "
                                  "absolute paths) for TLS between parties, or neither to run "
                                  "without TLS", "an absolute path")
        return cert, key

    def service_units(self, key: str) -> tuple[tuple[str, str], ...]:
        """``COMPONENT=UNIT,...`` as ordered (component, unit) pairs; empty: none."""
        text = self.text(key)
        if not text.strip():
            return ()
        pairs: list[tuple[str, str]] = []
        for item in text.split(","):
            component, sep, unit = (part.strip() for part in item.partition("="))
            if not sep:
                self.problems.add(key, text, f"has {item.strip()!r}, which is not "
                                  "COMPONENT=UNIT; expected comma-separated COMPONENT=UNIT pairs "
                                  "(e.g. redis=NAME.service)", "COMPONENT=UNIT,...")
                continue
            self._unique_name(key, "component", component, COMPONENT_PATTERN,
                              [c for c, _ in pairs])
            self._unique_name(key, "unit", unit, UNIT_PATTERN, [u for _, u in pairs])
            pairs.append((component, unit))
        return tuple(pairs)

    def _unique_name(self, key: str, what: str, name: str, pattern: str,
                     taken: list[str]) -> None:
        if not re.fullmatch(pattern, name):
            self.problems.add(key, self.text(key), f"names {what} {name!r}; expected a {what} "
                              f"matching {pattern}", pattern)
        elif name in taken:
            self.problems.add(key, self.text(key), f"names {what} {name!r} twice; expected "
                              f"each {what} once", f"each {what} once")

    def redis_url(self, key: str, app_env: str) -> str:
        text = self.text(key)
        if text:
            _check_redis_url(key, text, app_env, self.problems)
        return text


def _check_redis_url(key: str, value: str, app_env: str, problems: Problems) -> None:
    shown = redact_url(value)  # the password never enters a message
    valid = "redis://[:PASSWORD@]HOST:PORT[/DB] (or rediss://)"
    try:
        parts: SplitResult = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        problems.add(key, shown, f"cannot be parsed as a URL ({exc}); expected {valid}", valid)
        return
    if parts.scheme not in REDIS_SCHEMES:
        problems.add(key, shown, f"has scheme {parts.scheme!r}; expected {valid}", valid)
    host = parts.hostname
    if not host:
        problems.add(key, shown, f"has no host; expected {valid}", valid)
    if port is None:
        problems.add(key, shown, f"has no port; expected {valid}", valid)
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        problems.add(key, shown, f"has database {db!r}; expected a number such as /0",
                     "a database number")
    if host and app_env == "production" and not is_loopback_host(host):
        problems.add(key, shown, f"points at host {host!r}; with APP_ENV=production the broker "
                     "must be on this node's loopback (127.0.0.1, ::1 or localhost)",
                     "a loopback host")


def _check_port_plan(rayfed: PortRange, spu: PortRange, ray_port: int, concurrency: int,
                     problems: Problems) -> None:
    """The keys that must agree with each other: the two ranges, RAY_PORT, the concurrency."""
    if rayfed.overlaps(spu):
        problems.add("RAYFED_PORTS", str(rayfed), f"overlaps SPU_PORTS={str(spu)!r}; expected "
                     "two disjoint ranges (each job binds one port of each)", "disjoint ranges")
    for key, rng in (("RAYFED_PORTS", rayfed), ("SPU_PORTS", spu)):
        if ray_port in rng:
            problems.add("RAY_PORT", ray_port, f"lies inside {key}={str(rng)!r}; expected a port "
                         "outside both party port ranges", "a port outside both ranges")
    slots = port_slots(rayfed, spu)
    if concurrency > slots:
        problems.add("WORKER_CONCURRENCY", concurrency, f"exceeds the {slots} port slots of "
                     f"RAYFED_PORTS/SPU_PORTS; expected at most {slots}", f"at most {slots}")


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    node_ip: str
    app_env: str
    redis_url: str
    result_backend_url: str
    ray_port: int
    rayfed_ports: PortRange
    spu_ports: PortRange
    federation_file: Path
    data_dir: Path
    job_dir: Path
    job_deadline_seconds: int
    celery_queue: str
    worker_concurrency: int
    # (component, unit) pairs in the env file's order: the systemd units of this node.
    service_units: tuple[tuple[str, str], ...] = ()
    job_max_deadline_seconds: int = MAX_DEADLINE_SECONDS
    job_retention_days: int = 14
    job_retention_mb: int = 20480
    ray_temp_dir: Path | None = None
    ray_warm_workers: int = 0
    ray_node_manager_port: int | None = None
    # This node's certificate and private key for mutual TLS; both None: no TLS.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The port gate's socket; None: no gate.
    port_gate: Path | None = None
    channel_port: int | None = None
    policy_file: Path | None = None

    @property
    def policy_path(self) -> Path:
        """This party's job policy (sfnode.policy)."""
        return self.policy_file or self.federation_file.parent / "policy.json"

    @property
    def journal_path(self) -> Path:
        """The audit journal (sfnode.journal), beside the job directory."""
        return self.job_dir.parent / "journal.jsonl"

    @property
    def tls_enabled(self) -> bool:
        """Whether this node's links to its peers (rayfed, SPU) use mutual TLS."""
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def ray_address(self) -> str:
        return f"{self.node_ip}:{self.ray_port}"

    @property
    def slots(self) -> int:
        """How many jobs can run at once: one rayfed and one SPU port each."""
        return port_slots(self.rayfed_ports, self.spu_ports)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], source: str = "environment") -> NodeConfig:
        problems = Problems(ENV_STYLE)
        keys = _EnvReader(env, problems)
        node_id, node_ip = keys.node_id("NODE_ID"), keys.ip_address("NODE_IP")
        app_env = keys.choice("APP_ENV", APP_ENVS)
        redis_url = keys.redis_url("REDIS_URL", app_env)
        result_backend_url = keys.redis_url("RESULT_BACKEND_URL", app_env)
        ray_port = keys.integer("RAY_PORT", 1, PORT_MAX)
        max_deadline = keys.integer("JOB_MAX_DEADLINE_SECONDS", 1, MAX_DEADLINE_SECONDS)
        deadline = keys.integer("JOB_DEADLINE_SECONDS", 1, max_deadline or MAX_DEADLINE_SECONDS)
        concurrency = keys.integer("WORKER_CONCURRENCY", 1, MAX_WORKER_CONCURRENCY)
        rayfed_ports, spu_ports = keys.port_range("RAYFED_PORTS"), keys.port_range("SPU_PORTS")
        if rayfed_ports and spu_ports:
            _check_port_plan(rayfed_ports, spu_ports, ray_port, concurrency, problems)
        celery_queue = keys.matching("CELERY_QUEUE", QUEUE_PATTERN)
        federation_file, data_dir, job_dir = (keys.absolute_path(k) for k in PATH_KEYS)
        service_units = keys.service_units("SERVICE_UNITS")
        retention_days = keys.integer("JOB_RETENTION_DAYS", 1, 3650)
        retention_mb = keys.integer("JOB_RETENTION_MB", 1, 2**31)
        ray_temp_dir = keys.absolute_path("RAY_TEMP_DIR") if keys.text("RAY_TEMP_DIR") else None
        warm_workers = keys.integer("RAY_WARM_WORKERS", 0, MAX_WARM_WORKERS)
        node_manager_port = (keys.integer("RAY_NODE_MANAGER_PORT", 1, PORT_MAX)
                             if keys.text("RAY_NODE_MANAGER_PORT") else None)
        tls_cert, tls_key = keys.tls_files()
        port_gate = keys.optional_path("PORT_GATE")
        channel_port = (keys.integer("CHANNEL_PORT", 1, PORT_MAX)
                        if keys.text("CHANNEL_PORT") else None)
        policy_file = keys.absolute_path("POLICY_FILE") if keys.text("POLICY_FILE") else None
        problems.raise_if_any(lambda found: ConfigError(found, source))
        assert rayfed_ports and spu_ports  # a missing or bad range is a problem raised above
        return cls(node_id=node_id, node_ip=node_ip, app_env=app_env, redis_url=redis_url,
                   result_backend_url=result_backend_url, ray_port=ray_port,
                   rayfed_ports=rayfed_ports, spu_ports=spu_ports,
                   federation_file=federation_file, data_dir=data_dir, job_dir=job_dir,
                   job_deadline_seconds=deadline, celery_queue=celery_queue,
                   worker_concurrency=concurrency, service_units=service_units,
                   job_max_deadline_seconds=max_deadline, job_retention_days=retention_days,
                   job_retention_mb=retention_mb, ray_temp_dir=ray_temp_dir,
                   ray_warm_workers=warm_workers or 0, ray_node_manager_port=node_manager_port,
                   tls_cert=tls_cert, tls_key=tls_key, port_gate=port_gate,
                   channel_port=channel_port or None, policy_file=policy_file)

    @classmethod
    def from_env_file(cls, path: str | os.PathLike[str]) -> NodeConfig:
        return cls.from_mapping(read_env_file(path), source=str(path))

    def to_env(self) -> dict[str, str]:
        """The configuration as env-file keys (what a child process needs)."""
        return {
            "NODE_ID": self.node_id,
            "NODE_IP": self.node_ip,
            "APP_ENV": self.app_env,
            "REDIS_URL": self.redis_url,
            "RESULT_BACKEND_URL": self.result_backend_url,
            "RAY_PORT": str(self.ray_port),
            "RAYFED_PORTS": str(self.rayfed_ports),
            "SPU_PORTS": str(self.spu_ports),
            "FEDERATION_FILE": str(self.federation_file),
            "DATA_DIR": str(self.data_dir),
            "JOB_DIR": str(self.job_dir),
            "JOB_DEADLINE_SECONDS": str(self.job_deadline_seconds),
            "JOB_MAX_DEADLINE_SECONDS": str(self.job_max_deadline_seconds),
            "CELERY_QUEUE": self.celery_queue,
            "WORKER_CONCURRENCY": str(self.worker_concurrency),
            "SERVICE_UNITS": ",".join(f"{c}={u}" for c, u in self.service_units),
            "JOB_RETENTION_DAYS": str(self.job_retention_days),
            "JOB_RETENTION_MB": str(self.job_retention_mb),
            "RAY_TEMP_DIR": str(self.ray_temp_dir or ""),
            "RAY_WARM_WORKERS": str(self.ray_warm_workers),
            "RAY_NODE_MANAGER_PORT": str(self.ray_node_manager_port or ""),
            "TLS_CERT": str(self.tls_cert or ""),
            "TLS_KEY": str(self.tls_key or ""),
            "PORT_GATE": str(self.port_gate or ""),
            "CHANNEL_PORT": str(self.channel_port or ""),
            "POLICY_FILE": str(self.policy_file or ""),
        }


# Set for every Ray driver this node starts. The drivers run as the worker's
# user, the Ray head as a user of its own; Ray makes the session's event-log
# directory private to the head's user, and a driver of another user that
# cannot open its event log there aborts inside ray.init (SIGABRT). Drivers'
# events are not needed: the head's own are still written.
DRIVER_ENVIRONMENT = {"RAY_event_log_reporter_enabled": "0"}


def child_environment(config: NodeConfig) -> dict[str, str]:
    """The environment of a process this node starts (a job's runner, the Ray probe)."""
    # RAY_ADDRESS would override the address given to ray.init.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(config.to_env())
    env.update(DRIVER_ENVIRONMENT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse the env file at ``path`` (see :func:`parse_env_text`)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read env file: {exc.strerror or exc}"], source) from exc
    return parse_env_text(text, source)


def parse_env_text(text: str, source: str = "env file") -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines (no quoting, no ``export``); blanks and ``#`` lines are skipped."""
    values: dict[str, str] = {}
    problems = Problems(ENV_STYLE)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            problems.add(f"line {number}", MISSING, f"{raw!r} is not KEY=VALUE", "KEY=VALUE")
            continue
        values[key] = value.strip()
    problems.raise_if_any(lambda found: ConfigError(found, source))
    return values


def load_config(env_file: str | os.PathLike[str] | None = None) -> NodeConfig:
    """From ``env_file`` when given, else from this process's environment."""
    if env_file is not None:
        return NodeConfig.from_env_file(env_file)
    return NodeConfig.from_mapping(os.environ)
