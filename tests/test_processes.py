"""The process list: /proc/PID parsers, the collector on fixture trees, and the REST routes against /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from procs_fixture import BTIME, HZ, PAGE, FakeProcess, stat_line, write_process, write_tree

from tracklab_sysmon._procfs_pid import (
    parse_btime,
    parse_cmdline,
    parse_pid_io,
    parse_pid_stat,
    parse_statm_resident,
    parse_status_uid,
)
from tracklab_sysmon.client import SystemMonitorClient
from tracklab_sysmon.collectors.processes import ProcessesCollector
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import NotFound, ParseError
from tracklab_sysmon.model import GpuProcessUse
from tracklab_sysmon.server import create_app, keys
from tracklab_sysmon.server.processes import PROCESSES

SLOW = 3600.0  # no background tick: a test ticks the sampler itself
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CONTAINER = "a" * 64

# ---------------------------------------------------------------- parsers


@given(name=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n"), max_size=15),
       pid=st.integers(1, 1 << 22), ppid=st.integers(0, 1 << 22), utime=st.integers(0, 1 << 40),
       stime=st.integers(0, 1 << 40), threads=st.integers(1, 1 << 16), start=st.integers(0, 1 << 50),
       rss=st.integers(0, 1 << 40))
def test_stat_parser_reads_back_what_was_written_whatever_the_name(name, pid, ppid, utime, stime, threads, start, rss):
    """A comm holding spaces, parentheses or digits never shifts the fields after it."""
    line = stat_line(FakeProcess(pid, ppid, name, utime, stime, threads, start, rss))
    stat = parse_pid_stat(line)
    assert (stat.pid, stat.name, stat.ppid, stat.cpu_ticks, stat.threads, stat.start_ticks, stat.rss_pages) == (
        pid, name, ppid, utime + stime, threads, start, rss)


@given(st.text(max_size=300))
def test_stat_parser_raises_only_parse_error_on_garbage(text):
    """Any text is either a stat line or a ParseError, never another exception."""
    with contextlib.suppress(ParseError):
        parse_pid_stat(text)


def test_stat_parser_on_this_process():
    """The parser agrees with os.getpid / os.getppid on the live file."""
    stat = parse_pid_stat(pathlib.Path("/proc/self/stat").read_text())
    assert (stat.pid, stat.ppid) == (os.getpid(), os.getppid())


@given(real=st.integers(0, 1 << 31), effective=st.integers(0, 1 << 31), head=st.sampled_from(["", "Name:\tx\n"]))
def test_status_parser_takes_the_effective_uid(real, effective, head):
    """Uid's second column is the effective uid, the one `ps -o user` shows."""
    text = f"{head}State:\tS\nUid:\t{real}\t{effective}\t{real}\t{real}\nGid:\t0\t0\t0\t0\n"
    assert parse_status_uid(text) == effective


@given(st.text(max_size=200))
def test_status_and_io_and_btime_parsers_raise_only_parse_error(text):
    """Garbage gives ParseError from every text parser."""
    for parse in (parse_status_uid, parse_pid_io, parse_btime):
        with contextlib.suppress(ParseError):
            parse(text)


@given(read=st.integers(0, 1 << 62), write=st.integers(0, 1 << 62))
def test_io_parser_reads_storage_bytes_not_chars(read, write):
    """read_bytes/write_bytes are taken, rchar/wchar are not."""
    text = (f"rchar: 7\nwchar: 8\nsyscr: 1\nsyscw: 1\nread_bytes: {read}\nwrite_bytes: {write}\n"
            "cancelled_write_bytes: 0\n")
    io = parse_pid_io(text)
    assert (io.read_bytes, io.write_bytes) == (read, write)


@given(st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b), max_size=20),
       st.integers(1, 2000))
def test_cmdline_joins_arguments_and_cuts_at_the_limit(args, limit):
    """NULs become spaces, the trailing NUL goes, and the text is never longer than the limit."""
    data = b"".join(a + b"\0" for a in args)
    text = parse_cmdline(data, limit)
    assert len(text) <= limit
    assert text == " ".join(a.decode("utf-8", "replace") for a in args)[:limit]


@given(st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_statm_parser_takes_the_resident_field(size, resident):
    """The second of statm's seven fields is resident pages."""
    assert parse_statm_resident(f"{size} {resident} 3 4 0 5 0\n") == resident


def test_btime_parser():
    """btime is found after other lines and only as a line of its own."""
    assert parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 3\n") == 1_700_000_000
    with pytest.raises(ParseError):
        parse_btime("cpu 1 2 3\nxbtime 5\n")


# ---------------------------------------------------------------- collector on fixture trees


def _collector(root: pathlib.Path, **kwargs) -> ProcessesCollector:
    return ProcessesCollector(str(root), clock_ticks=HZ, page_size=PAGE, **kwargs)


def test_cpu_and_io_rates_over_the_interval_between_two_reads(tmp_path):
    """cpu = Δ(utime+stime)/HZ/Δt * 100 and io = Δbytes/Δt, exactly, and null on the first read."""
    root = write_tree(tmp_path, [FakeProcess(10, utime=100, stime=50, read_bytes=1000, write_bytes=0)])
    collector = _collector(root)
    first = collector.collect(100.0).row(10)
    assert (first.cpu, first.read_rate, first.write_rate) == (None, None, None)
    write_process(root, FakeProcess(10, utime=250, stime=100, read_bytes=9000, write_bytes=4000))
    second = collector.collect(102.0).row(10)
    assert second.cpu == pytest.approx((250 + 100 - 150) / HZ / 2.0 * 100)  # 100 %
    assert (second.read_rate, second.write_rate) == (4000.0, 2000.0)
    assert second.start_time == (BTIME + 1000 / HZ) * 1000
    assert (second.rss, second.threads, second.fds, second.cmdline) == (256 * PAGE, 1, 3, "worker --flag")


def test_a_reused_pid_gets_no_rate_across_the_two_processes(tmp_path):
    """A new start time under the same pid is a new process: cpu and io start over (null), never a wild rate."""
    root = write_tree(tmp_path, [FakeProcess(10, utime=5000, start=1000, read_bytes=10**9)])
    collector = _collector(root)
    collector.collect(100.0).row(10)
    write_process(root, FakeProcess(10, utime=10, start=90_000, read_bytes=10))
    reused = collector.collect(101.0).row(10)
    assert (reused.cpu, reused.read_rate, reused.write_rate) == (None, None, None)
    write_process(root, FakeProcess(10, utime=60, start=90_000, read_bytes=110))
    later = collector.collect(102.0).row(10)
    assert later.cpu == pytest.approx(50.0)  # 50 ticks at 100 Hz in 1 s
    assert later.read_rate == 100.0


def test_unreadable_io_and_fd_are_null_not_zero(tmp_path):
    """Where /proc/PID/io or fd/ may not be read (another user's process), the figure is null."""
    root = write_tree(tmp_path, [FakeProcess(10, read_bytes=None, fds=None)])
    row = _collector(root).collect(1.0).row(10)
    assert (row.fds, row.read_rate, row.write_rate) == (None, None, None)


def test_top_sorts_and_filters_by_user(tmp_path):
    """sort=memory orders by rss, ties by pid; user= matches a numeric uid; gpu_memory uses the injected source."""
    procs = [FakeProcess(pid, rss_pages=rss, uid=uid) for pid, rss, uid in
             ((10, 100, 0), (11, 300, 4242), (12, 300, 0), (13, 50, 4242))]
    gpu = {13: (GpuProcessUse(0, "nvidia", 5 << 30, 40.0),), 10: (GpuProcessUse(1, "nvidia", 1 << 30, None),)}
    table = _collector(write_tree(tmp_path, procs), gpu_usage=lambda: gpu).collect(1.0)
    assert [r.pid for r in table.top(3, "memory")] == [11, 12, 10]
    assert [r.pid for r in table.top(10, "memory", user="4242")] == [11, 13]
    assert [r.pid for r in table.top(2, "gpu_memory")] == [13, 10]
    assert table.row(13).gpu == gpu[13]


def test_a_failing_gpu_source_costs_only_the_gpu_columns(tmp_path, caplog):
    """A GPU source that raises (a vendor library gone bad) leaves the list whole, with no GPU use."""
    def broken():
        raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

    table = _collector(write_tree(tmp_path, [FakeProcess(10), FakeProcess(11)]), gpu_usage=broken).collect(1.0)
    assert [(r.pid, r.gpu) for r in table.top(5, "memory")] == [(10, ()), (11, ())]
    assert "NVML_ERROR_GPU_IS_LOST" in caplog.text


def test_cgroup_and_container_id_of_a_process(tmp_path):
    """The v1 memory hierarchy's path is reported on a hybrid host, with the container id written in it."""
    cgroup = f"12:memory:/docker/{CONTAINER}\n4:cpu,cpuacct:/docker/{CONTAINER}\n0::/system.slice/docker.service\n"
    row = _collector(write_tree(tmp_path, [FakeProcess(10, cgroup=cgroup)])).collect(1.0).row(10)
    assert (row.cgroup, row.container_id) == (f"/docker/{CONTAINER}", CONTAINER)


def test_processes_sharing_or_not_a_cgroup_text_each_get_their_own(tmp_path):
    """The parse is cached by text: processes with the same text agree, one moved elsewhere gets its new group."""
    docker = f"12:memory:/docker/{CONTAINER}\n0::/system.slice/docker.service\n"
    procs = [FakeProcess(10, cgroup=docker), FakeProcess(11, cgroup=docker), FakeProcess(12, cgroup="0::/user.slice\n")]
    collector = _collector(write_tree(tmp_path, procs))
    table = collector.collect(1.0)
    assert [(table.row(pid).cgroup, table.row(pid).container_id) for pid in (10, 11, 12)] == [
        (f"/docker/{CONTAINER}", CONTAINER), (f"/docker/{CONTAINER}", CONTAINER), ("/user.slice", None)]
    write_process(tmp_path, FakeProcess(11, cgroup="0::/user.slice\n"))  # moved between two collections
    assert collector.collect(2.0).row(11).cgroup == "/user.slice"


def test_tree_sums_every_descendant_on_a_fixture(tmp_path):
    """pids, rss, threads, fds and per-device GPU memory are the exact sums over the root and its descendants."""
    procs = [FakeProcess(1, ppid=0), FakeProcess(20, ppid=1, rss_pages=10, threads=2, fds=4),
             FakeProcess(21, ppid=20, rss_pages=20, threads=3, fds=None), FakeProcess(22, ppid=21, rss_pages=30),
             FakeProcess(30, ppid=1, rss_pages=999)]
    gpu = {21: (GpuProcessUse(0, "nvidia", 100, 10.0),), 22: (GpuProcessUse(0, "nvidia", 50, None),
                                                               GpuProcessUse(1, "amd", 7, 1.0))}
    tree = _collector(write_tree(tmp_path, procs), gpu_usage=lambda: gpu).collect(1.0).tree(20)
    assert tree.pids == (20, 21, 22)
    assert (tree.rss, tree.threads, tree.fds) == (60 * PAGE, 6, 7)
    assert tree.gpu == (GpuProcessUse(1, "amd", 7, 1.0), GpuProcessUse(0, "nvidia", 150, 10.0))


# ---------------------------------------------------------------- REST against the live /proc


class CountingCollector(ProcessesCollector):
    """Counts collections (the /proc walks)."""

    calls = 0
    on_loop_thread = False

    def collect(self, now):
        self.calls += 1
        self.on_loop_thread |= threading.current_thread() is threading.main_thread()  # the tests' loop runs there
        return super().collect(now)


@pytest.fixture
async def service(aiohttp_client):
    app = create_app(ServiceConfig(node_id="procs", interval=SLOW), collectors=(), processes=CountingCollector())
    client = await aiohttp_client(app)
    return client, app


def _spawn(code: str) -> subprocess.Popen:
    """A child in its own session (killed as a group at the end), ready once it printed a line."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert child.stdout.readline()
    return child


@pytest.fixture
def children():
    spawned: list[subprocess.Popen] = []
    yield lambda code: spawned.append(_spawn(code)) or spawned[-1]
    for child in spawned:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()


def _cpu_ticks(pid: int) -> int:
    return parse_pid_stat(pathlib.Path(f"/proc/{pid}/stat").read_text()).cpu_ticks


async def _process(client, pid: int, tree: bool = False) -> dict:
    response = await client.get(f"/api/system/processes/{pid}", params={"tree": "1" if tree else "0"})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_cpu_of_a_busy_child_matches_its_stat_over_the_same_window(service, children):
    """The cpu % between two reads a tick apart equals the child's own utime+stime delta over (about) that window.

    Tolerance 10 percentage points: our window and the service's differ by the two requests' durations.
    """
    client, app = service
    child = children("print(1, flush=True)\nwhile True: pass")
    ticks_before, before = _cpu_ticks(child.pid), time.monotonic()
    await _process(client, child.pid)
    await asyncio.sleep(1.5)
    await app[keys.SAMPLER].tick()
    row = (await _process(client, child.pid))["process"]
    ticks_after, after = _cpu_ticks(child.pid), time.monotonic()
    ours = (ticks_after - ticks_before) / CLK_TCK / (after - before) * 100
    assert ours > 30, "the busy child got too little CPU on this machine to compare"
    assert row["cpu"] == pytest.approx(ours, abs=10)


async def test_rss_and_threads_of_children_match_proc(service, children):
    """rss = statm resident * page size (within a page) for a child holding 64 MiB; threads exact for 8 threads."""
    client, _ = service
    holder = children("import time\nb = b'x' * (64 << 20)\nprint(1, flush=True)\ntime.sleep(60)")
    threaded = children("import threading, time\nfor _ in range(7): threading.Thread(target=time.sleep, args=(60,), "
                        "daemon=True).start()\nprint(1, flush=True)\ntime.sleep(60)")
    held = (await _process(client, holder.pid))["process"]
    assert abs(held["rss"] - _statm_rss(holder.pid)) <= PAGE_SIZE
    assert held["rss"] > 64 << 20
    assert (await _process(client, threaded.pid))["process"]["threads"] == 8


async def test_tree_of_a_spawned_family_sums_exactly_against_proc(service, children):
    """A root with two children, one with a grandchild: members, rss and threads summed as /proc says."""
    client, _ = service
    leaf = "import time; print(1, flush=True); time.sleep(60)"
    middle = f"import subprocess, sys, time\np = subprocess.Popen([sys.executable, '-c', {leaf!r}], " \
             "stdout=subprocess.PIPE)\np.stdout.readline(); print(1, flush=True); time.sleep(60)"
    root = children(f"import subprocess, sys, time\nkids = [subprocess.Popen([sys.executable, '-c', c], "
                    f"stdout=subprocess.PIPE) for c in ({middle!r}, {leaf!r})]\n"
                    "[k.stdout.readline() for k in kids]; print(1, flush=True); time.sleep(60)")
    tree = (await _process(client, root.pid, tree=True))["tree"]
    members = _descendants(root.pid)
    assert sorted(tree["pids"]) == sorted(members) and len(members) == 4
    stats = [parse_pid_stat(pathlib.Path(f"/proc/{pid}/stat").read_text()) for pid in members]
    assert tree["rss"] == sum(_statm_rss(pid) for pid in members)
    assert tree["threads"] == sum(s.threads for s in stats)


def _statm_rss(pid: int) -> int:
    return int(pathlib.Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ParseError):
                parents[int(entry)] = parse_pid_stat(pathlib.Path(f"/proc/{entry}/stat").read_text()).ppid
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += frontier
    return found


async def test_list_sorted_by_memory_and_filtered_by_user(service):
    """top=N gives N rows in descending rss; user= keeps only that user's processes."""
    client, _ = service
    response = await client.get("/api/system/processes", params={"top": "5", "sort": "memory"})
    body = await response.json()
    rss = [p["rss"] for p in body["processes"]]
    assert len(rss) == 5 and rss == sorted(rss, reverse=True) and body["total"] >= 5
    me = str(os.geteuid())
    mine = await (await client.get("/api/system/processes", params={"top": "1000", "user": me})).json()
    assert os.getpid() in {p["pid"] for p in mine["processes"]}
    assert {p["user"] for p in mine["processes"]} == {mine["processes"][0]["user"]}


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/api/system/processes", {"top": "0"}, 400),
    ("/api/system/processes", {"top": "abc"}, 400),
    ("/api/system/processes", {"top": "1001"}, 400),
    ("/api/system/processes", {"sort": "name"}, 400),
    ("/api/system/processes", {"user": ""}, 400),
    ("/api/system/processes/abc", {}, 400),
    ("/api/system/processes/-3", {}, 400),
    ("/api/system/processes/0", {}, 400),
    ("/api/system/processes/1", {"tree": "yes"}, 400),
    ("/api/system/processes/4194304", {}, 404),
])
async def test_bad_parameters_and_unknown_pids_get_json_errors(service, path, params, status):
    """Bad top/sort/user/pid/tree are 400, a pid that is not running is 404, each as a JSON error body."""
    client, _ = service
    response = await client.get(path, params=params)
    assert response.status == status
    assert (await response.json())["error"]["code"] == {400: "bad_request", 404: "not_found"}[status]


async def test_twenty_concurrent_requests_in_one_tick_share_one_collection(service):
    """20 requests in one tick walk /proc once, in a worker thread; the next tick walks it once more."""
    client, app = service
    collector = app[PROCESSES].collector
    responses = await asyncio.gather(*(client.get("/api/system/processes", params={"top": "3"}) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert collector.calls == 1
    await app[keys.SAMPLER].tick()
    await asyncio.gather(*(client.get(f"/api/system/processes/{os.getpid()}") for _ in range(20)))
    assert collector.calls == 2
    assert not collector.on_loop_thread


async def test_client_methods_decode_typed_records(service):
    """get_processes and get_process(tree=True) return records; an unknown pid is NotFound."""
    client, _ = service
    async with SystemMonitorClient(str(client.make_url(""))) as api:
        rows = await api.get_processes(top=3, sort="memory")
        tree = await api.get_process(os.getpid(), tree=True)
        alone = await api.get_process(os.getpid())
        with pytest.raises(NotFound):
            await api.get_process(4_194_304)
    assert len(rows) == 3 and rows[0].rss >= rows[1].rss >= rows[2].rss
    assert tree.root.pid == alone.pid == os.getpid() and tree.pids[0] == os.getpid()
    assert tree.rss >= alone.rss


async def test_without_proc_the_routes_answer_503_json(aiohttp_client, tmp_path):
    """Where there is no /proc (macOS, Windows), both routes say so as a JSON 503, not a 500."""
    collector = ProcessesCollector(str(tmp_path / "no-proc"))
    client = await aiohttp_client(create_app(ServiceConfig(node_id="p", interval=SLOW), collectors=(),
                                             processes=collector))
    for path in ("/api/system/processes", "/api/system/processes/1"):
        response = await client.get(path)
        assert response.status == 503
        expected = f"no process list without {tmp_path / 'no-proc'} (Linux only)"
        assert (await response.json())["error"] == {"code": "unavailable", "message": expected}
