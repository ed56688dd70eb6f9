"""A stand-in for libtpu's runtime metrics service: the gRPC service of the checked-in proto on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent import futures

import grpc

from tracklab_sysmon import _tpu
from tracklab_sysmon._tpu_proto import tpu_metric_service_pb2 as pb
from tracklab_sysmon._tpu_proto.tpu_metric_service_pb2_grpc import (
    RuntimeMetricServiceServicer,
    add_RuntimeMetricServiceServicer_to_server,
)

GIB = 1 << 30
# A v5e host's four chips as the service reports them: HBM in bytes (int gauges), duty cycle in % (double gauges).
V5E = {
    _tpu.MEMORY_USED: {0: 2 * GIB, 1: 3 * GIB, 2: 0, 3: 512 << 20},
    _tpu.MEMORY_TOTAL: {0: 16 * GIB, 1: 16 * GIB, 2: 16 * GIB, 3: 16 * GIB},
    _tpu.DUTY_CYCLE: {0: 87.5, 1: 12.25, 2: 0.0, 3: 100.0},
}


def response(name: str, points: Mapping[int, float]) -> pb.MetricResponse:
    """What libtpu answers for one metric: one point per device, the device id as an int attribute."""
    metrics = []
    for device, value in points.items():
        gauge = pb.Gauge(as_double=value) if isinstance(value, float) else pb.Gauge(as_int=int(value))
        metrics.append(pb.Metric(attribute=pb.Attribute(key="device-id", value=pb.AttrValue(int_attr=device)),
                                 gauge=gauge))
    return pb.MetricResponse(metric=pb.TPUMetric(name=name, description="stand-in", metrics=metrics))


class StandInService(RuntimeMetricServiceServicer):
    """Answers GetRuntimeMetric from `metrics` (replace it to change what the next call sees); counts calls."""

    def __init__(self, metrics: Mapping[str, Mapping[int, float]] = V5E) -> None:
        self.metrics = dict(metrics)
        self.calls: list[str] = []
        self.hang = threading.Event()  # set: every call waits until released (a wedged runtime)
        self.release = threading.Event()

    def GetRuntimeMetric(self, request: pb.MetricRequest, context: grpc.ServicerContext) -> pb.MetricResponse:
        self.calls.append(request.metric_name)
        if self.hang.is_set():
            self.release.wait(30)
        if request.metric_name not in self.metrics:
            context.abort(grpc.StatusCode.NOT_FOUND, f"metric {request.metric_name} not supported")
        return response(request.metric_name, self.metrics[request.metric_name])


class StandInServer:
    """The service on 127.0.0.1 (local credentials, as libtpu); `stop` and `start` again on the same port."""

    def __init__(self, service: StandInService, port: int = 0) -> None:
        self.service = service
        self.port = port
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> StandInServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add_RuntimeMetricServiceServicer_to_server(self.service, server)
        credentials = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        self.port = server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.service.release.set()
            self._server.stop(grace=None).wait(5)
            self._server = None


class BusyService(StandInService):
    """A working TPU's answers: every call sees each device's duty cycle and used HBM moved (for benchmarks, so that
    no record of the call before can be reused)."""

    def GetRuntimeMetric(self, request: pb.MetricRequest, context: grpc.ServicerContext) -> pb.MetricResponse:
        n = len(self.calls)
        self.metrics[_tpu.DUTY_CYCLE] = {d: (n * 7 + d * 13) % 10001 / 100 for d in self.metrics[_tpu.DUTY_CYCLE]}
        self.metrics[_tpu.MEMORY_USED] = {d: GIB + (n * (d + 1) << 20) for d in self.metrics[_tpu.MEMORY_USED]}
        return super().GetRuntimeMetric(request, context)


def serve_forever(devices: int, busy: bool = False) -> None:
    """The service with `devices` devices (1 GiB of 16 used, 50 % duty; `busy`: moving every call), its address on
    stdout; for benchmarks."""
    import time

    metrics = {_tpu.MEMORY_USED: dict.fromkeys(range(devices), GIB),
               _tpu.MEMORY_TOTAL: dict.fromkeys(range(devices), 16 * GIB),
               _tpu.DUTY_CYCLE: dict.fromkeys(range(devices), 50.0)}
    server = StandInServer((BusyService if busy else StandInService)(metrics)).start()  # kept: else stopped
    print(server.address, flush=True)
    time.sleep(3600)
    server.stop()


if __name__ == "__main__":
    import sys

    serve_forever(int(sys.argv[1]) if len(sys.argv) > 1 else 8, busy="--busy" in sys.argv[2:])
