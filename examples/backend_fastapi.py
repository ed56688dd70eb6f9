"""The seed's "Backend Integration" snippet, runnable: a FastAPI app with the metrics relay.

Needs the fastapi extra and a running service (TRACKLAB_SYSMON_URL, default
http://127.0.0.1:8080). `python examples/backend_fastapi.py` serves the app on 127.0.0.1:8000
(PORT changes it): GET /api/system/status, and the seed's JavaScript connects to
ws://localhost:8000/ws/system-metrics.
"""

import os

from fastapi import FastAPI

from tracklab_sysmon.client import SystemMonitorClient
from tracklab_sysmon.integrations.fastapi import setup_websocket_routes

app = FastAPI()

# Add WebSocket endpoint for real-time metrics
setup_websocket_routes(app)


# Use in endpoints
@app.get("/api/system/status")
async def get_system_status():
    async with SystemMonitorClient() as client:
        if not await client.health_check():
            return {"status": "error", "message": "System monitor not available"}

        info = await client.get_system_info()
        metrics = await client.get_formatted_metrics()

        return {
            "status": "ok",
            "system": info,
            "metrics": metrics,
        }


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
