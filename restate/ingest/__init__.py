"""Landing and incremental loads: landed files checked (bad ones quarantined with a
reason), loads recorded with their watermark, reports on them."""
