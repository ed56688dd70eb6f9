"""InfiniBand's slow-tier files (state details, error counters, hw_counters) are kept open like the per-tick ones."""

from __future__ import annotations

import os
import pathlib
import shutil

from conftest import FIXTURES, open_under

from tracklab_sysmon.collectors.infiniband import HW_SECONDS, RESCAN_SECONDS, SLOW_SECONDS, InfinibandCollector

TREE = FIXTURES / "infiniband-hca" / "sys"
PORT = "class/infiniband/mlx5_0/ports/1"


def _files(root: pathlib.Path, folder: str) -> int:
    return sum(1 for p in (root / PORT / folder).iterdir() if p.name != "lifespan")


def test_every_file_read_stays_open_and_later_reads_open_nothing(tmp_path):
    """After the first tick each file the port reads holds one descriptor (5 per tick, 15 slow, its hw_counters);
    ticks over the slow and hw periods read through them without opening one more."""
    root = tmp_path / "sys"
    shutil.copytree(TREE / "class/infiniband/mlx5_0", root / "class/infiniband/mlx5_0")
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    first = open_under(root)
    assert len(first) == 5 + 15 + _files(root, "hw_counters") == 27
    assert len(set(first)) == len(first)  # one descriptor per file
    for t in (101.0, 100.0 + SLOW_SECONDS, 100.0 + HW_SECONDS):
        collector.collect(t)
    assert open_under(root) == first


def test_a_slow_file_renamed_over_is_read_from_the_new_file(tmp_path):
    """A slow-tier file replaced by a rename (a fixture tree rewritten) is reopened, not read from the old one."""
    root = tmp_path / "sys"
    shutil.copytree(TREE, root)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    for name, value in (("rate", "400 Gb/sec (4X NDR)"), ("counters/symbol_error", "9"), ("hw_counters/out_of_buffer",
                                                                                           "18")):
        new = root / PORT / f"{name}.new"
        new.write_text(f"{value}\n")
        os.replace(new, root / PORT / name)
    port = collector.collect(100.0 + HW_SECONDS).ports[0]
    assert (port.rate, port.errors.symbol_errors) == (400e9, 9)
    assert dict((c.name, c.value) for c in port.hw_counters)["out_of_buffer"] == 18


def test_a_slow_file_that_goes_away_is_null_and_returns(tmp_path):
    """A slow-tier file removed reads as null at the next slow read; put back, it is read again."""
    root = tmp_path / "sys"
    shutil.copytree(TREE, root)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    (root / PORT / "link_layer").unlink()
    assert collector.collect(100.0 + SLOW_SECONDS).ports[0].link_layer is None
    (root / PORT / "link_layer").write_text("Ethernet\n")
    assert collector.collect(100.0 + 2 * SLOW_SECONDS).ports[0].link_layer == "Ethernet"


def test_a_rescan_keeps_the_ports_it_knows_and_looks_only_into_new_ones(tmp_path):
    """Ports found again keep their record (kept files, slow tiers): a rescan opens nothing for them; a port that
    appears is read from the rescan on, and one that left and came back starts afresh."""
    root = tmp_path / "sys"
    shutil.copytree(TREE, root)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    known = collector._ports
    before = open_under(root)
    shutil.copytree(TREE / "class/infiniband/mlx5_0", root / "class/infiniband/mlx5_9")
    ports = collector.collect(100.0 + RESCAN_SECONDS).ports
    assert [p.device for p in ports] == ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_9"]
    assert all(a is b for a, b in zip(collector._ports, known, strict=False))
    assert set(before) <= set(open_under(root))
    shutil.rmtree(root / "class/infiniband/mlx5_9")
    collector.collect(100.0 + 2 * RESCAN_SECONDS)
    shutil.copytree(TREE / "class/infiniband/mlx5_0", root / "class/infiniband/mlx5_9")
    (root / "class/infiniband/mlx5_9/ports/1/counters/port_xmit_data").write_text("2500001000\n")  # 1000 words more
    again = collector.collect(100.0 + 3 * RESCAN_SECONDS)
    assert again.ports[3].tx_rate == 0.0  # first sight again: no rate from the counters it had before it left
