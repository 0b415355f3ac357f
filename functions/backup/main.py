"""Cloud Function `backup` (Pub/Sub CloudEvent, published daily by Cloud Scheduler): one
scheduled backup run (docs/operations.md). All logic lives in `ion`."""

from typing import Any

import functions_framework

from ion import bootstrap
from ion.entrypoints import events


@functions_framework.cloud_event
def backup(cloud_event: Any) -> None:
    events.scheduled_backup(cloud_event, bootstrap.get_worker())
