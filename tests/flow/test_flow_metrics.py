"""Prometheus metrics of circuit breakers (job types' and sidecars'), from the API's collector."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from conveyor.admin import Inspector
from conveyor.broker import SyncBroker
from conveyor.flow import Breaker, SharedBreaker
from conveyor.metrics import AdminCollector


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("conveyor_breaker"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_breaker_state_and_transitions_are_exported(broker: SyncBroker) -> None:
    registry = CollectorRegistry()
    registry.register(AdminCollector(Inspector(broker)))
    sidecar = SharedBreaker(broker, Breaker(failures=2, open_s=60), name="sidecar:http://x:1")
    for _ in range(2):
        assert sidecar.allow()
        sidecar.record(False)
    flow = Inspector(broker).flow
    flow.open_breaker("billing", 60)
    first = scrape(registry)
    assert first['conveyor_breaker_state{name="sidecar:http://x:1"}'] == 2.0
    assert first['conveyor_breaker_state{name="billing"}'] == 2.0
    assert first['conveyor_breaker_transitions_total{name="billing",to="open"}'] == 1.0
    assert first['conveyor_breaker_transitions_total{name="billing",to="closed"}'] == 0.0
    flow.reset_breaker("billing")
    flow.open_breaker("billing", 60)
    flow.reset_breaker("billing")
    second = scrape(registry)
    assert second['conveyor_breaker_state{name="billing"}'] == 0.0
    # only what happened since the last scrape is added (events may share a millisecond)
    assert second['conveyor_breaker_transitions_total{name="billing",to="open"}'] == 2.0
    assert second['conveyor_breaker_transitions_total{name="billing",to="closed"}'] == 2.0
    assert second['conveyor_breaker_transitions_total{name="sidecar:http://x:1",to="open"}'] == 1
    assert scrape(registry) == second  # nothing happened: nothing added
