"""Cloud Function `backup` (Pub/Sub CloudEvent, published daily by Cloud Scheduler): one
scheduled backup run (docs/operations.md). All logic lives in `ion`."""

from typing import Any

import functions_framework

from ion.entrypoints import events as consumers


@functions_framework.cloud_event
def backup(cloud_event: Any) -> None:
    consumers.scheduled_backup(cloud_event)
