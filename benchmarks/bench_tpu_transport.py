"""The TPU collector's transport side by side: grpcio's channel against `_grpc_unary` (plain HTTP/2 in the caller).

Each contender runs in a child process of its own against the stand-in metrics service (tests/tpu_standin.py,
8 devices, a process of its own) and asks the duty cycle, as the collector does every tick:
  grpcio  a secure channel with local credentials and `unary_unary` fed the serialized request (what the
          collector did before), the answer parsed by protobuf
  unary   `_tpu.MetricsClient._ask`: `_grpc_unary.UnaryChannel.call`, the answer parsed by protobuf
and reports: RSS added by importing the contender and by its first call (MiB, /proc/self/statm); CALLS calls back to
back (thread CPU per call, and the process's CPU per call: any helper thread of the transport included); then
CADENCE calls one second apart, as the service makes them, with the process's CPU over the whole span divided by
the seconds (what the transport costs a second, its threads between the calls included) and the calling thread's
CPU per call (cold caches). The contenders alternate, ROUNDS times.
Usage: bench_tpu_transport.py [--rounds 3] [--calls 2000] [--cadence 20]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

from proc_usage import commit, uptime

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTENDERS = ("grpcio", "unary")


def child(contender: str, address: str, calls: int, cadence: int) -> None:
    """Prints one JSON line: the contender's RSS steps, hot and 1 Hz costs."""

    def rss() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    from tracklab_sysmon._tpu_proto.tpu_metric_service_pb2 import MetricResponse  # protobuf: both contenders'

    base = rss()
    if contender == "grpcio":
        import grpc

        imported = rss()
        from tracklab_sysmon import _tpu  # the method and the serialized request only (after the RSS step)

        request = _tpu._REQUESTS[_tpu.DUTY_CYCLE]
        channel = grpc.secure_channel(address, grpc.local_channel_credentials())
        stub = channel.unary_unary(_tpu._METHOD, request_serializer=None, response_deserializer=None)

        def ask() -> object:
            return MetricResponse.FromString(stub(request, timeout=0.5))
    else:
        from tracklab_sysmon import _tpu

        imported = rss()
        client = _tpu.MetricsClient(address)

        def ask() -> object:
            return client._ask(_tpu.DUTY_CYCLE, time.monotonic() + 0.5)

    for _ in range(100):  # the first calls connect
        try:
            ask()
            break
        except Exception:  # not connected yet: either transport's error
            time.sleep(0.05)
    connected = rss()
    for _ in range(50):
        ask()
    thread, process = [], []
    for _ in range(calls):
        t0, p0 = time.thread_time_ns(), time.process_time_ns()
        ask()
        thread.append(time.thread_time_ns() - t0)
        process.append(time.process_time_ns() - p0)
    cold: list[int] = []
    p0 = time.process_time_ns()
    for _ in range(cadence):
        time.sleep(1.0)
        t0 = time.thread_time_ns()
        ask()
        cold.append(time.thread_time_ns() - t0)
    per_second = (time.process_time_ns() - p0) / cadence
    print(json.dumps({"import": imported - base, "connect": connected - imported,
                      "hot_thread": statistics.median(thread), "hot_process": statistics.mean(process),
                      "second": per_second, "cold_thread": statistics.median(cold)}))


def span(runs: list[dict[str, float]], key: str, scale: float) -> str:
    """The lowest and highest of the rounds' values (one value for one round)."""
    values = [r[key] / scale for r in runs]
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def run(rounds: int, calls: int, cadence: int) -> None:
    server = subprocess.Popen([sys.executable, str(ROOT / "tests/tpu_standin.py"), "8"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        address = server.stdout.readline().strip()
        before = uptime()
        results: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS}
        for _ in range(rounds):
            for name in CONTENDERS:
                done = subprocess.run([sys.executable, __file__, "--child", name, address, str(calls), str(cadence)],
                                      capture_output=True, text=True, check=True)
                results[name].append(json.loads(done.stdout))
    finally:
        server.kill()
        server.wait()
    print(f"TPU transport, 8 devices, {rounds} rounds in turn ({calls} calls back to back, {cadence} at 1 Hz); "
          f"commit {commit()}")
    print(f"uptime before: {before}")
    print(f"{'contender':<9} {'+RSS import':>11} {'+RSS call':>9} {'hot thread':>10} {'hot process':>11} "
          f"{'1 Hz: CPU/s':>11} {'1 Hz: thread':>12}")
    for name, runs in results.items():
        cells = [span(runs, key, scale) for key, scale in (("import", 1), ("connect", 1), ("hot_thread", 1e3),
                                                           ("hot_process", 1e3), ("second", 1e6),
                                                           ("cold_thread", 1e3))]
        print(f"{name:<9} {cells[0]:>11} {cells[1]:>9} {cells[2]:>10} {cells[3]:>11} {cells[4]:>11} {cells[5]:>12}")
    print("(MiB; µs per call; ms of the process's CPU per second at 1 Hz, its threads in; µs of the calling thread"
          " per call at 1 Hz)")
    print(f"uptime after: {uptime()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--calls", type=int, default=2000)
        parser.add_argument("--cadence", type=int, default=20)
        args = parser.parse_args()
        run(args.rounds, args.calls, args.cadence)
