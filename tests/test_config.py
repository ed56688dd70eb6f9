"""ServiceConfig: defaults match the seed and the process contract; bad options are one-line errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tracklab_sysmon.config import ServiceConfig, parse_peer
from tracklab_sysmon.errors import ConfigError


def test_defaults_follow_the_seed_and_contract():
    """Defaults: loopback, port 8080, 1 s interval, 3600 snapshots, host roots, no portfile."""
    config = ServiceConfig()
    assert (config.host, config.port, config.interval, config.history) == ("127.0.0.1", 8080, 1.0, 3600)
    assert (config.proc_root, config.sys_root, config.portfile, config.parent_pid) == ("/proc", "/sys", None, None)
    assert config.node_id is None and config.enable_dcgm is False and config.on_host


def test_config_is_frozen():
    """A config cannot be changed after it is built."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        ServiceConfig().port = 1  # type: ignore[misc]


def test_port_zero_and_top_port_are_valid():
    """Port 0 (any free port) and 65535 are both accepted."""
    assert ServiceConfig(port=0).port == 0 and ServiceConfig(port=65535).port == 65535


def test_captured_tree_is_not_host():
    """A config with another proc or sys root reads a captured tree, not this host."""
    assert not ServiceConfig(proc_root="tree/proc").on_host
    assert not ServiceConfig(sys_root="tree/sys").on_host


@pytest.mark.parametrize(
    "options, words",
    [
        ({"port": -1}, "port"),
        ({"port": 70000}, "port"),
        ({"interval": 0}, "interval"),
        ({"interval": float("nan")}, "interval"),
        ({"interval": float("inf")}, "interval"),
        ({"history": 0}, "history"),
        ({"history": 10_000_000}, "history"),
        ({"history_mib": 0}, "history MiB"),
        ({"history_mib": 70_000}, "history MiB"),
        ({"node_id": "  "}, "node id"),
        ({"parent_pid": 0}, "parent pid"),
    ],
)
def test_bad_options_raise_one_line_config_errors(options, words):
    """Each invalid option raises ConfigError with one line that names the option."""
    with pytest.raises(ConfigError) as caught:
        ServiceConfig(**options)
    message = str(caught.value)
    assert words in message and "\n" not in message


@pytest.mark.parametrize("url", ["http://[::1", "http://[", "http://h:99999", "http://h:port", "http://[::1]:65536"])
def test_malformed_peer_and_origin_urls_are_config_errors(url):
    """A peer or allowed-origin URL that cannot be parsed, or whose port is not 0-65535, is a ConfigError."""
    with pytest.raises(ConfigError) as peer:
        parse_peer(url)
    with pytest.raises(ConfigError) as origin:
        ServiceConfig(allow_origins=(url,))
    for caught in (peer, origin):
        assert repr(url) in str(caught.value) and "\n" not in str(caught.value)


def test_cli_malformed_peer_is_one_line_and_exit_2():
    """`serve --peer 'http://[::1'` prints one readable line (no traceback) and exits 2."""
    result = subprocess.run(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--peer", "http://[::1"],
        capture_output=True, text=True, timeout=60,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(lines) == 1 and "peer" in lines[0] and "http://[::1" in lines[0]


def test_peer_errors_never_echo_url_credentials():
    """A bad --peer is a one-line error that names the peer without its `user:pass@` part."""
    for text in ("http://admin:s3cret@gpu-01:8080,tokn=x", "ftp://admin:s3cret@gpu-01:8080", "http://admin:s3cret@gpu-01:99999"):
        with pytest.raises(ConfigError) as caught:
            parse_peer(text)
        assert "s3cret" not in str(caught.value) and "gpu-01" in str(caught.value)
