"""One local Spark session for every Spark test (starting a JVM takes ~10 s), stopped at the
end of the test session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from clm.settings import Settings, SparkSettings
from tests.fixtures.bank import make_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# local[2] with little memory: the machine is small and shared.
TEST_SPARK = SparkSettings(master="local[2]", driver_memory="1g", shuffle_partitions=2)


def with_test_spark(settings: Settings) -> Settings:
    return settings.model_copy(update={"spark": TEST_SPARK})


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    from clm.spark import spark_session

    session = spark_session(with_test_spark(make_settings(tmp_path_factory.mktemp("spark"))))
    yield session
    session.stop()
