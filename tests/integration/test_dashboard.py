"""contrib/grafana/pigeonair-dashboard.json: the Grafana dashboard over
pigeond's Prometheus metrics.  It loads, its panels are well formed, every
query parses as PromQL (promtool check rules), and every metric it queries
exists, with samples, in a live scrape of pigeond's /metrics: one that took a
message and has a destination with mail deferred to it.  The dataplane row's
metrics exist only with the DPDK backend: on the kernel backend they must be
absent (the panels say so), on the DPDK one present.
"""

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import helpers
from test_ctl import send_message

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "contrib" / "grafana" / "pigeonair-dashboard.json"
METRIC = re.compile(r"\bpigeonair_[a-z0-9_]+")

pytestmark = pytest.mark.both_backends


def load():
    return json.loads(DASHBOARD.read_text())


def queries(dash):
    """(panel, expr) of every query, rows' nested panels included."""
    out = []
    for p in dash["panels"]:
        for q in [p] + p.get("panels", []):
            for t in q.get("targets", []):
                out.append((q, t["expr"]))
    return out


def test_dashboard_is_well_formed(tmp_path):
    dash = load()
    assert dash["uid"] == "pigeonair" and dash["title"] == "PigeonAir"
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p["targets"], p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for what in ("accepted", "refusals", "commit latency", "queued", "oldest", "hand-off",
                 "handshake", "drops"):
        assert what in titles, what

    # Every query is PromQL, once Grafana's variables have their values.
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed (Debian package prometheus; tools/setup-deps.sh)")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}",
         "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
        for i, (_, e) in enumerate(queries(dash))]}]}
    f = tmp_path / "rules.json"  # YAML is a superset of JSON
    f.write_text(json.dumps(rules))
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def sample_names(text):
    return {l.split("{")[0].split(" ")[0] for l in text.splitlines() if l and l[0] != "#"}


def test_every_queried_metric_in_a_live_scrape(pigeond_factory, backend):
    port = helpers.free_port()
    # A destination that refuses connections: the message stays, deferred to it.
    dead = helpers.free_port()
    p = pigeond_factory(metrics__listen=f"127.0.0.1:{port}",
                        relay__default=f"smtp:127.0.0.1:{dead}",
                        relay__min_backoff="60").start()
    send_message(p, "a@example.org", ["u1@example.com"])
    names = set()
    for _ in range(100):  # bounded: the hand-off's first attempt, then its gauges
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        names = sample_names(body)
        if "pigeonair_destination_queued_messages" in names and \
                "pigeonair_destination_deliveries_total" in names:
            break
        time.sleep(0.1)

    dpdk_only, needed = set(), set()
    for panel, expr in queries(load()):
        for m in METRIC.findall(expr):
            (dpdk_only if "DPDK backend only" in panel.get("description", "") else needed).add(m)
    assert dpdk_only, "the dataplane row queries no metric"
    missing = sorted(needed - names)
    assert missing == [], f"queried but not in the scrape: {missing}"
    if backend.name == "dpdk":
        assert sorted(dpdk_only - names) == []
    else:
        assert sorted(dpdk_only & names) == [], "the kernel backend has no dataplane metrics"
    assert p.stop() == 0
