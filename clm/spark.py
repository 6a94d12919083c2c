"""The one place that builds the SparkSession of the scale-out engine (`--engine spark`).

Everything comes from `settings.spark` (mlflow.yaml's `spark:` section): the master
(`local[2]` here, `spark://...`, `yarn` or `k8s://...` on a cluster), memory, shuffle
partitions, scratch space under `$CLM_HOME`, and any other Spark property. Sessions run in
UTC (feature snapshots are UTC instants) and log only errors (a quiet log4j2 file under
`$CLM_HOME/spark`). pyspark is imported here, inside the functions: `clm --help` must not
start a JVM or import pyspark.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clm import atomic
from clm.errors import ClmError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from clm.settings import Settings

__all__ = ["SparkError", "spark_conf", "spark_session", "stop_spark", "write_single_parquet"]

# Spark's and Hadoop's INFO lines (thousands per job) drown a command's own output.
LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.spark.name = org.apache.spark
logger.spark.level = error
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
"""


class SparkError(ClmError):
    """Spark cannot start (no Java, a bad master URL) or a Spark job failed."""


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every Spark property the session is built with (settings.spark.conf wins)."""
    s = settings.spark
    home = settings.home / "spark"
    local_dir = settings.spark_local_dir
    log4j = (home / "log4j2.properties").as_posix()
    java_opts = f"-Dlog4j2.configurationFile=file:{log4j} -Duser.timezone=UTC"
    conf = {
        "spark.master": s.master,
        "spark.app.name": s.app_name,
        "spark.driver.memory": s.driver_memory,
        "spark.executor.memory": s.executor_memory,
        "spark.sql.shuffle.partitions": str(s.shuffle_partitions),
        "spark.local.dir": local_dir,
        "spark.sql.warehouse.dir": (home / "warehouse").as_posix(),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Parquet timestamps as UTC microseconds (what DuckDB, pyarrow and Feast read), not INT96.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    if s.master.startswith("local"):
        # Local Python workers run this interpreter (the project's venv); on a cluster the
        # executors' Python comes from the cluster (docs/scale.md).
        conf["spark.pyspark.python"] = sys.executable
        conf["spark.pyspark.driver.python"] = sys.executable
    conf.update(s.conf)
    return conf


def spark_session(settings: Settings) -> SparkSession:
    """The SparkSession for these settings; an already running one is reused (a JVM per
    process: properties fixed at JVM start, such as memory, come from the first call)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is in the lock
        raise SparkError(f"pyspark is not installed ({exc}); run `make setup`") from exc

    home = settings.home / "spark"
    Path(settings.spark_local_dir).mkdir(parents=True, exist_ok=True)
    log4j = home / "log4j2.properties"
    if not log4j.is_file() or log4j.read_text() != LOG4J2:
        atomic.write_text(log4j, LOG4J2)
    builder = SparkSession.builder
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # Py4J / JVM start-up failures carry Java's own message
        raise SparkError(
            f"cannot start Spark (master {settings.spark.master!r}): {exc}; Spark needs Java 17 "
            "(JAVA_HOME) and a reachable master (spark.master in mlflow.yaml)"
        ) from exc
    if (
        settings.spark.master.startswith("local")
        and "spark.pyspark.python" not in settings.spark.conf
    ):
        # PySpark starts Python workers with $PYSPARK_PYTHON or `python3` (the system's, without
        # LightGBM or pyarrow), whatever spark.pyspark.python says: point them at this venv.
        session.sparkContext.pythonExec = sys.executable
    return session


def stop_spark() -> None:
    """Stop this process's SparkSession, if one runs (its JVM stays until the process ends)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover
        return
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def write_single_parquet(
    df: DataFrame, staging: Path, target: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write `df` (already sorted) with Spark's parallel writers into `staging`, then join its
    part files, in order, into the one parquet file at `target` that the embedded engine's
    readers expect (Feast's file source, batch scoring). Row groups are copied one at a time:
    memory stays at one row group however big the table. `metadata`: the file's key-value
    metadata."""
    import pyarrow.parquet as pq

    parts_dir = staging / f"{target.name}.parts"
    df.write.mode("overwrite").option("compression", "zstd").parquet(parts_dir.as_posix())
    parts = sorted(parts_dir.glob("part-*.parquet"))
    if not parts:
        raise SparkError(f"{parts_dir}: Spark wrote no part files")
    schema = pq.read_schema(parts[0]).remove_metadata()
    if metadata:
        schema = schema.with_metadata(metadata)
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for part in parts:
            file = pq.ParquetFile(part)
            for i in range(file.num_row_groups):
                writer.write_table(file.read_row_group(i).cast(schema))
    shutil.rmtree(parts_dir)
