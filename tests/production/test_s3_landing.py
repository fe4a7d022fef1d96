"""S3 landing round trip on a local S3 server (moto): generate -> dbt-duckdb load -> marts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import boto3
import duckdb
import pytest
from moto.server import ThreadedMotoServer

from examples.billing.generate import GenerateSpec, generate
from restate.actions import load_once
from restate.engines import connect
from restate.engines.object_store import landing_filesystem, s3_filesystem
from restate.settings import Settings
from tests.conftest import expected_daily_sql, table_rows
from tests.production.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.s3]

SPEC = {"end_date": date(2026, 10, 31), "months": 1, "accounts": 40, "events_per_day": 80, "seed": 5}
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_region": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="landing")
    yield endpoint
    server.stop()


def test_generate_load_and_read_back_through_s3(s3_endpoint: str, tmp_path) -> None:
    s = Settings(  # type: ignore[arg-type]
        data_dir=tmp_path, landing_uri="s3://landing/billing", s3_endpoint_url=s3_endpoint, **KEYS
    )
    fs = landing_filesystem(s)
    assert fs is not None
    spec = GenerateSpec(**SPEC, ingested_until=datetime(2026, 10, 20))  # type: ignore[arg-type]
    landed = generate(spec, s.landing, s.finance, duckdb.connect(), filesystem=fs).rows_landed
    files = fs.glob("landing/billing/events/*/*.parquet")
    assert landed > 500 and len(files) >= 15  # one folder per event_date
    assert not (tmp_path / "landing").exists()  # nothing was written locally

    result = load_once(s.model_copy(update={"project_vars": {"revenue_logic": "v2"}}))
    assert result.status == "success" and result.rows_in_window == landed

    # The marts equal an independent computation over the same S3 objects.
    with connect(s) as e:
        expected = table_rows(
            e.con,
            "select event_date, account_id, currency, gross_revenue, refunds, net_revenue from "
            f"({expected_daily_sql('s3://landing/billing/events/*/*.parquet')})",
        )
        built = table_rows(
            e.con,
            "select event_date, account_id, currency, gross_revenue, refunds, net_revenue "
            "from analytics.fct_revenue_daily",
        )
    assert built == expected and len(built) > 100


def test_prefect_aws_credentials_block_reaches_the_landing(s3_endpoint: str) -> None:
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    from restate.engines.credentials import aws_credentials_storage_options

    block = AwsCredentials(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_endpoint),
    )
    fs = s3_filesystem(aws_credentials_storage_options(block, None))
    fs.pipe("landing/probe/hello.txt", b"restate")
    assert fs.cat("landing/probe/hello.txt") == b"restate"
    wrong = AwsCredentials(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    # Without the endpoint the block points at AWS itself: no such bucket from here.
    assert aws_credentials_storage_options(wrong, None).get("client_kwargs", {}).get("endpoint_url") is None
