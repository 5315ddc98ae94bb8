"""Spark for the backend tests: one session fixture, three deployments.

``spark`` is parametrized over
* ``local``: a classic session in local mode (``local[2]``);
* ``standalone``: a classic session on a standalone master with one worker;
* ``connect``: a Spark Connect session (``SparkSession.builder.remote("sc://...")``) on a Connect
  server whose master is that standalone cluster, the README's cluster set-up.

The master, the worker and the Connect server are started on localhost (free ports) from pyspark's
own scripts (``sbin/spark-daemon.sh``, which ``start-master.sh`` and ``start-worker.sh`` call, and
``sbin/start-connect-server.sh``; the pip distribution ships no ``start-master.sh``), once per test
session, and stopped by the same scripts.  pyspark 4's pip distribution ships the Connect server's
jar (``jars/spark-connect_*.jar``; checked on 4.3.0), so nothing is downloaded; where it is missing
(pyspark 3.5 fetches it with ``--packages``), without Java or without the Connect client's packages
(``pyspark[connect]``) the tests skip and say why.

Every test that takes ``spark`` belongs to the xdist group "spark", meant to keep them on one
worker (pytest-xdist 3.8 marks the group on ``item._nodeid``, which pytest 9 no longer reads, so
today each worker may start its own daemons, on their own ports).  In a worker pytest orders the
tests by deployment, so one classic session lives at a time and Connect comes last (a Connect
session marks the process as Connect-only; the mark is removed when it closes).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 120.0  # seconds for a daemon to come up on a loaded machine
MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"
CONNECT = "org.apache.spark.sql.connect.service.SparkConnectServer"
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # short-lived JVMs: warm up fast, no GC threads
APP_CONF = {  # every application: small, local, quiet; two apps share the worker's two cores
    "spark.executor.extraJavaOptions": QUICK_JVM,
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.cores.max": "1",
    "spark.executor.memory": "512m",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark_local_only: run on the local deployment of the spark fixture only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests marked spark_local_only on the standalone and Connect deployments."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        deployment = getattr(item, "callspec", None) and item.callspec.params.get("spark")
        elsewhere = deployment not in (None, "local") and item.get_closest_marker("spark_local_only")
        (drop if elsewhere else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_home() -> Path:
    pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'hlm[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Java is not installed: Spark needs a JVM (Java 17 or later)")
    return Path(pyspark.__file__).parent


class Daemons:
    """Spark daemons of this test session: their logs, pid files and work folders under ``root``."""

    def __init__(self, root: Path):
        self.home = _spark_home()
        self.root = root
        for sub in ("logs", "pids", "work", "conf"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.env = os.environ | {
            "SPARK_HOME": str(self.home),
            "SPARK_CONF_DIR": str(root / "conf"),  # empty: no site configuration leaks in
            "SPARK_LOG_DIR": str(root / "logs"),
            "SPARK_PID_DIR": str(root / "pids"),
            "SPARK_WORKER_DIR": str(root / "work"),
            "SPARK_IDENT_STRING": f"hlm-tests-{os.getpid()}",
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "512m",
            "SPARK_DAEMON_JAVA_OPTS": QUICK_JVM,
        }
        self.started: list[tuple[str, str]] = []  # (script, class) to stop, in start order

    def start(self, script: str, cls: str, args: list[str], ready: str) -> None:
        """Run ``sbin/<script>`` and wait until the daemon's log says ``ready``;
        skip the test with the log's last lines when it does not come up."""
        cmd = [str(self.home / "sbin" / script), *([] if script == "start-connect-server.sh" else ["start", cls, "1"])]
        done = subprocess.run(cmd + args, env=self.env, cwd=self.root, capture_output=True, text=True, timeout=120)
        self.started.append((script, cls))
        if done.returncode != 0:
            pytest.skip(f"{cls.rsplit('.', 1)[1]} did not start: {(done.stdout + done.stderr).strip()[-300:]}")
        pattern = f"spark-{self.env['SPARK_IDENT_STRING']}-{cls}-1-*.out"  # spark-daemon.sh's log name
        deadline, text = time.monotonic() + START_TIMEOUT, ""
        while time.monotonic() < deadline:
            text = "".join(log.read_text(errors="replace") for log in (self.root / "logs").glob(pattern))
            if ready in text:
                return
            time.sleep(0.5)
        tail = " | ".join(text.strip().splitlines()[-3:]) or f"no log {pattern}"
        pytest.skip(f"{cls.rsplit('.', 1)[1]} did not come up in {START_TIMEOUT:.0f} s: {tail[-400:]}")

    def stop_all(self) -> None:
        for script, cls in reversed(self.started):
            stop = ["stop-connect-server.sh"] if script == "start-connect-server.sh" else ["spark-daemon.sh", "stop"]
            args = [] if script == "start-connect-server.sh" else [cls, "1"]
            subprocess.run(
                [str(self.home / "sbin" / stop[0]), *stop[1:], *args],
                env=self.env,
                cwd=self.root,
                capture_output=True,
                timeout=60,
            )
        self.started.clear()


@pytest.fixture(scope="session")
def spark_daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemons]:
    daemons = Daemons(tmp_path_factory.mktemp("spark"))
    try:
        yield daemons
    finally:
        daemons.stop_all()


@pytest.fixture(scope="session")
def spark_master(spark_daemons: Daemons) -> str:
    """``spark://127.0.0.1:<port>``: a standalone master with one worker (2 cores, 1.5 GB)."""
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    master = ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(_free_port())]
    spark_daemons.start("spark-daemon.sh", MASTER, master, "ALIVE")
    worker = ["--host", "127.0.0.1", "--cores", "2", "--memory", "1536m", "--webui-port", str(_free_port()), url]
    spark_daemons.start("spark-daemon.sh", WORKER, worker, "Successfully registered with master")
    return url


@pytest.fixture(scope="session")
def spark_connect_url(spark_daemons: Daemons, spark_master: str) -> str:
    """``sc://127.0.0.1:<port>``: a Spark Connect server on the standalone cluster."""
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio, grpcio-status, zstandard)")
    pytest.importorskip("zstandard", reason="Spark Connect needs pyspark[connect] (zstandard)")
    if not list((spark_daemons.home / "jars").glob("spark-connect_*.jar")):
        pytest.skip("this pyspark ships no spark-connect jar (pyspark >= 4.0 does); the server would download it")
    port = _free_port()
    conf = APP_CONF | {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
    }
    args = ["--master", spark_master, "--driver-memory", "1g", "--driver-java-options", QUICK_JVM]
    args += [a for k, v in conf.items() for a in ("--conf", f"{k}={v}")]
    spark_daemons.start("start-connect-server.sh", CONNECT, args, "Spark Connect server started")
    return f"sc://127.0.0.1:{port}"


def _leave_connect_mode() -> None:
    """pyspark marks the process Connect-only when a Connect session starts; classic sessions
    started later in the same process need the mark gone."""
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)


@pytest.fixture
def spark_connect_remote(spark_connect_url: str) -> Iterator[str]:
    """The Connect server's URL for a test that opens its own session there (and stops it)."""
    try:
        yield spark_connect_url
    finally:
        _leave_connect_mode()


def _classic(master: str) -> object:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName("hlm-tests").config("spark.driver.memory", "1g")
    conf = APP_CONF | ({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@pytest.fixture(scope="session", params=["local", "standalone", "connect"])
def spark(request: pytest.FixtureRequest) -> Iterator[object]:
    """A Spark session of each deployment in turn (see the module docstring)."""
    _spark_home()
    if request.param == "connect":
        from pyspark.sql import SparkSession

        session = SparkSession.builder.remote(request.getfixturevalue("spark_connect_url")).getOrCreate()
        try:
            yield session
        finally:
            session.stop()
            _leave_connect_mode()
        return
    master = "local[2]" if request.param == "local" else request.getfixturevalue("spark_master")
    session = _classic(master)
    yield session
    session.stop()
