"""The seed's "SDK Integration" snippet, runnable: every `run.log` line carries system metrics.

Needs a running service (`tracklab-sysmon serve`); the seed's http://localhost:8080 is the
default, TRACKLAB_SYSMON_URL points elsewhere. `tracklab.init` is `tracklab_sysmon.init`.
The run's JSON lines go to ./tracklab-runs/my-project/ (TRACKLAB_SYSMON_DIR moves them).
"""

import os

import tracklab_sysmon as tracklab
from tracklab_sysmon.sdk import SystemMetricsConfig, init_system_metrics

# Initialize system metrics collection
config = SystemMetricsConfig(
    enabled=True,
    service_url=os.environ.get("TRACKLAB_SYSMON_URL", "http://localhost:8080"),
    include_gpu=True,
    cache_duration=1.0,  # Cache metrics for 1 second
)
init_system_metrics(config)

# Now all tracklab logs will include system metrics
run = tracklab.init(project="my-project")
run.log({"accuracy": 0.95})  # This will include system metrics
run.finish()

print(f"Logged to {run.path}:")
print(run.path.read_text(), end="")
