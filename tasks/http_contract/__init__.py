"""The HTTP contract: the API as API Gateway runs it, shared by the shim, the deployer and
the worker without their importing one another.

* `openapi`: the OpenAPI document with API Gateway's extensions (`build_openapi`), for the
  jobs the caller passes in (tasks.jobkit.registry.all_jobs());
* `mapping_templates` and `templates/*.vtl`: the Velocity mapping templates;
* `vtl`: the renderer playing API Gateway's `$input`, `$util` and `$context`;
* `record`: the job record as JSON over HTTP (GET /jobs/{job_id}, callback bodies).

It imports no registry, app, worker or shim (tests/test_import_contracts.py): only
tasks.ops for the queue's and table's limits and names.
"""
