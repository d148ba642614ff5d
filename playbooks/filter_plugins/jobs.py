"""Filters of playbooks/job.yml: what the controller checks of a job spec
before any host is touched.

``job_id_problem(spec)`` -> "" when the spec's job id is valid, else one
message naming the field, the value and what is valid. The pattern is the
worker app's own (``sfnode.spec.JOB_ID_RE``): the job id becomes a file name
on every participant, so a traversing id must never reach a host.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    from sfnode.spec import JOB_ID_RE
except ImportError:  # a controller venv without the app installed: use the checkout's
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from sfnode.spec import JOB_ID_RE


def job_id_problem(spec: Any) -> str:
    job_id = spec.get("job_id") if isinstance(spec, dict) else None
    if isinstance(job_id, str) and JOB_ID_RE.fullmatch(job_id):
        return ""
    shown = "missing" if job_id is None else repr(job_id)
    return (f"job spec field job_id: {shown} is not a valid job id; expected "
            f"{JOB_ID_RE.pattern} (it names the job's files on every participant)")


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"job_id_problem": job_id_problem}
