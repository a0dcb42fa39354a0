"""The pages' scripts name the same statuses as the enums the store and the API use."""

import re
from pathlib import Path

from thaw.job_status import TASK_TERMINAL_STATUSES, TERMINAL_STATUSES, JobStatus, TaskStatus

STATIC = Path(__file__).resolve().parents[1] / "service" / "api" / "static"


def _js_set(script: str, name: str) -> set[str]:
    match = re.search(rf"const {name} = new Set\(\[([^\]]*)\]\);", (STATIC / script).read_text())
    assert match is not None, f"{script} no longer declares {name}"
    return set(re.findall(r'"([a-z_]+)"', match.group(1)))


def test_the_job_page_ends_polling_on_the_terminal_job_statuses():
    assert _js_set("job.js", "TERMINAL") == {str(s) for s in TERMINAL_STATUSES}


def test_the_after_training_panel_polls_while_a_task_is_not_terminal():
    pending = {str(s) for s in TaskStatus if s not in TASK_TERMINAL_STATUSES}
    assert _js_set("after.js", "PENDING") == pending


def test_every_status_a_script_names_is_one_of_the_enums():
    names = {str(s) for s in JobStatus} | {str(s) for s in TaskStatus}
    for script in STATIC.glob("*.js"):
        for status in re.findall(r'status === "([a-z_]+)"', script.read_text()):
            assert status in names, (script.name, status)
