"""vigie-node --simulate: a few hundred virtual nodes in one process against
a real site broker, its bridge, the central broker and vigie-relay.

Expected: every virtual node is born (retained NodeState online) and
heartbeats; the relay records each birth; the events generated across the
virtual nodes are stored by the relay and receipted (nothing left in any
outbox); a virtual node killed with -9 (a second --simulate process) is
detected as lost through its will; no other node is reported lost; the
process closes every node and handle on SIGTERM."""

import os
import re
import sys
import time
import unittest

from vigie_harness import HarnessTestCase, bin_path, wait_for
from test_relay_support import Relay, pb, site_conf

NODES = int(os.environ.get("VIGIE_SIM_NODES", "300"))
EVENTS = 2 * NODES
RATE = 400
# Slower than the events take (EVENTS / RATE): generation must wait for the
# last node started, or the last ones started would get no event.
RAMP = 200

TEMPLATE = """site: louvre
node: hall
outbox: {outbox}
heartbeat_period: 1s
reporting_time: 4s
brokers:
  primary: {{host: 127.0.0.1, port: {port}, username: {user}, password: "{password}"{tls}}}
"""


def report(text):
    print(f"\n    [figure] {text}", file=sys.stderr, flush=True)


def node_of(topic):
    return topic.split("/")[5]


def totals(proc):
    """The last "simulate stats/totals" line of a simulate process, as a
    dict of counters."""
    lines = [l for l in proc.log_text().splitlines() if "simulate stats:" in l
             or "simulate totals:" in l]
    if not lines:
        return {}
    return {name: int(v) for v, name in re.findall(r"(\d+) ([a-z]+)", lines[-1].split(": ", 1)[1])}


class SimulateTest(HarnessTestCase):

    def test_hundreds_of_virtual_nodes_end_to_end(self):
        node_bin = bin_path("vigie-node")
        p = pb()
        central = self.h.start_central(sites=["louvre"], posts=["p1"])
        site = self.h.start_site("louvre", central)
        relay = Relay(self.h, central, sites=[site_conf("louvre")]).start()
        watch = self.h.subscriber(central, "dashboard",
                                  ["vigie/v1/site/louvre/node/+/state",
                                   "vigie/v1/site/louvre/node/+/heartbeat"])
        conf = self.h.path("template.yaml")
        with open(conf, "w") as f:
            f.write(TEMPLATE.format(outbox=self.h.path("outboxes"), port=site.port,
                                    user=site.node_user(),
                                    password=site.password(site.node_user()),
                                    tls=site.tls_yaml()))
        t0 = time.monotonic()
        sim = self.h.spawn("simulate", [node_bin, "--simulate", str(NODES), "-c", conf,
                                        "--simulate-rate", str(RATE),
                                        "--simulate-ramp", str(RAMP),
                                        "--simulate-count", str(EVENTS),
                                        "--simulate-stats", "1"])
        ids = {f"hall-{i:04d}" for i in range(1, NODES + 1)}

        def born():
            online = set()
            for m in watch.received("vigie/v1/site/louvre/node/+/state"):
                if m.payload and p.NodeState.FromString(m.payload).status == p.NODE_ONLINE:
                    online.add(node_of(m.topic))
            return online if online >= ids else None

        wait_for(lambda: sim.check_running() or born(), 30, f"{NODES} births")
        report(f"{NODES} virtual nodes born (retained state on the central) in "
               f"{time.monotonic() - t0:.1f} s")
        wait_for(lambda: {node_of(m.topic) for m in
                          watch.received("vigie/v1/site/louvre/node/+/heartbeat")} >= ids,
                 10, "a heartbeat from every virtual node")
        wait_for(lambda: len(set(re.findall(r"node louvre/(hall-\d+) online", relay.log())))
                 >= NODES, 10, "the relay to record every birth")
        # Every generated event stored centrally and receipted.
        wait_for(lambda: relay.count("SELECT count(*) FROM events WHERE site='louvre' "
                                     "AND node LIKE 'hall-%'") >= EVENTS,
                 30, f"{EVENTS} events at the relay")
        st = wait_for(lambda: (lambda t: t if t.get("receipted", 0) >= EVENTS
                               and t.get("pending", 1) == 0 else None)(totals(sim)),
                      15, "every event receipted, outboxes empty")
        self.assertEqual(st["submitted"], EVENTS)
        self.assertEqual(st["refused"], 0)
        self.assertEqual(relay.count("SELECT count(DISTINCT node) FROM events "
                                     "WHERE site='louvre'"), NODES)
        fds = len(os.listdir(f"/proc/{sim.pid}/fd"))
        report(f"{EVENTS} events over {NODES} virtual nodes receipted; the process holds "
               f"{fds} file descriptors ({fds / NODES:.1f} per node)")
        # One virtual node dies: its will, through the bridge, is a loss.
        lone = self.h.spawn("lone", [node_bin, "--simulate", "1", "--simulate-first", "9000",
                                     "-c", conf])
        wait_for(lambda: lone.check_running()
                 or "node louvre/hall-9000 online" in relay.log(), 10, "hall-9000 born")
        time.sleep(0.3)
        lone.kill9()
        t1 = time.monotonic()
        wait_for(lambda: "supervision: node hall-9000 offline" in relay.log(), 10,
                 "the relay to report hall-9000 lost")
        report(f"virtual node kill -9 -> relay supervision loss in "
               f"{1000 * (time.monotonic() - t1):.0f} ms, with {NODES} other nodes live")
        lost = set(re.findall(r"supervision: node (hall-\d+) (?:offline|silent)", relay.log()))
        self.assertEqual(lost, {"hall-9000"})
        # Clean stop: every node announces it, every handle closed.
        self.assertEqual(sim.stop(timeout=30), 0, sim.log_tail())
        self.assertIn("simulate totals:", sim.log_text())
        self.assertNotIn("handles left open", sim.log_text())
        dbs = [f for f in os.listdir(self.h.path("outboxes")) if f.endswith(".db")]
        self.assertEqual(len(dbs), NODES + 1)  # one outbox per virtual node


if __name__ == "__main__":
    unittest.main()
