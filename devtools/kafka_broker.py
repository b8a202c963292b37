"""A real single-node Apache Kafka broker (KRaft combined mode) for tests and the demo.

The broker's jars come from Maven Central through ``mvn`` (``deploy/kafka/pom.xml``
copies the runtime classpath of ``org.apache.kafka:kafka_2.13`` into
``deploy/kafka/lib/``); it runs as ``java -cp 'lib/*' kafka.Kafka`` in a
subprocess, bound to 127.0.0.1 only.

A data dir holds one broker's whole state::

    DATA_DIR/server.properties   rendered from deploy/kafka/server.properties
    DATA_DIR/broker.json         ports and cluster id, so a restart reuses them
    DATA_DIR/broker.pid          pid of the running JVM (removed on stop)
    DATA_DIR/broker.log          the broker's log (appended across restarts)
    DATA_DIR/kraft/              log.dirs: the metadata log and the topics

Use from Python::

    with KafkaBroker().start(tmp_dir) as broker:
        broker.create_topic("alerts", partitions=3)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)

or from a shell (``start`` leaves the broker running in the background)::

    python -m devtools.kafka_broker fetch
    python -m devtools.kafka_broker start --data-dir data/kafka [--port 9092]
    python -m devtools.kafka_broker stop --data-dir data/kafka
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from string import Template
from typing import IO

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kafka"
"""Where the pom, the server.properties template and the log4j2 config live."""

HEAP = "512m"
"""Maximum JVM heap of the broker; plenty for tests and the demo."""


class KafkaBrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped; the message says why."""


def _require_tool(name: str, hint: str) -> str:
    """Absolute path of executable ``name`` on PATH, or a clear error naming it."""
    path = shutil.which(name)
    if path is None:
        raise KafkaBrokerError(f"`{name}` not found on PATH: {hint}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_port_free(port: int, what: str) -> None:
    """Raise if ``port`` on 127.0.0.1 cannot be bound (something else holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise KafkaBrokerError(f"{what} port 127.0.0.1:{port} is in use ({e.strerror})") from e


def _port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, start: int = 0, lines: int = 40) -> str:
    """The last ``lines`` lines of ``path`` from byte offset ``start`` on ('' if absent)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _is_our_broker(pid: int, properties: Path) -> bool:
    """Whether ``pid`` is a ``kafka.Kafka`` JVM started on ``properties`` (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(properties).encode() in cmdline


class KafkaBroker:
    """One single-node Kafka broker (broker and KRaft controller in one JVM).

    ``start`` returns the broker itself, and the broker is a context manager
    that stops it on exit: ``with KafkaBroker().start(dir) as b: ...``.

    Parameters
    ----------
    deploy_dir : Path
        Folder with ``pom.xml``, ``server.properties`` and ``log4j2.properties``;
        the jars go to its ``lib/``.
    heap : str
        The JVM's ``-Xmx``.
    """

    def __init__(self, deploy_dir: Path = DEPLOY_DIR, heap: str = HEAP):
        self.deploy_dir = Path(deploy_dir)
        self.lib_dir = self.deploy_dir / "lib"
        self.heap = heap
        self.data_dir: Path | None = None
        self.port: int | None = None
        self.controller_port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None

    # -- jars ---------------------------------------------------------------

    def _pom_digest(self) -> str:
        return hashlib.sha256((self.deploy_dir / "pom.xml").read_bytes()).hexdigest()

    def fetch(self) -> Path:
        """Copy the broker's runtime jars into ``lib/`` with Maven, unless already there.

        Idempotent: runs ``mvn -q -B dependency:copy-dependencies`` only when
        ``lib/`` has no jars or was filled from a different ``pom.xml``
        (a stamp file records the pom's digest). Safe against concurrent
        callers (a file lock). Needs ``mvn`` and Maven Central the first time.

        Returns
        -------
        Path
            The ``lib/`` folder.
        """
        self.lib_dir.mkdir(parents=True, exist_ok=True)
        stamp = self.lib_dir / ".pom.sha256"
        with open(self.lib_dir / ".fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            digest = self._pom_digest()
            jars = list(self.lib_dir.glob("*.jar"))
            if jars and stamp.exists() and stamp.read_text().strip() == digest:
                return self.lib_dir
            mvn = _require_tool("mvn", "install Maven 3 (Debian: apt-get install maven) to fetch the Kafka jars")
            for jar in jars:
                jar.unlink()
            stamp.unlink(missing_ok=True)
            proc = subprocess.run(
                [mvn, "-q", "-B", "-f", str(self.deploy_dir / "pom.xml"), "dependency:copy-dependencies"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            if proc.returncode != 0 or not any(self.lib_dir.glob("*.jar")):
                tail = "\n".join(proc.stdout.splitlines()[-40:])
                raise KafkaBrokerError(
                    f"mvn dependency:copy-dependencies failed (exit {proc.returncode}) "
                    f"in {self.deploy_dir}; is Maven Central reachable?\n{tail}"
                )
            stamp.write_text(digest + "\n")
        return self.lib_dir

    def _java(self, *args: str, heap: str | None = None) -> list[str]:
        """A java command line on the broker's classpath and log4j2 config."""
        java = _require_tool("java", "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
        opts = [f"-Xmx{heap}", "-Xms64m"] if heap else []
        return [
            java, *opts, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.deploy_dir / 'log4j2.properties'}",
            "-cp", f"{self.lib_dir}/*", *args,
        ]

    # -- lifecycle ----------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, the address clients bootstrap from."""
        if self.port is None:
            raise KafkaBrokerError("the broker has not been started")
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether this object's broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker JVM's pid while it runs."""
        return self._proc.pid if self._proc is not None and self.running else None

    def start(self, data_dir: Path | str, port: int | None = None, timeout: float = 90.0) -> KafkaBroker:
        """Start a broker on ``data_dir`` and wait until it answers kafka-python.

        A fresh data dir gets free loopback ports (or ``port`` for clients),
        a new cluster id and formatted KRaft storage (``kafka.tools.StorageTool
        format --standalone``). A data dir used before keeps its ports and
        cluster id (from ``broker.json``), so its topics and messages are back.
        Fetches the jars first if needed.

        Parameters
        ----------
        data_dir : path
            The broker's state folder, created if missing.
        port : int, optional
            Client (PLAINTEXT) port on 127.0.0.1; default: the data dir's
            previous port, else a free one.
        timeout : float
            Seconds to wait for the broker to answer before giving up.

        Returns
        -------
        KafkaBroker
            ``self``.

        Raises
        ------
        KafkaBrokerError
            java or mvn missing, a port in use, a broker already running on
            ``data_dir``, formatting failed, or the broker did not come up (with
            the tail of its log).
        """
        if self.running:
            raise KafkaBrokerError(f"this broker is already running (pid {self.pid}) on {self.data_dir}")
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        properties = data_dir / "server.properties"
        pid_file = data_dir / "broker.pid"
        if pid_file.exists():
            other = int(pid_file.read_text())
            if _pid_alive(other) and _is_our_broker(other, properties):
                raise KafkaBrokerError(f"a broker is already running on {data_dir} (pid {other})")
            pid_file.unlink()

        self.fetch()
        state_file = data_dir / "broker.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        port = port or state.get("port") or free_port()
        controller_port = state.get("controller_port") or free_port()
        if controller_port == port:
            controller_port = free_port()
        _check_port_free(port, "Kafka client (PLAINTEXT)")
        _check_port_free(controller_port, "KRaft controller")
        state.update(port=port, controller_port=controller_port)
        state.setdefault("cluster_id", base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())
        state_file.write_text(json.dumps(state, indent=1) + "\n")

        log_dirs = data_dir / "kraft"
        template = Template((self.deploy_dir / "server.properties").read_text())
        properties.write_text(template.substitute(port=port, controller_port=controller_port, log_dir=log_dirs))
        self.data_dir, self.port, self.controller_port = data_dir, port, controller_port

        log_path = data_dir / "broker.log"
        if not (log_dirs / "meta.properties").exists():
            fmt = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "--standalone",
                           f"--cluster-id={state['cluster_id']}", "-c", str(properties), heap="256m"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            with open(log_path, "a") as log:
                log.write(fmt.stdout)
            if fmt.returncode != 0:
                tail = "\n".join(fmt.stdout.splitlines()[-30:])
                raise KafkaBrokerError(f"formatting KRaft storage in {log_dirs} failed (exit {fmt.returncode}):\n{tail}")

        log_start = log_path.stat().st_size if log_path.exists() else 0
        self._log_file = open(log_path, "ab")
        self._proc = subprocess.Popen(
            self._java("kafka.Kafka", str(properties), heap=self.heap),
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            cwd=data_dir, start_new_session=True,
        )
        pid_file.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(timeout)
        except KafkaBrokerError as e:
            self.kill()
            raise KafkaBrokerError(f"{e}\n--- tail of {log_path} ---\n{_tail(log_path, log_start)}") from None
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Poll until the broker lists itself, unfenced, in a kafka-python metadata answer."""
        assert self._proc is not None and self.port is not None, "called by start()"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise KafkaBrokerError(f"the Kafka broker exited with code {code} while starting")
            if _port_open(self.port):
                try:
                    with self._admin() as admin:
                        brokers = admin.describe_cluster()["brokers"]
                    if any(not b.get("is_fenced") for b in brokers):
                        return
                except KafkaError:
                    pass
            time.sleep(0.3)
        raise KafkaBrokerError(f"the Kafka broker on {self.bootstrap} did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the broker down cleanly (SIGTERM), SIGKILL if it is not gone after ``timeout`` s."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._release()

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash, for failure tests); the data dir stays."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._release()

    def _release(self) -> None:
        """Forget the finished process: close its log, remove the pid file."""
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._proc is not None and self.data_dir is not None:
            (self.data_dir / "broker.pid").unlink(missing_ok=True)
        self._proc = None

    def restart(self, timeout: float = 90.0) -> KafkaBroker:
        """Stop the broker if it runs, and start it again on the same data dir and port."""
        if self.data_dir is None:
            raise KafkaBrokerError("the broker has not been started")
        self.stop()
        return self.start(self.data_dir, self.port, timeout=timeout)

    def __enter__(self) -> KafkaBroker:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- topics -------------------------------------------------------------

    def _admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id="fluxwatch-kafka-broker",
            request_timeout_ms=10_000,
        )

    def create_topic(self, name: str, partitions: int = 1, compacted: bool = False,
                     config: dict[str, str] | None = None) -> None:
        """Create topic ``name`` (replication factor 1) and wait until its metadata is out.

        Parameters
        ----------
        name : str
            The topic; it must not exist yet (``TopicAlreadyExistsError``).
        partitions : int
            Number of partitions.
        compacted : bool
            ``cleanup.policy=compact``: the log keeps the last value per key.
        config : dict, optional
            More topic configs, e.g. ``{"segment.ms": "100"}``.
        """
        configs = {"cleanup.policy": "compact"} if compacted else {}
        configs.update(config or {})
        with self._admin() as admin:
            admin.create_topics(
                [NewTopic(name, partitions, 1, topic_configs=configs)], wait_for_metadata=True,
            )


def stop_pidfile(data_dir: Path | str, timeout: float = 30.0) -> bool:
    """Stop the broker started in the background on ``data_dir`` (see ``start`` in the CLI).

    SIGTERM, then SIGKILL after ``timeout`` seconds. Returns False if no broker
    was running there (a missing or stale pid file, which is removed).
    """
    data_dir = Path(data_dir).resolve()
    pid_file = data_dir / "broker.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    if not (_pid_alive(pid) and _is_our_broker(pid, data_dir / "server.properties")):
        pid_file.unlink()
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.kafka_broker fetch|start|stop``."""
    parser = argparse.ArgumentParser(prog="python -m devtools.kafka_broker", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="copy the broker's jars into deploy/kafka/lib with mvn (once)")
    start = sub.add_parser("start", help="start a broker in the background; prints its bootstrap address")
    start.add_argument("--data-dir", required=True, type=Path, help="the broker's state folder")
    start.add_argument("--port", type=int, help="client port on 127.0.0.1 (default: previous or free)")
    stop = sub.add_parser("stop", help="stop the broker started on --data-dir")
    stop.add_argument("--data-dir", required=True, type=Path, help="the broker's state folder")
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            t0 = time.monotonic()
            lib = KafkaBroker().fetch()
            size = sum(p.stat().st_size for p in lib.glob("*.jar"))
            print(f"{lib}: {len(list(lib.glob('*.jar')))} jars, {size / 2**20:.0f} MiB "
                  f"({time.monotonic() - t0:.1f} s)")
        elif args.command == "start":
            broker = KafkaBroker().start(args.data_dir, args.port)
            # The JVM runs in its own session and outlives this process.
            print(f"Kafka broker pid {broker.pid} at {broker.bootstrap} "
                  f"(log: {Path(args.data_dir) / 'broker.log'})")
        else:
            if stop_pidfile(args.data_dir):
                print(f"stopped the Kafka broker on {args.data_dir}")
            else:
                print(f"no Kafka broker running on {args.data_dir}", file=sys.stderr)
                return 1
    except KafkaBrokerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
