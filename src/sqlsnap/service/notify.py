"""Notifications: a JSON POST to a webhook when an export fails (any export: scheduled or
started by hand) and, with ``on_success``, when one succeeds.

The body is the job's summary and nothing secret: the source by its name, error messages
already masked, no URL with credentials. The webhook's own URL often is a secret (chat
webhooks carry their token in the path), so it comes from ``webhook_url_env`` or
``webhook_url_file`` like a source's URL, and the audit trail shows only its scheme and host.
A webhook that does not answer within ``timeout_seconds`` is recorded as failed; the export's
outcome does not change.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from . import audit
from .schedule_config import NotifyConfig
from .state import State

log = logging.getLogger("sqlsnap.service.notify")

def payload(job: dict[str, Any]) -> dict[str, Any]:
    """What the webhook receives: the job as the API shows it, minus its options."""
    summary = job.get("summary") or {}
    return {"event": f"export.{job['status']}", "job": job["id"], "status": job["status"],
            "actor": job["actor"],
            "source": job["source"], "destination": job["destination"], "path": job["path"],
            "started": job["started"], "finished": job["finished"], "seconds": job["seconds"],
            "error": job["error"], "rows": summary.get("rows"), "bytes": summary.get("bytes"),
            "sha256": summary.get("sha256")}


class Notifier:
    """Called by :class:`.jobs.Jobs` when a job ends."""

    def __init__(self, config: NotifyConfig, state: State, jobs: Any) -> None:
        self.config, self.state, self.jobs = config, state, jobs
        jobs.on_end.append(self.job_ended)

    def job_ended(self, job_id: int) -> None:
        job = self.jobs.get(job_id)
        if job["status"] == "succeeded" and not self.config.on_success:
            return
        body = json.dumps(payload(job)).encode()
        request = urllib.request.Request(self.config.webhook_url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "sqlsnap-service"})
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_seconds) as answer:  # noqa: S310
                outcome, detail = "ok", {"status": answer.status}
        except urllib.error.HTTPError as exc:
            outcome, detail = "failed", {"status": exc.code}
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            outcome, detail = "failed", {"error": f"{type(reason).__name__}: {reason}"[:200]}
        audit.record(self.state, actor="service", action="notify", target=f"job {job_id}", outcome=outcome,
                     detail={"webhook": self.config.shown, "event": f"export.{job['status']}", **detail})
