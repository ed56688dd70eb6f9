"""Pure /proc and /sys parsers on captured and hand-written files; expectations worked out by hand."""

from __future__ import annotations

import contextlib

import pytest
from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon import _procfs as procfs
from tracklab_sysmon.errors import ParseError
from tracklab_sysmon.model import CpuTimes, DiskCounters, LoadAvg, MemInfo, NetCounters


def read(scenario: str, relpath: str) -> str:
    return (FIXTURES / scenario / "proc" / relpath).read_text()


# ---------------------------------------------------------------- /proc/diskstats


def test_diskstats_20_fields_reads_sectors_as_512_bytes() -> None:
    """A 20-field line (kernel >= 5.5) gives reads, 512-byte sectors read, writes and sectors written."""
    disks = {d.name: d for d in procfs.parse_diskstats(read("workstation", "diskstats"))}
    assert len(disks) == 14
    # sda: 1000 reads, 20000 sectors read, 2000 writes, 40000 sectors written.
    assert disks["sda"] == DiskCounters("sda", 1000, 10_240_000, 2000, 20_480_000)
    assert disks["cciss/c0d0"] == DiskCounters("cciss/c0d0", 300, 3_072_000, 100, 1_024_000)


def test_diskstats_captured_from_this_vm() -> None:
    """The captured 20-field file of the development VM parses to its vda counters."""
    disks = {d.name: d for d in procfs.parse_diskstats(read("vm-capture", "diskstats"))}
    assert sorted(disks) == [f"loop{i}" for i in range(8)] + ["vda", "zram0"]
    # 1717778 * 512 = 879502336; 2705016 * 512 = 1384968192
    assert disks["vda"] == DiskCounters("vda", 27068, 879_502_336, 8057, 1_384_968_192)


def test_diskstats_18_fields() -> None:
    """An 18-field line (kernels 4.18-5.4, discard counters, no flush) reads the same columns."""
    disks = {d.name: d for d in procfs.parse_diskstats(read("amd-desktop", "diskstats"))}
    # 160000 * 512 = 81920000; 80000 * 512 = 40960000
    assert disks["nvme0n1"] == DiskCounters("nvme0n1", 8000, 81_920_000, 4000, 40_960_000)
    assert disks["nvme0n1p1"] == DiskCounters("nvme0n1p1", 100, 1_024_000, 0, 0)


def test_diskstats_14_fields() -> None:
    """A 14-field line (kernels before 4.18) reads the same columns."""
    disks = {d.name: d for d in procfs.parse_diskstats(read("arm-board", "diskstats"))}
    # 120000 * 512 = 61440000; 24000 * 512 = 12288000
    assert disks["mmcblk0"] == DiskCounters("mmcblk0", 4000, 61_440_000, 1000, 12_288_000)


def test_diskstats_old_7_field_partition_lines() -> None:
    """The 2.6 partition form `reads sectors_read writes sectors_written` sits beside 14-field disk lines."""
    disks = {d.name: d for d in procfs.parse_diskstats(read("old-kernel", "diskstats"))}
    # hda1 35486 38030 38030 38030: 38030 * 512 = 19471360
    assert disks["hda1"] == DiskCounters("hda1", 35486, 19_471_360, 38030, 19_471_360)
    # hda2 410700 9512490 424800 5884000
    assert disks["hda2"] == DiskCounters("hda2", 410700, 4_870_394_880, 424800, 3_012_608_000)
    # hda as a 14-field disk line: reads 446216, sectors 9550688, writes 424847, sectors 5922052
    assert disks["hda"] == DiskCounters("hda", 446216, 4_889_952_256, 424847, 3_032_090_624)


def test_diskstats_skips_garbage_and_truncated_lines() -> None:
    """Lines with non-numbers or a cut-off field count are skipped; the good line survives."""
    text = (
        "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n"
        "   8      16 sdb x 0 0 0 0 0 0 0 0 0 0\n"  # not a number
        "   8      32 sdc 1 2 3\n"  # truncated mid-line
        "\n"
        "garbage\n"
    )
    assert procfs.parse_diskstats(text) == [DiskCounters("sda", 1, 3 * 512, 5, 7 * 512)]
    assert procfs.parse_diskstats("") == []


# ---------------------------------------------------------------- /proc/meminfo


def test_meminfo_converts_kb_to_bytes() -> None:
    """meminfo's kB values come out in bytes, with MemAvailable taken as is."""
    info = procfs.parse_meminfo(read("workstation", "meminfo"))
    assert info == MemInfo(
        total=32_768_000 * 1024,
        available=20_480_000 * 1024,
        swap_total=8_388_608 * 1024,
        swap_free=6_291_456 * 1024,
    )


def test_meminfo_without_memavailable_estimates_like_old_free() -> None:
    """Before 3.14 there is no MemAvailable: available = MemFree + Buffers + Cached (+ SReclaimable)."""
    info = procfs.parse_meminfo(read("old-kernel", "meminfo"))
    # 500000 + 100000 + 700000 kB (no SReclaimable in 2.6.18)
    assert info.available == 1_300_000 * 1024
    assert info.total == 2_075_084 * 1024
    text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 20 kB\nSReclaimable: 5 kB\n"
    assert procfs.parse_meminfo(text).available == 135 * 1024


def test_meminfo_estimate_never_exceeds_total() -> None:
    """An estimate larger than MemTotal (odd Cached accounting) is clamped to MemTotal."""
    text = "MemTotal: 100 kB\nMemFree: 90 kB\nCached: 50 kB\n"
    assert procfs.parse_meminfo(text).available == 100 * 1024


def test_meminfo_garbage_gives_unknowns_not_zeros() -> None:
    """Empty or garbled meminfo leaves every field None rather than 0."""
    assert procfs.parse_meminfo("") == MemInfo(None, None, None, None)
    assert procfs.parse_meminfo("MemTotal: lots kB\nnonsense\n:\n") == MemInfo(None, None, None, None)


# ---------------------------------------------------------------- /proc/net/dev


def test_net_dev_keeps_alias_style_names() -> None:
    """The name ends at the last colon, so `eth0:1` stays one interface with its own counters."""
    interfaces = procfs.parse_net_dev(read("workstation", "net/dev"))
    assert [i.name for i in interfaces] == ["lo", "eth0", "eth0:1", "wlan0"]
    assert interfaces[2] == NetCounters("eth0:1", 300_000, 3000, 60_000, 600)
    assert interfaces[1] == NetCounters("eth0", 10_000_000, 20_000, 2_000_000, 10_000)


def test_net_dev_counter_glued_to_colon() -> None:
    """2.6 kernels print a wide counter right after the colon (`eth0:4294967295`)."""
    interfaces = {i.name: i for i in procfs.parse_net_dev(read("old-kernel", "net/dev"))}
    assert interfaces["eth0"] == NetCounters("eth0", 4_294_967_295, 3_000_000, 123_456_789, 2_000_000)


def test_net_dev_skips_headers_garbage_and_truncated_lines() -> None:
    """Header rows, short lines and non-numeric counters are skipped."""
    text = (
        "Inter-|   Receive |  Transmit\n"
        " face |bytes packets|bytes packets\n"
        "  eth0: 1 2 0 0 0 0 0 0 3 4 0 0 0 0 0 0\n"
        "  eth1: 1 2 3\n"
        "  eth2: a b c d e f g h i j k l m n o p\n"
    )
    assert procfs.parse_net_dev(text) == [NetCounters("eth0", 1, 2, 3, 4)]


# ---------------------------------------------------------------- /proc/net/snmp, /proc/loadavg


def test_snmp_curr_estab_by_header_position() -> None:
    """CurrEstab is found by its header name, with or without the later InCsumErrors column."""
    assert procfs.parse_tcp_established(read("workstation", "net/snmp")) == 17
    assert procfs.parse_tcp_established(read("old-kernel", "net/snmp")) == 6
    assert procfs.parse_tcp_established(read("vm-capture", "net/snmp")) == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Ip: Forwarding\nIp: 1\n",
        "Tcp: RtoAlgorithm CurrEstab\n",  # header without values
        "Tcp: RtoAlgorithm CurrEstab\nTcp: 1\n",  # truncated values
        "Tcp: RtoAlgorithm CurrEstab\nTcp: 1 many\n",
    ],
)
def test_snmp_without_a_readable_tcp_table_raises(text: str) -> None:
    """A missing, truncated or garbled Tcp table is a ParseError, not a made-up 0."""
    with pytest.raises(ParseError):
        procfs.parse_tcp_established(text)


def test_loadavg() -> None:
    """loadavg gives three averages, the runnable count and the count of all threads."""
    assert procfs.parse_loadavg(read("workstation", "loadavg")) == LoadAvg(2.5, 2.1, 1.8, 3, 1500)
    assert procfs.parse_loadavg(read("vm-capture", "loadavg")).threads == 90


@pytest.mark.parametrize("text", ["", "0.1 0.2", "0.1 0.2 0.3 x/5 9", "a b c 1/2 3"])
def test_loadavg_garbage_raises(text: str) -> None:
    """A truncated or garbled loadavg is a ParseError."""
    with pytest.raises(ParseError):
        procfs.parse_loadavg(text)


# ---------------------------------------------------------------- /proc/stat


def test_stat_converts_ticks_to_seconds() -> None:
    """Each mode is ticks / USER_HZ; guest columns are not added again."""
    stat = procfs.parse_stat(read("workstation", "stat"), 100.0)
    assert stat.total == CpuTimes(800.0, 8.0, 160.0, 6400.0, 40.0, 4.0, 12.0, 0.8)
    assert [cpu_id for cpu_id, _ in stat.cores] == list(range(8))
    assert stat.cores[0][1] == CpuTimes(100.0, 1.0, 20.0, 800.0, 5.0, 0.5, 1.5, 0.1)


def test_stat_with_seven_columns_has_zero_steal() -> None:
    """2.6.x CPU lines stop after softirq; the missing steal column reads as 0."""
    stat = procfs.parse_stat(read("old-kernel", "stat"), 100.0)
    assert stat.cores[1] == (1, CpuTimes(15.0, 0.5, 4.5, 100.0, 2.5, 0.15, 0.35, 0.0))


def test_stat_skips_broken_core_lines_and_requires_the_aggregate() -> None:
    """A garbled or too-short cpuN line is skipped; no aggregate `cpu` line is a ParseError."""
    text = "cpu  1 0 1 8 0 0 0 0\ncpu0 x 0 0 0\ncpu1 1 0 1\ncpu2 1 0 1 8\n"
    stat = procfs.parse_stat(text, 1.0)
    assert [cpu_id for cpu_id, _ in stat.cores] == [2]
    with pytest.raises(ParseError):
        procfs.parse_stat("cpu0 1 2 3 4\nintr 5\n", 100.0)


# ---------------------------------------------------------------- /proc/cpuinfo


def test_cpuinfo_x86_model_and_physical_cores() -> None:
    """x86 cpuinfo gives `model name` and distinct (physical id, core id) pairs."""
    text = read("workstation", "cpuinfo")
    assert procfs.parse_cpu_model(text) == "Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz"
    assert procfs.parse_physical_cores(text) == 4  # 2 packages x 2 cores, 8 threads
    assert procfs.parse_physical_cores(read("old-kernel", "cpuinfo")) == 1  # one hyper-threaded P4
    assert procfs.parse_cpu_model(read("vm-capture", "cpuinfo")) == "Intel(R) Xeon(R) Processor"


def test_cpuinfo_arm64_vendor_kernel() -> None:
    """arm64 cpuinfo has no model name; the vendor kernel's `Hardware` line names the SoC."""
    text = read("arm-board", "cpuinfo")
    assert procfs.parse_cpu_model(text) == "BCM2835"
    assert procfs.parse_physical_cores(text) is None  # no physical id / core id lines


def test_cpuinfo_arm_variants() -> None:
    """Mainline arm64 gives no model (None); 32-bit ARM gives `model name` or old `Processor`."""
    mainline = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
    assert procfs.parse_cpu_model(mainline) is None
    armv7 = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\n\nHardware\t: BCM2835\n"
    assert procfs.parse_cpu_model(armv7) == "ARMv7 Processor rev 4 (v7l)"
    old_arm = "Processor\t: ARMv7 Processor rev 10 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 790.52\n"
    assert procfs.parse_cpu_model(old_arm) == "ARMv7 Processor rev 10 (v7l)"
    assert procfs.parse_cpu_model("") is None


# ---------------------------------------------------------------- mounts, filesystems, sysfs values


def test_mounts_decode_octal_escapes() -> None:
    """Mount points with \\040 (space), \\011, \\012, \\134 and \\043 come out decoded."""
    mounts = procfs.parse_mounts(read("workstation", "mounts"))
    assert ("/dev/sdd1", "/media/usb stick", "vfat") in mounts
    text = "/dev/sda1 /mnt/a\\011b\\012c\\134d\\043e ext4 rw 0 0\n/dev/sdb1 /x\\134040 xfs rw 0 0\n"
    assert procfs.parse_mounts(text) == [
        ("/dev/sda1", "/mnt/a\tb\nc\\d#e", "ext4"),
        ("/dev/sdb1", "/x\\040", "xfs"),  # an escaped backslash followed by the text "040"
    ]


def test_mounts_skip_truncated_lines() -> None:
    """A line with fewer than three fields is ignored."""
    assert procfs.parse_mounts("/dev/sda1 /\n\n/dev/sdb1 /data ext4 rw 0 0\n") == [
        ("/dev/sdb1", "/data", "ext4")
    ]


def test_block_filesystems_drop_nodev() -> None:
    """Only file systems without the `nodev` flag need a block device."""
    assert procfs.parse_block_filesystems(read("workstation", "filesystems")) == {
        "ext4", "vfat", "xfs", "squashfs",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [("52000\n", 52.0), ("-12500\n", -12.5), ("67125", 67.125), ("", None), ("N/A\n", None)],
)
def test_millidegrees(text: str, expected: float | None) -> None:
    """sysfs millidegrees, negative ones included, become °C; garbage becomes None."""
    assert procfs.parse_millidegrees(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3599998\n", 3599.998), ("800000", 800.0), ("<unsupported>\n", None), ("", None)],
)
def test_khz_as_mhz(text: str, expected: float | None) -> None:
    """cpufreq kHz become MHz; garbage becomes None."""
    assert procfs.parse_khz_as_mhz(text) == expected


# ---------------------------------------------------------------- any text at all

KERNELISH = st.text(alphabet=st.sampled_from(list("0123456789 :|/-.abcdeilmnoprstuvxy\n\t")), max_size=400)


@given(KERNELISH)
def test_list_parsers_never_raise_on_garbage(text: str) -> None:
    """diskstats, net/dev, meminfo and mounts parsers skip what they cannot read instead of raising."""
    assert all(d.read_bytes % 512 == 0 for d in procfs.parse_diskstats(text))
    assert all(n.name == n.name.strip() for n in procfs.parse_net_dev(text))
    info = procfs.parse_meminfo(text)
    assert info.available is None or info.total is None or info.available <= info.total
    assert all(len(m) == 3 for m in procfs.parse_mounts(text))


@given(KERNELISH)
def test_strict_parsers_raise_only_parse_error(text: str) -> None:
    """stat, loadavg and snmp parsers either return a record or raise ParseError, nothing else."""
    for parse in (lambda t: procfs.parse_stat(t, 100.0), procfs.parse_loadavg, procfs.parse_tcp_established):
        with contextlib.suppress(ParseError):
            parse(text)
