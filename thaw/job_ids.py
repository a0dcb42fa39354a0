"""The job id pattern, below the store: checking an id needs no Redis client."""

from __future__ import annotations

import re

JOB_ID = re.compile(r"^job_[0-9a-f]{24}$")
