"""vigie-relay, stage 2: silence is an alarm. Each loss raises a trouble
incident (retained vigie/v1/incident/<id>, audit lines), restored when the
thing comes back:

- a node whose heartbeats stop for longer than its reporting time (its own
  advertised one, or the config's override, default 10 s);
- a node's LWT (a real vigie-node killed with -9 behind a real site broker);
- a site bridge that drops (Mosquitto's notification topic on the central);
- a police post that goes away (its PostState LWT)."""

import threading
import time
import unittest

from vigie_harness import HarnessTestCase, bin_path, publish_sync, wait_for
from test_relay_support import (Relay, heartbeat, incidents, pb, post_state, site_conf)


def report(text):
    import sys
    print(f"\n    [figure] {text}", file=sys.stderr, flush=True)


class Heartbeats:
    """Plays a node's heartbeats until stopped."""

    def __init__(self, client, site, node, boot=1, period=0.2, reporting_ms=1000):
        self.client, self.site, self.node, self.boot = client, site, node, boot
        self.period, self.reporting_ms = period, reporting_ms
        self.last = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        n = 0
        while not self._stop.is_set():
            n += 1
            self.client.publish(f"vigie/v1/site/{self.site}/node/{self.node}/heartbeat",
                                heartbeat(self.site, self.node, self.boot, self.reporting_ms, n),
                                qos=0)
            self.last = time.monotonic()
            self._stop.wait(self.period)

    def stop(self):
        self._stop.set()
        self._t.join(5)


def open_trouble(sub, subject):
    return [i for i in incidents(sub).values()
            if i.trouble and i.subject == subject and i.state != pb().INCIDENT_CLOSED]


def closed_trouble(sub, subject):
    return [i for i in incidents(sub).values()
            if i.trouble and i.subject == subject and i.state == pb().INCIDENT_CLOSED]


class SupervisionTest(HarnessTestCase):

    def setUp(self):
        super().setUp()
        self.central = self.h.start_central(sites=["louvre"], posts=["p1", "p2"])
        self.watch = self.h.subscriber(self.central, "dashboard",
                                       ["vigie/v1/incident/#", "vigie/v1/status/#",
                                        "vigie/v1/relay/#", "vigie/v1/post/+/dispatch"])

    def test_silence_beyond_reporting_time(self):
        relay = Relay(self.h, self.central, sites=[site_conf("louvre")]).start()
        node = self.h.client(self.central, "bridge-louvre")
        hb = Heartbeats(node, "louvre", "n1", reporting_ms=1000)
        time.sleep(1.5)
        self.assertEqual(open_trouble(self.watch, "node:n1"), [], "no trouble while it beats")
        hb.stop()
        last = hb.last
        inc = wait_for(lambda: open_trouble(self.watch, "node:n1"), 5, "comm-loss trouble")[0]
        delay = time.monotonic() - last
        report(f"comm loss by silence raised {delay * 1000:.0f} ms after the last heartbeat "
               f"(reporting time 1000 ms)")
        self.assertGreaterEqual(delay, 1.0)
        self.assertLess(delay, 2.0)
        p = pb()
        self.assertEqual(inc.kind, p.KIND_COMM_LOSS)
        self.assertEqual(inc.site, "louvre")
        self.assertTrue(inc.id.startswith("louvre-"))
        # The default ladder tells site security.
        wait_for(lambda: self.watch.count("vigie/v1/relay/louvre/alert") >= 1, 5, "site alert")
        # Back: the trouble closes.
        hb = Heartbeats(node, "louvre", "n1", reporting_ms=1000)
        wait_for(lambda: closed_trouble(self.watch, "node:n1"), 5, "restore")
        hb.stop()
        relay.stop()
        out = relay.audit(inc.id).stdout
        self.assertIn("silent for", out)
        self.assertIn("heard again", out)
        self.assertIn("closed", out)

    def test_config_overrides_the_advertised_reporting_time(self):
        Relay(self.h, self.central,
              sites=[site_conf("louvre", nodes=[{"id": "n1", "reporting_time": "3s"}])]).start()
        node = self.h.client(self.central, "bridge-louvre")
        hb = Heartbeats(node, "louvre", "n1", reporting_ms=500)
        time.sleep(0.5)
        hb.stop()
        time.sleep(2.0)
        self.assertEqual(open_trouble(self.watch, "node:n1"), [], "3 s, not the advertised 0.5 s")
        wait_for(lambda: open_trouble(self.watch, "node:n1"), 3, "trouble after 3 s")

    def test_configured_node_never_heard_of(self):
        Relay(self.h, self.central,
              sites=[site_conf("louvre", nodes=[{"id": "ghost", "reporting_time": "1s"}])]).start()
        wait_for(lambda: open_trouble(self.watch, "node:ghost"), 5, "trouble for a silent node")

    def test_real_node_killed_then_back(self):
        """A vigie-node behind a real site broker: kill -9 makes the site
        broker publish its LWT; a stopped (SIGSTOP) node is caught by
        silence; both come back."""
        node_bin = bin_path("vigie-node")
        site = self.h.start_site("louvre", self.central)
        relay = Relay(self.h, self.central, sites=[site_conf("louvre")]).start()
        conf = self.h.path("node.yaml")
        with open(conf, "w") as f:
            f.write(f"""site: louvre
node: apollo-1
outbox: {self.h.path('apollo-1.db')}
heartbeat_period: 300ms
reporting_time: 1500ms
brokers:
  primary: {{host: 127.0.0.1, port: {site.port}, username: {site.node_user()}, password: "{site.password(site.node_user())}"{site.tls_yaml()}}}
""")
        node = self.h.spawn("node", [node_bin, "-c", conf])
        wait_for(lambda: "node louvre/apollo-1 online" in relay.log(), 10, "the node's birth")
        time.sleep(0.5)
        node.kill9()
        t0 = time.monotonic()
        inc = wait_for(lambda: open_trouble(self.watch, "node:apollo-1"), 5, "trouble on LWT")[0]
        report(f"node kill -9 -> comm-loss trouble in {1000 * (time.monotonic() - t0):.0f} ms "
               f"(LWT through the site bridge)")
        node.start()
        wait_for(lambda: closed_trouble(self.watch, "node:apollo-1"), 10, "restore after restart")
        self.assertIn("offline (lwt)", relay.audit(inc.id).stdout)
        # Silence: the process is there but says nothing.
        time.sleep(0.5)
        node.sigstop()
        t0 = time.monotonic()
        wait_for(lambda: open_trouble(self.watch, "node:apollo-1"), 6, "trouble on silence")
        delay = time.monotonic() - t0
        report(f"node SIGSTOP -> comm-loss trouble in {1000 * delay:.0f} ms (reporting time 1500 ms)")
        self.assertLess(delay, 3.5)
        node.sigcont()
        wait_for(lambda: len(closed_trouble(self.watch, "node:apollo-1")) >= 2, 10, "restore")

    def test_bridge_drop(self):
        site = self.h.start_site("louvre", self.central)
        Relay(self.h, self.central, sites=[site_conf("louvre", nodes=[{"id": "n1"}])]).start()
        node = self.h.client(site, site.node_user())
        hb = Heartbeats(node, "louvre", "n1", reporting_ms=1000)
        time.sleep(1.0)
        site.kill9()
        t0 = time.monotonic()
        inc = wait_for(lambda: open_trouble(self.watch, "bridge"), 10, "bridge trouble")[0]
        report(f"site broker kill -9 -> bridge trouble in {1000 * (time.monotonic() - t0):.0f} ms")
        self.assertEqual(inc.site, "louvre")
        p = pb()
        wait_for(lambda: any(p.SiteStatus.FromString(m.payload).state == p.SITE_OFFLINE
                             for m in self.watch.received("vigie/v1/status/louvre")), 5,
                 "site status OFFLINE")
        # Its nodes are not judged while the bridge is down: one trouble.
        time.sleep(2.0)
        self.assertEqual(open_trouble(self.watch, "node:n1"), [])
        hb.stop()
        site.start()
        node2 = self.h.client(site, site.node_user())
        hb = Heartbeats(node2, "louvre", "n1", reporting_ms=1000)
        wait_for(lambda: closed_trouble(self.watch, "bridge"), 20, "bridge restored")
        hb.stop()

    def test_post_goes_away_and_comes_back(self):
        Relay(self.h, self.central, posts=[{"id": "p1", "backup": "p2"}, "p2"],
              sites=[site_conf("louvre")]).start()
        post = self.h.client(self.central, "post-p1")
        publish_sync(post, "vigie/v1/post/p1/state", post_state("p1", True), retain=True)
        time.sleep(0.3)
        self.assertEqual(open_trouble(self.watch, "post:p1"), [])
        publish_sync(post, "vigie/v1/post/p1/state", post_state("p1", False), retain=True)
        inc = wait_for(lambda: open_trouble(self.watch, "post:p1"), 5, "post trouble")[0]
        self.assertEqual(inc.site, "")
        self.assertTrue(inc.id.startswith("post-p1-"))
        # Its backup is told.
        d = wait_for(lambda: [d for d in self.watch.received("vigie/v1/post/p2/dispatch")], 5,
                     "dispatch to the backup post")
        self.assertTrue(pb().Dispatch.FromString(d[0].payload).id.startswith("post-p1-"))
        publish_sync(post, "vigie/v1/post/p1/state", post_state("p1", True), retain=True)
        wait_for(lambda: closed_trouble(self.watch, "post:p1"), 5, "post restored")


if __name__ == "__main__":
    unittest.main()
