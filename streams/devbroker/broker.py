"""An embedded, real Apache Kafka broker for development and tests (no Docker needed).

The broker jars are fetched once with Maven into a project-local cache (``.cache/kafka/<version>/libs``) and
the broker runs as a detached ``java`` process in single-node KRaft mode (one process is both broker and
controller), with its data under a project-local folder (``.kafka-data/``) so a restart keeps every message.

Needs Java 17+ (``java``) always, and Maven (``mvn``) the first time, to fetch the jars.

Command line (``copybot kafka ...`` or ``python -m streams.devbroker ...``; :mod:`streams.cli.kafka`)::

    python -m streams.devbroker start [--port 9092] [--controller-port 9093] [--data-dir .kafka-data]
    python -m streams.devbroker status      # exit code 0 when running, 3 when not
    python -m streams.devbroker stop

Python API::

    settings = BrokerSettings.from_env()
    start(settings)              # returns once a client can talk to the broker
    bootstrap(settings)          # "127.0.0.1:9092"
    stop(settings)

Settings decided here (``server_properties`` is the single source; ``docker-compose.kafka.yml`` mirrors it
and ``tests/test_compose_file.py`` keeps the two in step):

- ``auto.create.topics.enable`` is left on (Kafka's default): Faust creates its internal topics through the
  admin API anyway, and ad-hoc tools that produce to a new topic just work.
- ``log.retention.ms=-1``: a development event store keeps its events (Kafka's default deletes after 7 days).
- ``group.min.session.timeout.ms=1000`` (Kafka's default 6000): lets the worker's 3 s session timeout
  through, so a killed worker's partitions move in seconds (docs/failover.md has the trade-off).
- Static quorum (``controller.quorum.voters=1@127.0.0.1:<controller port>``), formatted once with a fixed
  cluster id, the same way the official ``apache/kafka`` image does it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.errors import CopybotError

KAFKA_VERSION = "4.1.1"
"""Apache Kafka version run here and in ``docker-compose.kafka.yml`` (image ``apache/kafka:<version>``)."""

LOG4J_VERSION = "2.24.3"
"""log4j2 version shipped with Kafka 4.1; ``log4j-slf4j-impl`` routes Kafka's slf4j logging into it."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092
NODE_ID = 1
DEFAULT_START_TIMEOUT_S = 90.0
DEFAULT_STOP_TIMEOUT_S = 60.0
JVM_HEAP_OPTS = ("-Xms256m", "-Xmx512m")

ENV_PORT = "COPYBOT_KAFKA_PORT"
ENV_CONTROLLER_PORT = "COPYBOT_KAFKA_CONTROLLER_PORT"
ENV_DATA = "COPYBOT_KAFKA_DATA"
ENV_CACHE = "COPYBOT_KAFKA_CACHE"

EXIT_RUNNING = 0
EXIT_NOT_RUNNING = 3

# Kafka wants a cluster id that is 16 bytes in URL-safe base64 without padding (22 characters).
# A fixed one keeps formatting deterministic; the docker-compose file uses the same value.
CLUSTER_ID = (
    base64.urlsafe_b64encode(uuid.uuid5(uuid.NAMESPACE_URL, "copybot/kafka").bytes).decode().rstrip("=")
)

_PID_FILE = "broker.pid"
_PROCESS_LOG = "broker.out"  # the JVM's stdout/stderr: Kafka's log4j output goes here
_PROPERTIES_FILE = "server.properties"
_LOG4J_FILE = "log4j2.properties"
_LOG4J_TOOLS_FILE = "log4j2-tools.properties"  # for the storage formatter: warnings and errors only
_LOG_DIRS = "kraft-logs"  # topic partitions and the metadata log
_JARS_READY_MARKER = ".complete"


class BrokerError(CopybotError, RuntimeError):
    """The broker could not be fetched, formatted, started or stopped; the message says why."""


def _project_root() -> Path:
    """The repository root (the folder holding pyproject.toml), else the current directory."""
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BrokerError(f"{name}={raw!r} is not a port number") from None
    if not 0 < value < 65536:
        raise BrokerError(f"{name}={value} is not a valid TCP port (1-65535)")
    return value


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how the local broker runs. ``controller_port`` defaults to ``port + 1``."""

    port: int = DEFAULT_PORT
    controller_port: int | None = None
    data_dir: Path = dataclasses.field(default_factory=lambda: _project_root() / ".kafka-data")
    cache_dir: Path = dataclasses.field(default_factory=lambda: _project_root() / ".cache" / "kafka")
    version: str = KAFKA_VERSION
    host: str = DEFAULT_HOST

    @property
    def effective_controller_port(self) -> int:
        return self.controller_port if self.controller_port is not None else self.port + 1

    @property
    def jars_dir(self) -> Path:
        return self.cache_dir / self.version / "libs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / _PID_FILE

    @property
    def process_log(self) -> Path:
        return self.data_dir / _PROCESS_LOG

    @classmethod
    def from_env(cls) -> BrokerSettings:
        """Defaults, overridden by COPYBOT_KAFKA_PORT, COPYBOT_KAFKA_CONTROLLER_PORT, COPYBOT_KAFKA_DATA and
        COPYBOT_KAFKA_CACHE."""
        port = _env_int(ENV_PORT, DEFAULT_PORT)
        controller_port = _env_int(ENV_CONTROLLER_PORT, port + 1)
        defaults = cls()
        data = os.environ.get(ENV_DATA)
        cache = os.environ.get(ENV_CACHE)
        return cls(
            port=port,
            controller_port=controller_port,
            data_dir=Path(data).expanduser().resolve() if data else defaults.data_dir,
            cache_dir=Path(cache).expanduser().resolve() if cache else defaults.cache_dir,
        )


@dataclass(frozen=True)
class BrokerHandle:
    """A running broker: its process id, client bootstrap address and whether this call launched it."""

    pid: int
    bootstrap: str
    settings: BrokerSettings
    started_now: bool


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind((DEFAULT_HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def on_free_ports(data_dir: Path) -> BrokerSettings:
    """The environment's broker settings on two free ports, its data in `data_dir`: a broker of a test
    run's or benchmark's own, beside any other."""
    port, controller_port = free_ports(2)
    return dataclasses.replace(
        BrokerSettings.from_env(), port=port, controller_port=controller_port, data_dir=data_dir
    )


def bootstrap(settings: BrokerSettings) -> str:
    """The ``bootstrap_servers`` string for clients, e.g. ``"127.0.0.1:9092"``."""
    return f"{settings.host}:{settings.port}"


def server_properties(settings: BrokerSettings) -> dict[str, str]:
    """Every broker setting, as written to ``server.properties``; ``docker-compose.kafka.yml`` mirrors it."""
    controller = f"{settings.host}:{settings.effective_controller_port}"
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "listeners": f"PLAINTEXT://{bootstrap(settings)},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{bootstrap(settings)}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.voters": f"{NODE_ID}@{controller}",
        "log.dirs": str(settings.data_dir / _LOG_DIRS),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "log.retention.ms": "-1",
    }


# ---------------------------------------------------------------------------------------------------------
# Jars


def _pom_xml(version: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by streams/broker.py: the Apache Kafka {version} broker and a log4j2 binding for its logs. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.copybot</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock so two processes (e.g. parallel test sessions) don't download or start at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _jars_ready(settings: BrokerSettings) -> bool:
    return (settings.jars_dir / _JARS_READY_MARKER).is_file() and any(
        settings.jars_dir.glob("kafka_2.13-*.jar")
    )


def ensure_jars(settings: BrokerSettings) -> Path:
    """Return the folder holding the broker's jars, fetching them with Maven the first time."""
    if _jars_ready(settings):
        return settings.jars_dir
    version_dir = settings.cache_dir / settings.version
    with _file_lock(version_dir / ".lock"):
        if _jars_ready(settings):  # another process fetched them while we waited
            return settings.jars_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                f"Maven ('mvn') is needed once to fetch the Apache Kafka {settings.version} jars into "
                f"{settings.jars_dir}, but it is not on PATH. Install it (Debian: apt-get install maven) "
                f"or point {ENV_CACHE} at a cache that already holds them."
            )
        pom = version_dir / "pom.xml"
        pom.write_text(_pom_xml(settings.version))
        staging = version_dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        print(f"fetching Apache Kafka {settings.version} jars with Maven (once) into {settings.jars_dir} …")
        started = time.monotonic()
        command = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            output = (result.stdout + result.stderr).strip()
            raise BrokerError(
                f"Maven could not fetch the Apache Kafka {settings.version} jars "
                f"(exit {result.returncode}).\ncommand: {' '.join(command)}\n{_tail_text(output, 40)}"
            )
        shutil.rmtree(settings.jars_dir, ignore_errors=True)
        staging.rename(settings.jars_dir)
        (settings.jars_dir / _JARS_READY_MARKER).write_text(f"{settings.version}\n")
        print(
            f"fetched {len(list(settings.jars_dir.glob('*.jar')))} jars in {time.monotonic() - started:.1f} s"
        )
    return settings.jars_dir


# ---------------------------------------------------------------------------------------------------------
# Process bookkeeping


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _log_tail(settings: BrokerSettings, lines: int = 40) -> str:
    try:
        text = settings.process_log.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no broker log at {settings.process_log})"
    return f"last lines of {settings.process_log}:\n{_tail_text(text, lines)}"


def _read_pid(settings: BrokerSettings) -> int | None:
    try:
        return int(settings.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` is a live (not zombie) Kafka broker process."""
    with contextlib.suppress(ChildProcessError):
        # Reap it if it is our own exited child (a test that started and stops it in one process).
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    proc = Path("/proc") / str(pid)
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return False
            # Guard against a recycled pid: the process must be a Kafka broker.
            return b"kafka.Kafka" in (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
    return True


def running_pid(settings: BrokerSettings) -> int | None:
    pid = _read_pid(settings)
    if pid is not None and _pid_alive(pid):
        return pid
    return None


def _metadata_request(correlation_id: int) -> bytes:
    """A Kafka Metadata v4 request for no topics (v4 is served by Kafka 3.x and 4.x alike)."""
    client_id = b"copybot-broker-probe"
    header = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation: false
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


def probe(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True when a Kafka broker at host:port answers a Metadata request listing itself, unfenced.

    A plain TCP connect is not enough: the listener accepts connections before the broker has joined the
    quorum; a fenced broker is left out of the metadata response.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(_metadata_request(correlation_id=7))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            response = _recv_exact(sock, size)
    except (OSError, ConnectionError, struct.error):
        return False
    if len(response) < 12:
        return False
    correlation_id, _throttle_ms, broker_count = struct.unpack_from(">iii", response, 0)
    return bool(correlation_id == 7 and broker_count >= 1)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def is_running(settings: BrokerSettings) -> bool:
    """True when this data dir's broker process is alive and answering clients on its port."""
    return running_pid(settings) is not None and probe(settings.host, settings.port)


# ---------------------------------------------------------------------------------------------------------
# Start / stop


def _log4j_properties(level: str) -> str:
    # Console output goes to broker.out (the process's redirected stdout); the chattiest loggers are kept
    # at WARN. Written fresh at each start.
    return f"""# Generated by streams/broker.py
status = warn
name = copybot-kafka
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = WARN
logger.state_change.name = state.change.logger
logger.state_change.level = WARN
logger.log_cleaner.name = kafka.log.LogCleaner
logger.log_cleaner.level = WARN
logger.metadata.name = org.apache.kafka.image
logger.metadata.level = WARN
"""


def _write_config(settings: BrokerSettings) -> Path:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    properties = settings.data_dir / _PROPERTIES_FILE
    lines = ["# Generated by streams/broker.py at each start; edit server_properties() instead."]
    lines += [f"{key}={value}" for key, value in server_properties(settings).items()]
    properties.write_text("\n".join(lines) + "\n")
    (settings.data_dir / _LOG4J_FILE).write_text(_log4j_properties("INFO"))
    (settings.data_dir / _LOG4J_TOOLS_FILE).write_text(_log4j_properties("WARN"))
    return properties


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "Java 17+ ('java') is needed to run the Apache Kafka broker, but it is not on PATH and JAVA_HOME "
            "is not set. Install it (Debian: apt-get install openjdk-17-jre-headless)."
        )
    return java


def _java_command(
    settings: BrokerSettings, java: str, log4j_file: str, main_class: str, *args: str
) -> list[str]:
    return [
        java,
        *JVM_HEAP_OPTS,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={settings.data_dir / log4j_file}",
        f"-Dkafka.logs.dir={settings.data_dir}",
        "-cp",
        f"{settings.jars_dir}/*",
        main_class,
        *args,
    ]


def _format_storage_if_needed(settings: BrokerSettings, java: str, properties: Path) -> None:
    log_dirs = settings.data_dir / _LOG_DIRS
    if (log_dirs / "meta.properties").is_file():
        return
    command = _java_command(
        settings,
        java,
        _LOG4J_TOOLS_FILE,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        CLUSTER_ID,
        "-c",
        str(properties),
    )
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        # The cause is at the top of the output (a Java stack trace follows it).
        raise BrokerError(
            f"formatting the Kafka storage in {log_dirs} failed (exit {result.returncode}):\n"
            + "\n".join(output.splitlines()[:15])
        )


def _wait_ready(
    settings: BrokerSettings, process: subprocess.Popen[bytes] | None, pid: int, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise BrokerError(
                f"the Kafka broker exited with code {process.returncode} while starting.\n"
                f"{_log_tail(settings)}"
            )
        if process is None and not _pid_alive(pid):
            raise BrokerError(f"the Kafka broker (pid {pid}) exited while starting.\n{_log_tail(settings)}")
        if probe(settings.host, settings.port, timeout_s=1.0):
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"the Kafka broker (pid {pid}) did not answer on {bootstrap(settings)} "
                f"within {timeout_s:.0f} s.\n{_log_tail(settings)}"
            )
        time.sleep(0.2)


def start(settings: BrokerSettings, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> BrokerHandle:
    """Start the broker in the background and return once clients can use it. Idempotent.

    Raises BrokerError (with the tail of the broker log where there is one) when Java or Maven is missing,
    the port is taken by something else, or the broker exits or does not become ready in ``timeout_s``.
    """
    if settings.port == settings.effective_controller_port:
        raise BrokerError(f"the client port and the controller port must differ (both are {settings.port})")
    java = _java()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(settings.data_dir / ".lock"):
        pid = running_pid(settings)
        if pid is not None:
            # Already running (or still starting, launched by someone else): wait until it answers.
            if not probe(settings.host, settings.port):
                print(f"Kafka broker (pid {pid}) is starting; waiting for {bootstrap(settings)} …")
                _wait_ready(settings, None, pid, timeout_s)
            return BrokerHandle(pid=pid, bootstrap=bootstrap(settings), settings=settings, started_now=False)
        for port in (settings.port, settings.effective_controller_port):
            if _port_in_use(settings.host, port):
                raise BrokerError(
                    f"port {settings.host}:{port} is already in use by another process, and no broker of "
                    f"{settings.data_dir} is running. Stop that process or choose other ports "
                    f"(--port/--controller-port or {ENV_PORT}/{ENV_CONTROLLER_PORT})."
                )
        ensure_jars(settings)
        properties = _write_config(settings)
        _format_storage_if_needed(settings, java, properties)
        command = _java_command(settings, java, _LOG4J_FILE, "kafka.Kafka", str(properties))
        began = time.monotonic()
        if settings.process_log.exists():  # keep the previous run's log, one generation
            settings.process_log.replace(settings.process_log.with_name(_PROCESS_LOG + ".1"))
        with settings.process_log.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=settings.data_dir,
                start_new_session=True,
            )
        settings.pid_file.write_text(f"{process.pid}\n")
        print(
            f"started Kafka {settings.version} broker (pid {process.pid}); "
            f"waiting for {bootstrap(settings)} …"
        )
        try:
            _wait_ready(settings, process, process.pid, timeout_s)
        except BrokerError:
            _terminate(process.pid, 10.0)
            settings.pid_file.unlink(missing_ok=True)
            raise
        print(f"Kafka broker ready on {bootstrap(settings)} after {time.monotonic() - began:.1f} s")
        return BrokerHandle(
            pid=process.pid, bootstrap=bootstrap(settings), settings=settings, started_now=True
        )


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM (Kafka's controlled shutdown), then SIGKILL after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_exit(pid, timeout_s):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_exit(pid, 10.0):
        raise BrokerError(f"the Kafka broker (pid {pid}) did not exit even after SIGKILL")


def stop(settings: BrokerSettings, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> bool:
    """Stop the broker of ``settings.data_dir``. Returns False when it was not running. Idempotent."""
    pid = running_pid(settings)
    if pid is None:
        settings.pid_file.unlink(missing_ok=True)
        return False
    _terminate(pid, timeout_s)
    settings.pid_file.unlink(missing_ok=True)
    return True
