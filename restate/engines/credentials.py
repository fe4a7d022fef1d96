"""Warehouse and object-store credentials: from settings, or from Prefect blocks by name.

Production keeps secrets in Prefect blocks (prefect-snowflake `SnowflakeCredentials`,
prefect-aws `AwsCredentials`), so workers need no secret in their environment. The
block libraries are imported only when a block name is configured: the core library
otherwise stays free of Prefect.
"""

from __future__ import annotations

from typing import Any

from restate.settings import Settings


def snowflake_connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for snowflake.connector.connect()."""
    if settings.snowflake_credentials_block:
        from prefect_snowflake import SnowflakeCredentials

        block = SnowflakeCredentials.load(settings.snowflake_credentials_block)
        kwargs = snowflake_block_kwargs(block)
    else:
        kwargs = {
            "account": settings.snowflake_account,
            "user": settings.snowflake_user,
            "password": (
                settings.snowflake_password.get_secret_value() if settings.snowflake_password else None
            ),
            "role": settings.snowflake_role,
        }
    kwargs.update(
        {
            "database": settings.snowflake_database,
            "warehouse": settings.snowflake_warehouse,
            "schema": settings.prod_schema,
            "protocol": settings.snowflake_protocol,
            "login_timeout": 30,
            "network_timeout": 600,
        }
    )
    if settings.snowflake_host:
        kwargs["host"] = settings.snowflake_host
    if settings.snowflake_port:
        kwargs["port"] = settings.snowflake_port
    return {k: v for k, v in kwargs.items() if v is not None}


def snowflake_block_kwargs(block: Any) -> dict[str, Any]:
    """Account, user and secret of a prefect-snowflake SnowflakeCredentials block."""
    password = block.password.get_secret_value() if block.password else None
    return {
        "account": block.account,
        "user": block.user,
        "password": password,
        "role": block.role,
        "authenticator": block.authenticator,
    }


def aws_block_storage_options(block_name: str, endpoint_url: str | None) -> dict[str, Any]:
    """s3fs options from a prefect-aws AwsCredentials block."""
    from prefect_aws import AwsCredentials

    return aws_credentials_storage_options(AwsCredentials.load(block_name), endpoint_url)


def aws_credentials_storage_options(block: Any, endpoint_url: str | None) -> dict[str, Any]:
    secret = block.aws_secret_access_key.get_secret_value() if block.aws_secret_access_key else None
    client: dict[str, Any] = {}
    endpoint = endpoint_url or block.aws_client_parameters.endpoint_url
    if endpoint:
        client["endpoint_url"] = endpoint
    if block.region_name:
        client["region_name"] = block.region_name
    options: dict[str, Any] = {"key": block.aws_access_key_id, "secret": secret}
    if block.aws_session_token:
        options["token"] = block.aws_session_token.get_secret_value()
    if client:
        options["client_kwargs"] = client
    return {k: v for k, v in options.items() if v is not None}
