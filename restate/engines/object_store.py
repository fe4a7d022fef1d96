"""The raw landing on object storage: an fsspec filesystem for s3:// URIs (else None)."""

from __future__ import annotations

from typing import Any

from fsspec import AbstractFileSystem

from restate.settings import Settings


def s3_storage_options(settings: Settings) -> dict[str, Any]:
    """s3fs options from the settings or a prefect-aws AwsCredentials block (AWS chain if unset)."""
    if settings.aws_credentials_block:
        from restate.engines.credentials import aws_block_storage_options

        return aws_block_storage_options(settings.aws_credentials_block, settings.s3_endpoint_url)
    options: dict[str, Any] = {}
    if settings.aws_access_key_id:
        options["key"] = settings.aws_access_key_id
    if settings.aws_secret_access_key:
        options["secret"] = settings.aws_secret_access_key.get_secret_value()
    client: dict[str, Any] = {}
    if settings.s3_endpoint_url:
        client["endpoint_url"] = settings.s3_endpoint_url
    if settings.aws_region:
        client["region_name"] = settings.aws_region
    if client:
        options["client_kwargs"] = client
    return options


def s3_filesystem(storage_options: dict[str, Any]) -> AbstractFileSystem:
    import s3fs

    # No listing cache: the landing grows while loads read it.
    fs: AbstractFileSystem = s3fs.S3FileSystem(use_listings_cache=False, **storage_options)
    return fs


def landing_filesystem(settings: Settings) -> AbstractFileSystem | None:
    """The filesystem DuckDB needs to read the landing, or None for a local folder."""
    if not settings.landing.startswith("s3://"):
        return None
    return s3_filesystem(s3_storage_options(settings))
