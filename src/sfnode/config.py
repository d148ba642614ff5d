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

DEFAULT_ENV_FILE = "/etc/secretflow/node.env"

NODE_ID_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
APP_ENVS = ("production", "development")
REDIS_SCHEMES = ("redis", "rediss")
# Party port ranges must stay out of the privileged ports.
PORT_MIN, PORT_MAX = 1024, 65535
MAX_DEADLINE_SECONDS = 86400

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
    "CELERY_QUEUE": "secretflow",
    "WORKER_CONCURRENCY": "1",
}
KEYS = REQUIRED_KEYS + tuple(DEFAULTS)


class ProblemsError(ValueError):
    """One or more problems in one input, all reported together."""

    what = "input"
    default_source = "input"

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source or self.default_source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {self.what} ({self.source}):\n{lines}")


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


def _check_redis_url(key: str, value: str, app_env: str) -> list[str]:
    shown = redact_url(value)
    valid = "redis://[:PASSWORD@]HOST:PORT[/DB] (or rediss://)"
    try:
        parts: SplitResult = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return [f"{key}={shown!r} cannot be parsed as a URL ({exc}); expected {valid}"]
    problems = []
    if parts.scheme not in REDIS_SCHEMES:
        problems.append(f"{key}={shown!r} has scheme {parts.scheme!r}; expected {valid}")
    host = parts.hostname
    if not host:
        problems.append(f"{key}={shown!r} has no host; expected {valid}")
    if port is None:
        problems.append(f"{key}={shown!r} has no port; expected {valid}")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        problems.append(f"{key}={shown!r} has database {db!r}; expected a number such as /0")
    if host and app_env == "production" and not is_loopback_host(host):
        problems.append(
            f"{key}={shown!r} points at host {host!r}; with APP_ENV=production the broker "
            "must be on this node's loopback (127.0.0.1, ::1 or localhost)"
        )
    return problems


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

    @property
    def ray_address(self) -> str:
        return f"{self.node_ip}:{self.ray_port}"

    @property
    def slots(self) -> int:
        """How many jobs can run at once: one rayfed and one SPU port each."""
        return min(len(self.rayfed_ports), len(self.spu_ports))

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], source: str = "environment") -> NodeConfig:
        values = {**DEFAULTS, **{k: env[k] for k in KEYS if k in env}}
        problems: list[str] = []

        def missing(key: str) -> bool:
            if not values.get(key, "").strip():
                problems.append(
                    f"{key} is missing or empty; it is required (see docs/interfaces.md)"
                )
                return True
            return False

        for key in REQUIRED_KEYS:
            missing(key)

        node_id = values.get("NODE_ID", "")
        if node_id and not NODE_ID_RE.fullmatch(node_id):
            problems.append(
                f"NODE_ID={node_id!r} is not a valid party id; expected [a-z][a-z0-9_-]{{0,31}}"
            )

        node_ip = values.get("NODE_IP", "")
        if node_ip:
            try:
                node_ip = str(ipaddress.ip_address(node_ip))
            except ValueError:
                problems.append(
                    f"NODE_IP={node_ip!r} is not an IP address; expected e.g. 10.89.0.2"
                )

        app_env = values["APP_ENV"]
        if app_env not in APP_ENVS:
            problems.append(
                f"APP_ENV={app_env!r} is not valid; expected one of {', '.join(APP_ENVS)}"
            )

        for key in ("REDIS_URL", "RESULT_BACKEND_URL"):
            if values.get(key):
                problems.extend(_check_redis_url(key, values[key], app_env))

        def int_value(key: str, low: int, high: int) -> int:
            text = values.get(key, "")
            if not text:
                return 0
            try:
                number = int(text)
            except ValueError:
                number = None
            if number is None or not low <= number <= high:
                problems.append(
                    f"{key}={text!r} is not valid; expected an integer in {low}..{high}"
                )
                return 0
            return number

        ray_port = int_value("RAY_PORT", 1, PORT_MAX)
        deadline = int_value("JOB_DEADLINE_SECONDS", 1, MAX_DEADLINE_SECONDS)
        concurrency = int_value("WORKER_CONCURRENCY", 1, 1024)

        ranges: dict[str, PortRange] = {}
        for key in ("RAYFED_PORTS", "SPU_PORTS"):
            text = values.get(key, "")
            if not text:
                continue
            try:
                ranges[key] = parse_port_range(text)
            except ValueError as exc:
                problems.append(
                    f"{key}={text!r} {exc}; expected 'START-END' with "
                    f"{PORT_MIN} <= START <= END <= {PORT_MAX}"
                )
        if len(ranges) == 2:
            rayfed, spu = ranges["RAYFED_PORTS"], ranges["SPU_PORTS"]
            if rayfed.overlaps(spu):
                problems.append(
                    f"RAYFED_PORTS={str(rayfed)!r} overlaps SPU_PORTS={str(spu)!r}; "
                    "expected two disjoint ranges (each job binds one port of each)"
                )
            for key, rng in ranges.items():
                if ray_port in rng:
                    problems.append(
                        f"RAY_PORT={ray_port} lies inside {key}={str(rng)!r}; expected a port "
                        "outside both party port ranges"
                    )
            slots = min(len(rayfed), len(spu))
            if concurrency > slots:
                problems.append(
                    f"WORKER_CONCURRENCY={concurrency} exceeds the {slots} port slots of "
                    f"RAYFED_PORTS/SPU_PORTS; expected at most {slots}"
                )

        queue = values["CELERY_QUEUE"]
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", queue):
            problems.append(f"CELERY_QUEUE={queue!r} is not valid; expected [A-Za-z0-9_.-]{{1,64}}")

        for key in ("FEDERATION_FILE", "DATA_DIR", "JOB_DIR"):
            text = values.get(key, "")
            if text and not os.path.isabs(text):
                problems.append(f"{key}={text!r} is a relative path; expected an absolute path")

        if problems:
            raise ConfigError(problems, source)
        return cls(
            node_id=node_id,
            node_ip=node_ip,
            app_env=app_env,
            redis_url=values["REDIS_URL"],
            result_backend_url=values["RESULT_BACKEND_URL"],
            ray_port=ray_port,
            rayfed_ports=ranges["RAYFED_PORTS"],
            spu_ports=ranges["SPU_PORTS"],
            federation_file=Path(values["FEDERATION_FILE"]),
            data_dir=Path(values["DATA_DIR"]),
            job_dir=Path(values["JOB_DIR"]),
            job_deadline_seconds=deadline,
            celery_queue=queue,
            worker_concurrency=concurrency,
        )

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
            "CELERY_QUEUE": self.celery_queue,
            "WORKER_CONCURRENCY": str(self.worker_concurrency),
        }


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines (no quoting, no ``export``); blanks and ``#`` lines are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read env file: {exc.strerror or exc}"], str(path)) from exc
    values: dict[str, str] = {}
    problems = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            problems.append(f"line {number} {raw!r} is not KEY=VALUE")
            continue
        values[key] = value.strip()
    if problems:
        raise ConfigError(problems, str(path))
    return values


def load_config(env_file: str | os.PathLike[str] | None = None) -> NodeConfig:
    """From ``env_file`` when given, else from this process's environment."""
    if env_file is not None:
        return NodeConfig.from_env_file(env_file)
    return NodeConfig.from_mapping(os.environ)
