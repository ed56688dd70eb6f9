"""The seed's "Global Instance" snippet, runnable: one process-wide monitor, used, then stopped.

Run `python examples/global_instance.py`. The seed's port 8080 is the default; set
TRACKLAB_SYSMON_PORT to use another (0 picks any free port).
"""

import asyncio
import os

from tracklab_sysmon import get_global_monitor, start_system_monitor, stop_system_monitor

# Start global instance
start_system_monitor(rest_port=int(os.environ.get("TRACKLAB_SYSMON_PORT", "8080")))

# Use it
monitor = get_global_monitor()
print(f"Global monitor serving at {monitor.url}")


async def use():
    async with monitor.client as client:
        metrics = await client.get_formatted_metrics()
        print(f"CPU Usage: {metrics['cpu']['overall']:.1f}%")
        print(f"Memory Usage: {metrics['memory']['usage']:.1f}%")


asyncio.run(use())

# Stop when done
stop_system_monitor()
print(f"Stopped: {get_global_monitor() is None}")
