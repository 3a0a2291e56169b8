"""The fast-path helpers: HAProxy config narrowing and the env Ray reads at start."""

import os

from deployments import throughput
from deployments.throughput import loopback_binds, throughput_env

CONFIG = """global
    stats socket /tmp/haproxy-serve/x/admin.sock mode 666 level admin
frontend prometheus
    bind :9101
    mode http
frontend http_frontend
    bind {host}:8000
    mode http
listen stats
  bind *:8404
  stats enable
"""


def binds(config: str) -> list[str]:
    return [line.split()[1] for line in config.splitlines() if line.strip().startswith("bind ")]


def test_open_listeners_move_to_the_frontend_host():
    assert binds(loopback_binds(CONFIG.format(host="127.0.0.1"))) == [
        "127.0.0.1:9101",
        "127.0.0.1:8000",
        "127.0.0.1:8404",
    ]
    assert binds(loopback_binds(CONFIG.format(host="10.0.0.5"))) == ["10.0.0.5:9101", "10.0.0.5:8000", "10.0.0.5:8404"]


def test_a_frontend_on_every_interface_is_left_as_configured():
    config = CONFIG.format(host="*")
    assert loopback_binds(config) == config


def test_env_points_ray_at_the_installed_wrapper():
    env = throughput_env()
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1" and env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    wrapper = env["RAY_SERVE_HAPROXY_BINARY_PATH"]
    assert os.access(wrapper, os.X_OK) and os.path.basename(wrapper) == "graphrag-haproxy"
    assert os.access(throughput.bundled_haproxy(), os.X_OK)


def test_opt_out_leaves_the_environment_alone(monkeypatch):
    for key in throughput_env():
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(throughput.OPT_OUT, "0")
    assert throughput.use_throughput_env() is False
    assert not any(key in os.environ for key in throughput_env())
