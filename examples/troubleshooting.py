"""The seed's "Troubleshooting" snippets, runnable: a verbose monitor and a longer SDK cache.

Run `python examples/troubleshooting.py`. The seed's port 8080 is the default; set
TRACKLAB_SYSMON_PORT to use another (0 picks any free port). The service's log goes to stderr.
"""

import os

from tracklab_sysmon import SystemMonitor
from tracklab_sysmon.sdk import SystemMetricsConfig

# Enable verbose logging
monitor = SystemMonitor(rest_port=int(os.environ.get("TRACKLAB_SYSMON_PORT", "8080")), verbose=True)
print(f"Verbose monitor at {monitor.url} (its log is on stderr)")
monitor.stop()

# Increase cache duration
config = SystemMetricsConfig(cache_duration=5.0)
print(f"SDK refreshes system metrics every {config.cache_duration:g} s")
