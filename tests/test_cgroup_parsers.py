"""The pure cgroup/PSI parsers: exact records for each kernel format, and only ParseError on any other text."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon.collectors import cgroup_files as cg
from tracklab_sysmon.errors import ParseError
from tracklab_sysmon.model import PsiFigures, ResourcePressure

HEX64 = "4f1c2a9be0d3c7a85e6f4b2d1c0a9e8f7d6c5b4a39281706f5e4d3c2b1a09f8e"
UID = "5e3c1f2a-7b8d-4c6e-9f0a-1b2c3d4e5f60"

# ---------------------------------------------------------------- one-value and keyed files


def test_cpu_max_reads_quota_and_period_and_max_as_unlimited():
    """cpu.max `250000 100000` is (250000, 100000); `max 100000` has no quota."""
    assert cg.parse_cpu_max("250000 100000\n") == (250000, 100000)
    assert cg.parse_cpu_max("max 100000\n") == (None, 100000)


@pytest.mark.parametrize("text", ["", "max", "250000", "1 2 3", "max 0", "abc 100000", "100 -5"])
def test_cpu_max_rejects_other_shapes(text):
    """A cpu.max without exactly a quota and a positive period is a ParseError."""
    with pytest.raises(ParseError):
        cg.parse_cpu_max(text)


def test_limit_files_read_max_as_none_and_v1_sentinel_as_none():
    """`max` (v2) and v1's 9223372036854771712 mean unlimited (None); real limits are kept exactly."""
    assert cg.parse_max("max\n") is None
    assert cg.parse_max("4294967296\n") == 4294967296
    assert cg.parse_v1_limit("9223372036854771712\n") is None
    assert cg.parse_v1_limit("2147483648\n") == 2147483648
    assert cg.parse_int("-1\n") == -1


def test_keyed_file_reads_cpu_stat():
    """cpu.stat's `key value` lines become a dict of ints."""
    text = "usage_usec 7200000000\nnr_periods 50000\nnr_throttled 1200\nthrottled_usec 45500000\n"
    assert cg.parse_keyed(text) == {
        "usage_usec": 7200000000, "nr_periods": 50000, "nr_throttled": 1200, "throttled_usec": 45500000,
    }


@pytest.mark.parametrize("text", ["usage_usec\n", "a 1 2\n", "a x\n"])
def test_keyed_file_rejects_lines_that_are_not_key_value(text):
    """A line without exactly one integer after the key is a ParseError."""
    with pytest.raises(ParseError):
        cg.parse_keyed(text)


def test_cpu_list_reads_ranges_and_singles():
    """`0-3,8,10-11` is seven CPUs; an empty cpuset is the empty set."""
    assert cg.parse_cpu_list("0-3,8,10-11\n") == frozenset({0, 1, 2, 3, 8, 10, 11})
    assert cg.parse_cpu_list("\n") == frozenset()


@pytest.mark.parametrize("text", ["3-1", "0-", ",1", "a", "1,,2", "-2"])
def test_cpu_list_rejects_bad_ranges(text):
    """Reversed, open or non-numeric ranges are a ParseError."""
    with pytest.raises(ParseError):
        cg.parse_cpu_list(text)


# ---------------------------------------------------------------- io

def test_io_stat_reads_each_device():
    """v2 io.stat gives bytes and ops per MAJ:MIN; unknown keys (dbytes) are ignored."""
    text = (
        "8:0 rbytes=1048576 wbytes=4194304 rios=256 wios=1024 dbytes=0 dios=0\n"
        "259:0 rbytes=1 wbytes=2 rios=3 wios=4\n"
    )
    assert cg.parse_io_stat(text) == (
        cg.IoStat(8, 0, 1048576, 4194304, 256, 1024),
        cg.IoStat(259, 0, 1, 2, 3, 4),
    )


def test_blkio_reads_read_and_write_per_device_and_skips_the_total():
    """v1 blkio.throttle.* gives (Read, Write) per device; Sync/Async/Total lines do not count."""
    text = "8:0 Read 2097152\n8:0 Write 1048576\n8:0 Sync 3145728\n8:0 Total 3145728\n8:16 Write 5\nTotal 3145733\n"
    assert cg.parse_blkio(text) == {(8, 0): (2097152, 1048576), (8, 16): (0, 5)}


@pytest.mark.parametrize(("parse", "text"), [
    (cg.parse_blkio, "8:0 Read\n"), (cg.parse_blkio, "8:0 Read 1 2\n"), (cg.parse_blkio, "sda Read 1\n"),
    (cg.parse_blkio, "8:0 Write x\n"), (cg.parse_io_stat, "8:0 rbytes\n"), (cg.parse_io_stat, "8 rbytes=1\n"),
    (cg.parse_io_stat, "8:0 rbytes=x\n"),
])
def test_io_parsers_reject_malformed_lines(parse, text):
    """A device line with a missing field, a name instead of MAJ:MIN or a non-number is a ParseError."""
    with pytest.raises(ParseError):
        parse(text)


# ---------------------------------------------------------------- PSI

def test_psi_reads_some_and_full_in_percent_and_seconds():
    """avg figures stay in % as written; total µs becomes seconds."""
    text = "some avg10=12.50 avg60=8.25 avg300=3.10 total=987654321\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    pressure = cg.parse_psi(text)
    assert pressure.some == PsiFigures(12.5, 8.25, 3.1, 987.654321)
    assert pressure.full == PsiFigures(0.0, 0.0, 0.0, 0.0)


def test_psi_without_a_full_line_has_full_none():
    """Older kernels write only `some` for cpu: full is None, not zeros."""
    assert cg.parse_psi("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n").full is None


@pytest.mark.parametrize("text", [
    "", "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", "some avg10=1.00\n",
    "some avg10=x avg60=0 avg300=0 total=0\n", "other avg10=0 avg60=0 avg300=0 total=0\n",
    "some avg10=101.00 avg60=0 avg300=0 total=0\n", "some avg10=0 avg60=0 avg300=0 total=-1\n",
])
def test_psi_rejects_other_text(text):
    """No `some` line, a missing figure, an unknown line or an out-of-range value is a ParseError."""
    with pytest.raises(ParseError):
        cg.parse_psi(text)


# ---------------------------------------------------------------- /proc/self/cgroup and mountinfo

def test_proc_cgroup_reads_v1_and_v2_lines():
    """`N:ctrl,ctrl:/path` and `0::/path` become entries with their controllers."""
    text = "12:cpu,cpuacct:/docker/abc\n1:name=systemd:/init.scope\n0::/user.slice\n"
    assert cg.parse_proc_cgroup(text) == (
        cg.CgroupEntry(12, ("cpu", "cpuacct"), "/docker/abc"),
        cg.CgroupEntry(1, ("name=systemd",), "/init.scope"),
        cg.CgroupEntry(0, (), "/user.slice"),
    )


@pytest.mark.parametrize("text", ["garbage\n", "1:cpu\n", "x:cpu:/a\n", "1:cpu:relative\n"])
def test_proc_cgroup_rejects_other_lines(text):
    """A line that is not `ID:controllers:/path` is a ParseError."""
    with pytest.raises(ParseError):
        cg.parse_proc_cgroup(text)


def test_mountinfo_lists_cgroup_mounts_with_controllers_and_root():
    """Only cgroup/cgroup2 mounts are kept, with the mount root, controllers (flags dropped) and escapes undone."""
    text = (
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid master:1 - cgroup cgroup rw,cpu,cpuacct\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd\n"
        "41 31 0:38 / /mnt/my\\040cgroup rw shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    assert cg.parse_mountinfo_cgroups(text) == (
        cg.CgroupMount("/sys/fs/cgroup/cpu,cpuacct", "/docker/abc", 1, ("cpu", "cpuacct")),
        cg.CgroupMount("/sys/fs/cgroup/systemd", "/", 1, ("name=systemd",)),
        cg.CgroupMount("/mnt/my cgroup", "/", 2, ()),
    )


def test_mountinfo_rejects_a_line_without_the_separator():
    """A mountinfo line without ` - fstype source` is a ParseError."""
    with pytest.raises(ParseError):
        cg.parse_mountinfo_cgroups("1 2 3 / /x rw\n")


# ---------------------------------------------------------------- identity

@pytest.mark.parametrize(("path", "expected"), [
    (f"/docker/{HEX64}", {"container_id": HEX64}),
    (f"/system.slice/docker-{HEX64}.scope", {"container_id": HEX64, "systemd_unit": f"docker-{HEX64}.scope"}),
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
        f"cri-containerd-{HEX64}.scope",
        {"container_id": HEX64, "pod_uid": UID, "qos_class": "burstable",
         "systemd_unit": f"cri-containerd-{HEX64}.scope"},
    ),
    (
        f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{HEX64}.scope",
        {"container_id": HEX64, "pod_uid": UID, "qos_class": "guaranteed", "systemd_unit": f"crio-{HEX64}.scope"},
    ),
    (f"/kubepods/besteffort/pod{UID}/{HEX64}", {"container_id": HEX64, "pod_uid": UID, "qos_class": "besteffort"}),
    (f"/kubepods/pod{UID}/{HEX64}", {"container_id": HEX64, "pod_uid": UID, "qos_class": "guaranteed"}),
    ("/slurm/uid_1000/job_4242/step_0/task_0", {"slurm_job_id": "4242"}),
    ("/system.slice/slurmstepd.scope/job_77/step_batch", {"slurm_job_id": "77", "systemd_unit": "slurmstepd.scope"}),
    ("/system.slice/train.service", {"systemd_unit": "train.service"}),
    ("/", {}),
])
def test_identity_from_cgroup_paths(path, expected):
    """Container id, pod UID (underscores to dashes), QoS class, Slurm job and unit are read from the path."""
    ident = cg.parse_identity(path, 2)
    fields = ("container_id", "pod_uid", "qos_class", "slurm_job_id", "systemd_unit")
    assert {f: getattr(ident, f) for f in fields} == {f: expected.get(f) for f in fields}
    assert (ident.path, ident.version) == (path, 2)


# ---------------------------------------------------------------- hypothesis: only ParseError, round trips

PARSERS = [
    cg.parse_int, cg.parse_max, cg.parse_v1_limit, cg.parse_cpu_max, cg.parse_keyed, cg.parse_key_equals,
    cg.parse_cpu_list, cg.parse_io_stat, cg.parse_blkio, cg.parse_psi, cg.parse_proc_cgroup,
    cg.parse_mountinfo_cgroups,
]


def _some_keys(text: str) -> dict[str, int]:
    return cg.parse_keys(text, ("anon", "file", "oom_kill"))


PARSERS.append(_some_keys)


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__name__)
@given(text=st.text(max_size=200))
def test_parsers_raise_only_parse_error_on_any_text(parse, text):
    """Whatever the text, a parser returns a value or raises ParseError: nothing else escapes."""
    with contextlib.suppress(ParseError):
        parse(text)


@given(path=st.text(max_size=200))
def test_identity_never_raises(path):
    """Any path gives an identity carrying that path."""
    assert cg.parse_identity(path, 1).path == path


@given(cpus=st.frozensets(st.integers(0, 511), max_size=64))
def test_cpu_list_round_trips(cpus):
    """Formatting a cpu set the kernel's way and parsing it back gives the same set."""
    assert cg.parse_cpu_list(cg.format_cpu_list(cpus)) == cpus


_avg = st.decimals(min_value=0, max_value=100, places=2).map(lambda d: float(d))


@given(avgs=st.tuples(_avg, _avg, _avg), total=st.integers(0, 2**63 - 1), full=st.booleans())
def test_psi_round_trips(avgs, total, full):
    """A PSI file written with the kernel's format parses back to its figures (total µs as seconds)."""
    line = f"avg10={avgs[0]:.2f} avg60={avgs[1]:.2f} avg300={avgs[2]:.2f} total={total}"
    text = f"some {line}\n" + (f"full {line}\n" if full else "")
    figures = PsiFigures(*avgs, total / 1e6)
    assert cg.parse_psi(text) == ResourcePressure(figures, figures if full else None)


@given(quota=st.one_of(st.none(), st.integers(1, 10**9)), period=st.integers(1, 10**6))
def test_cpu_max_round_trips(quota, period):
    """`$MAX $PERIOD` as the kernel writes it parses back to the same pair."""
    assert cg.parse_cpu_max(f"{'max' if quota is None else quota} {period}\n") == (quota, period)


@given(stats=st.lists(st.tuples(*[st.integers(0, 2**40)] * 6), max_size=5))
def test_io_stat_round_trips(stats):
    """io.stat lines written in the kernel's order parse back to the same records."""
    text = "".join(f"{a}:{b} rbytes={c} wbytes={d} rios={e} wios={f} dbytes=0 dios=0\n" for a, b, c, d, e, f in stats)
    assert cg.parse_io_stat(text) == tuple(cg.IoStat(*s) for s in stats)


_key = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@given(pairs=st.dictionaries(_key, st.integers(0, 2**63 - 1), max_size=20), wanted=st.lists(_key, max_size=5))
def test_searching_keys_agrees_with_parsing_every_line(pairs, wanted):
    """parse_keys finds exactly what parse_keyed would give for those keys (no prefix or mid-line matches)."""
    text = "".join(f"{k} {v}\n" for k, v in pairs.items())
    everything = cg.parse_keyed(text)
    assert everything == pairs
    assert cg.parse_keys(text, tuple(wanted)) == {k: everything[k] for k in wanted if k in everything}
