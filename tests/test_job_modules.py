"""Your own jobs without editing the framework: JOBS_MODULES names a package outside tasks/
and the worker, the shim's OpenAPI and the deploy's schedules all take it from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT

JOB = textwrap.dedent('''
    """A user's jobs, in a package of their own."""
    from tasks.jobkit.registry import job
    from tasks.jobkit.schedules import Schedule


    @job(schema={"type": "object", "properties": {"name": {"type": "string"}},
                 "required": ["name"], "additionalProperties": False},
         schedule=Schedule("rate(1 day)", kwargs={"name": "daily"}, name="acme-daily"))
    def greet(self, name):
        """Say hello."""
        return {"hello": name}
''')


def user_package(root: Path) -> str:
    """A package `acme_<id>` with a `jobs` module under `root`; returns its module name."""
    package = root / f"acme_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(JOB)
    return f"{package.name}.jobs"


def user_env(root: Path, modules: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)]),
        "JOBS_MODULES": modules,
        "JOBS_EXTRA_MODULES": "",
    }


def test_a_job_module_outside_tasks_is_registered_listed_and_scheduled(tmp_path):
    module = user_package(tmp_path)
    code = textwrap.dedent("""
        import json
        import tasks
        from api_shim.app import create_app
        from ecs.schedules import deployed_schedules
        from ecs.stack import Options, Stack

        app = tasks.app
        paths = create_app().test_client().get("/openapi.json").get_json()["paths"]
        stack = Stack("t1", "us-east-1", "1", Options(job_modules=app.settings.job_modules))
        print(json.dumps({
            "registered": sorted(n for n in app.tasks if not n.startswith("celery.")),
            "paths": sorted(paths),
            "schedules": sorted(deployed_schedules()),
            "task_env": stack.worker_environment()["JOBS_MODULES"]}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=user_env(tmp_path, module),
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    task = f"{module}.greet"
    assert task in seen["registered"]
    assert "tasks.text.analyze" not in seen["registered"]  # JOBS_MODULES replaces the default
    assert f"/tasks/{task}" in seen["paths"]
    assert "/tasks/tasks.text.analyze" not in seen["paths"]
    assert seen["schedules"] == ["acme-daily"]
    assert seen["task_env"] == module


@pytest.mark.integration
def test_a_real_worker_runs_a_job_of_a_user_module(tmp_path, stack, start_worker):
    from tasks.client import app as client

    module = user_package(tmp_path)
    start_worker(
        concurrency=1,
        pool="solo",
        env={
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
            "JOBS_MODULES": f"{module},tasks.debug",
            "JOBS_EXTRA_MODULES": "",
        },
    )
    result = client.send_task(f"{module}.greet", kwargs={"name": "you"})
    assert result.get(timeout=60) == {"hello": "you"}
