"""`wrap_log`: add system metrics to another tracker's log function (wandb.log, mlflow.log_metrics, ...).

Needs a running service; TRACKLAB_SYSMON_URL points at it (default http://localhost:8080).
A stand-in `log_metrics` prints what a tracker would receive, so no tracker is needed here;
with wandb installed the same line reads `log = wrap_log(wandb.log)`.
"""

import os

from tracklab_sysmon.sdk import SystemMetricsConfig, init_system_metrics, shutdown_system_metrics, wrap_log


def log_metrics(metrics, step=None):
    """Stands in for a tracker's log call."""
    shown = ", ".join(f"{key}={value}" for key, value in sorted(metrics.items()))
    print(f"step {step}: {shown}")


init_system_metrics(SystemMetricsConfig(service_url=os.environ.get("TRACKLAB_SYSMON_URL", "http://localhost:8080")))
log = wrap_log(log_metrics)
log({"loss": 1.0}, step=0)
log(metrics={"loss": 0.5}, step=1)  # by the parameter's name, as mlflow callers often write it
shutdown_system_metrics()
