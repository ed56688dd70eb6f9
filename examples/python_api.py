"""The seed's "Python API" snippet, runnable: start a SystemMonitor, read info and metrics, stop it.

Run `python examples/python_api.py`. The seed's port 8080 is the default; set
TRACKLAB_SYSMON_PORT to use another (0 picks any free port).
"""

import asyncio
import os

from tracklab_sysmon import SystemMonitor

# Start the system monitor
monitor = SystemMonitor(
    rest_port=int(os.environ.get("TRACKLAB_SYSMON_PORT", "8080")),
    enable_dcgm=False,  # Enable NVIDIA DCGM if available
    node_id="worker-01",  # For distributed setups
    verbose=True,
)


# Using context manager
async def main():
    async with monitor.client as client:
        # Get system information
        info = await client.get_system_info()
        print(f"System: {info['platform']} with {info['cpu_cores']} CPU cores")

        # Get real-time metrics
        metrics = await client.get_formatted_metrics()
        print(f"CPU Usage: {metrics['cpu']['overall']:.1f}%")
        print(f"Memory Usage: {metrics['memory']['usage']:.1f}%")


asyncio.run(main())

# Stop the monitor
monitor.stop()
