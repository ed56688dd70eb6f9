"""scripts/gpu-check.sh end to end on the NVML stand-in, with a stand-in nvidia-smi printing known CSV."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import require_command
from nvml_stub.build import build_stub, stub_env

SCRIPT = str(pathlib.Path(__file__).parent.parent / "scripts" / "gpu-check.sh")
ROW = ("{i}, NVIDIA Stub A100-SXM4-40GB, GPU-00000000-0000-0000-0000-00000000000{i}, 00000000:1{i}:00.0, 1{i}, 5, "
       "{used}, 40960, 4{i}, 10{i}.00, 400.00, 3{i}, 1410, 1215, P{p}, Disabled, {i}, 0")


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> pathlib.Path:
    require_command("cc")  # make test installs gcc (SYSTEM_DEPS); under CI its absence fails
    return build_stub(tmp_path_factory.mktemp("nvml"))


def _tools(folder: pathlib.Path) -> pathlib.Path:
    """A PATH folder with only the tools the script uses, so a real nvidia-smi elsewhere is never found."""
    folder.mkdir()
    for tool in ("dirname", "head"):
        (folder / tool).symlink_to(shutil.which(tool))
    return folder


def _fake_smi(folder: pathlib.Path, rows: list[str]) -> pathlib.Path:
    _tools(folder)
    script = folder / "nvidia-smi"
    body = "\n".join(f"  echo '{r}'" for r in rows)
    script.write_text(f"#!/bin/sh\ncase \"$*\" in\n *driver_version*) echo 550.54.15 ;;\n *)\n{body}\n ;;\nesac\n")
    script.chmod(0o755)
    return folder


def _run(stub: pathlib.Path, bin_dir: pathlib.Path, **scenario: str) -> subprocess.CompletedProcess:
    env = stub_env(stub, **scenario)
    env["PYTHON"] = sys.executable
    env["PATH"] = str(bin_dir)
    bash = shutil.which("bash")
    return subprocess.run([bash, SCRIPT, "20"], env=env, capture_output=True, text=True, timeout=120)


def test_agreeing_fields_pass_and_print_a_markdown_table(stub, tmp_path):
    """When nvidia-smi agrees with the collector the check exits 0 with a row per field and the tick cost."""
    rows = [ROW.format(i=i, used=1024 * (i + 1), p=i * 8) for i in range(2)]
    done = _run(stub, _fake_smi(tmp_path / "bin", rows), gpus="2")
    assert done.returncode == 0, done.stderr
    assert "| 1 | uuid | GPU-00000000-0000-0000-0000-000000000001 |" in done.stdout
    assert "Cost per tick over 20 ticks (ms): profiling off median" in done.stdout
    assert "0 stable field(s) disagree" in done.stdout


def test_a_stable_field_that_disagrees_fails_the_check(stub, tmp_path):
    """A mismatching identity field (here memory.total) is flagged and makes the check exit 1."""
    rows = [ROW.format(i=0, used=1024, p=0).replace("40960", "81920")]
    done = _run(stub, _fake_smi(tmp_path / "bin", rows), gpus="1")
    assert done.returncode == 1
    assert "| 0 | memory.total MiB | 40960.0 | 81920.0 | **NO** |" in done.stdout


def test_volatile_drift_is_reported_but_does_not_fail(stub, tmp_path):
    """A utilisation reading that moved between the two reads is shown as volatile, not a failure."""
    rows = [ROW.format(i=0, used=1024, p=0).replace(", 10, 5,", ", 90, 5,")]
    done = _run(stub, _fake_smi(tmp_path / "bin", rows), gpus="1")
    assert done.returncode == 0, done.stdout
    assert "| 0 | utilization % | 10.0 | 90.0 | no (volatile) |" in done.stdout


def test_without_nvidia_smi_the_check_says_so_and_exits_2(stub, tmp_path):
    """On a machine without nvidia-smi the check prints one reason and exits 2."""
    done = _run(stub, _tools(tmp_path / "bin"))
    assert done.returncode == 2 and "nvidia-smi not found" in done.stderr


# ---------------------------------------------------------------- the fabric: NVLink and InfiniBand

NVLINK_SMI = """GPU 0: NVIDIA Stub A100-SXM4-40GB (UUID: GPU-00000000-0000-0000-0000-000000000000)
\t Link 0: Data Tx: {tx0} KiB
\t Link 0: Data Rx: 2000200 KiB
\t Link 1: Data Tx: 1000200 KiB
\t Link 1: Data Rx: 2000400 KiB"""
PERFQUERY = r"""#!/bin/sh
# Stand-in perfquery -x -C DEVICE -P PORT: prints the port's extended counters from the fixture tree,
# in infiniband-diags' "Name:.....value" layout.
while [ $# -gt 0 ]; do case "$1" in -C) dev=$2; shift ;; -P) port=$2; shift ;; esac; shift; done
c="$SYSMON_SYS_ROOT/class/infiniband/$dev/ports/$port/counters"
echo "# Port extended counters: Lid 1 port $port (CapMask: 0x5A00)"
echo "PortXmitData:....................$(cat $c/port_xmit_data)"
echo "PortRcvData:.....................$(cat $c/port_rcv_data)"
echo "PortXmitPkts:....................$(cat $c/port_xmit_packets)"
echo "PortRcvPkts:.....................$(cat $c/port_rcv_packets)"
"""


RDMA = r"""#!/bin/sh
# Stand-in `rdma -j statistic show link DEV/PORT` (iproute2): the port's hw counters from the fixture tree,
# in the tool's JSON layout (an array of one object per link: ifname, port, then each counter by name).
# RDMA_SKEW is added to tx_bytes, to plant a disagreement.
link=$5; dev=${link%/*}; port=${link#*/}
h="$SYSMON_SYS_ROOT/class/infiniband/$dev/ports/$port/hw_counters"
printf '[{"ifname":"%s","port":%s' "$dev" "$port"
for name in tx_bytes rx_bytes tx_pkts rx_pkts rx_drops; do
  value=$(cat "$h/$name")
  [ "$name" = tx_bytes ] && value=$((value + ${RDMA_SKEW:-0}))
  printf ',"%s":%s' "$name" "$value"
done
echo '}]'
"""


def _fabric_tools(folder: pathlib.Path, tx0: int, perfquery: bool, rdma: bool = False) -> pathlib.Path:
    """nvidia-smi answering the GPU CSV and `nvlink -gt d`; perfquery and rdma reading the fixture, if asked for."""
    rows = [ROW.format(i=0, used=1024, p=0)]
    _fake_smi(folder, rows)
    smi = folder / "nvidia-smi"
    nvlink = "\n".join(f"  echo '{line}'" for line in NVLINK_SMI.format(tx0=tx0).splitlines())
    smi.write_text(smi.read_text().replace('case "$*" in\n', f'case "$*" in\n *nvlink*)\n{nvlink}\n ;;\n', 1))
    (folder / "cat").symlink_to(shutil.which("cat"))
    if perfquery:
        (folder / "perfquery").write_text(PERFQUERY)
        (folder / "perfquery").chmod(0o755)
    if rdma:
        (folder / "rdma").write_text(RDMA)
        (folder / "rdma").chmod(0o755)
    return folder


def _run_fabric(stub, bin_dir, sys_root: pathlib.Path, rdma_skew: int = 0,
                **scenario: str) -> subprocess.CompletedProcess:
    env = stub_env(stub, **scenario)
    env.update(PYTHON=sys.executable, PATH=str(bin_dir), SYSMON_SYS_ROOT=str(sys_root), RDMA_SKEW=str(rdma_skew))
    return subprocess.run([shutil.which("bash"), SCRIPT, "5"], env=env, capture_output=True, text=True, timeout=120)


def test_nvlink_and_infiniband_counters_agree_with_the_vendor_tools(stub, tmp_path):
    """Each NVLink counter lies between our reads around nvidia-smi's; each port's words equal perfquery's."""
    from conftest import FIXTURES

    done = _run_fabric(stub, _fabric_tools(tmp_path / "bin", 1000100, perfquery=True),
                       FIXTURES / "infiniband-hca" / "sys", gpus="1", nvlink="2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| 0 | 0 | active | tx | 1024102400 B | 1000100 KiB | 1024204800 B | yes |" in done.stdout
    # error counters: the field values and NVML's per-link call agree (the stand-in: 100 x kind + link)
    assert "| 0 | 1 | replay | 201 | 201 | 201 | yes |" in done.stdout
    assert "| 0 | 0 | crc_data | 100 | 100 | 100 | yes |" in done.stdout
    row = "| mlx5_0/1 | InfiniBand | active | 200000000000.0 | PortXmitData | 10000000000 | 2500000000 |"
    assert row in done.stdout
    assert "| mlx5_1/1 | InfiniBand | down |" in done.stdout and "**NO**" not in done.stdout


def test_an_nvlink_counter_outside_our_reads_fails_the_check(stub, tmp_path):
    """nvidia-smi reporting a Tx count our reads around it cannot contain is flagged and exits 1."""
    done = _run_fabric(stub, _fabric_tools(tmp_path / "bin", 5, perfquery=False), tmp_path / "no-rdma",
                       gpus="1", nvlink="2")
    assert done.returncode == 1
    assert "| 0 | 0 | active | tx | 1024102400 B | 5 KiB | 1024204800 B | **NO** |" in done.stdout
    assert "InfiniBand not checked: Unavailable: no RDMA driver loaded" in done.stdout


def test_without_nvlink_or_perfquery_the_check_says_why(stub, tmp_path):
    """GPUs without NVLink and a host without perfquery are reported, not failed."""
    from conftest import FIXTURES

    done = _run_fabric(stub, _fabric_tools(tmp_path / "bin", 0, perfquery=False),
                       FIXTURES / "infiniband-hca" / "sys", gpus="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NVLink not checked: Unavailable: no NVIDIA GPU here reports NVLink links" in done.stdout
    assert "| PortXmitData | 10000000000 | None | 10000000000 | perfquery not installed |" in done.stdout


@pytest.mark.parametrize(("skew", "verdict", "status"), [(0, "yes", 0), (1_000_000, "**NO**", 1)])
def test_efa_ports_are_checked_against_rdma_statistic_in_bytes(stub, tmp_path, skew, verdict, status):
    """An EFA port (no counters/: no PMA for perfquery) is compared with `rdma -j statistic show link` in bytes;
    a tool count outside our reads around it fails the check."""
    from conftest import FIXTURES

    done = _run_fabric(stub, _fabric_tools(tmp_path / "bin", 0, perfquery=True, rdma=True),
                       FIXTURES / "efa-p5" / "sys", rdma_skew=skew, gpus="1")
    assert done.returncode == status, done.stdout + done.stderr
    tx = 123456789012 + skew
    assert (f"| rdmap79s0/1 | Unknown | active | 100000000000.0 | PortXmitData | 123456789012 | {tx} | "
            f"123456789012 | {verdict} |") in done.stdout
    assert ("| rdmap79s0/1 | Unknown | active | 100000000000.0 | PortRcvPkts | 18000000 | 18000000 | "
            "18000000 | yes |") in done.stdout
