"""Issue 8: survive a hung central broker.

The primary central broker is SIGSTOPped (hung, not dead: its kernel still
accepts TCP, nothing answers) for 30 s while alarms are raised. A standby
central with the same users runs beside it; the site broker's bridge lists
both (round_robin), the node's secondary path goes to the standby, and the
relay and the police post hold both centrals at once. The post must get
every dispatch, none twice, during the hang and after SIGCONT; the relay
stores each event once, takes each ack once, and the node's outbox drains.

Every link is TLS with client certificates from the harness CA, as in
production: both centrals (the standby with the primary's users and the
harness's server certificate for 127.0.0.1), the site bridge to either, the
node's two paths, the relay and the post. Under TLS a hung broker still
completes the TCP connect (its kernel accepts: the connections wait in its
accept queue, which the test reads) but never the handshake, so nothing but
the CONNACK timeout ends a reconnect to it: the logs must show the relay
and the post dropping the hung primary and giving up on it by that timeout
("no CONNACK from" its port), the bridge and every daemon carrying on
through the standby (the node on its secondary path, connected to it), and,
after SIGCONT, the relay and the post back on the primary.

Timings are configuration, never assertions: keepalives of 5 s (the
minimum Mosquitto accepts for a bridge), failover_time 3 s; every wait is
for an outcome, with a generous deadline."""

import os
import re
import time
import unittest

from vigie_harness import CentralBroker, HarnessTestCase, free_port, wait_for
from test_node import Injector, oks, pending_in_outbox
from test_post import PostProc
from test_relay_support import Relay, site_conf

SITE = "louvre"
NODE = "n1"
POST = "pp1"
HANG_S = 30  # the figure
ZONES = [f"z{i}" for i in range(1, 10)]


def start_standby(h, primary, sites, posts):
    """A second central broker with the primary's users and passwords
    (vigie-broker-config central --primary-secrets), TLS with the harness PKI
    as the primary (client certificates required)."""
    b = CentralBroker(h, "standby", h.path("standby"), free_port(), sites=sites, posts=posts,
                      direct_node_users=True,
                      extra_args=["--primary-secrets", primary.secrets_path])
    b.use_harness_tls()
    b.generate()
    b.start()
    return b


def broker_yaml(b, user, keepalive=5):
    """A daemon's broker section for `b` as `user`, TLS included (JSON)."""
    return {"host": b.host, "port": b.port, "username": user, "password": b.password(user),
            "keepalive": keepalive, "tls": b.tls_conf()}


def broker_block(b, user, keepalive=5):
    """The same as lines of a YAML block map (vigie-post's config)."""
    return (f"  host: {b.host}\n  port: {b.port}\n  username: {user}\n"
            f"  password: \"{b.password(user)}\"\n  keepalive: {keepalive}\n"
            + b.tls_yaml_block())


def write_node_config(h, site_broker, standby):
    d = h.path(NODE)
    os.makedirs(d, exist_ok=True)
    sock = os.path.join(d, "node.sock")
    outbox = os.path.join(d, "outbox.db")
    direct = f"node-{SITE}-direct"
    lines = [f"site: {SITE}", f"node: {NODE}", f"outbox: {outbox}", f"socket: {sock}",
             "heartbeat_period: 1s", "reporting_time: 10s", "resend_timeout: 1s",
             "failover_time: 3s",
             "brokers:",
             f"  primary: {{host: 127.0.0.1, port: {site_broker.port}, username: node, "
             f"password: \"{site_broker.password('node')}\", keepalive: 5"
             f"{site_broker.tls_yaml()}}}",
             # The secondary path: straight to the standby central.
             f"  secondary: {{host: 127.0.0.1, port: {standby.port}, username: {direct}, "
             f"password: \"{standby.password(direct)}\", keepalive: 5{standby.tls_yaml()}}}",
             "zones:"]
    lines += [f"  - {{id: {z}, name: Zone {z}}}" for z in ZONES]
    lines += ["sensors:"]
    lines += [f"  - {{id: panic-{z}, kind: duress, zones: [{z}]}}" for z in ZONES]
    path = os.path.join(d, "node.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, sock, outbox


def accept_queue(port):
    """Connections the kernel completed on the listener of 127.0.0.1:`port`
    that its process has not accepted yet (the rx_queue of a LISTEN socket
    in /proc/net/tcp), None if nothing listens there."""
    with open("/proc/net/tcp", encoding="ascii") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[1] == "0100007F:%04X" % port:
                return int(fields[4].split(":")[1], 16)
    return None


def last_match(text, pattern):
    found = re.findall(pattern, text)
    return found[-1] if found else None


class CentralFailoverTest(HarnessTestCase):

    def setUp(self):
        super().setUp()
        h = self.h
        self.primary = h.start_central(name="central", sites=[SITE], posts=[POST],
                                       direct_node_users=True)
        self.standby = start_standby(h, self.primary, [SITE], [POST])
        # The bridge lists both centrals, primary first; a hung link is
        # noticed after 1.5 keepalives (5 s, Mosquitto's minimum).
        self.site = h.start_site(SITE, self.primary, extra_args=[
            "--standby-host", "127.0.0.1", "--standby-port", str(self.standby.port),
            "--keepalive", "5", "--restart-timeout", "1"])
        self.relay = Relay(
            h, self.primary, posts=[POST],
            escalation=[{"name": "police", "post": POST, "ack_deadline": "10m",
                         "police": True}],
            sites=[site_conf(SITE, nodes=[{"id": NODE}])],
            broker=dict(broker_yaml(self.primary, "relay"), client_id="vigie-relay",
                        session_expiry="1h"),
            standby=dict(broker_yaml(self.standby, "relay"), client_id="vigie-relay",
                         session_expiry="1h"),
            dispatch_resend="3s", dispatch_resend_max="6s")
        self.relay.proc.start()
        wait_for(lambda: self.relay.proc.check_running() or (
            "connected to the central broker primary" in self.relay.log()
            and "connected to the central broker standby" in self.relay.log()),
            20, "the relay to connect to both centrals")
        post_cfg = h.path("post.yaml")
        with open(post_cfg, "w") as f:
            f.write(f"post: {POST}\noperator: Brigadier Dupont\n"
                    "broker:\n" + broker_block(self.primary, f"post-{POST}")
                    + "standby:\n" + broker_block(self.standby, f"post-{POST}"))
        self.post = PostProc.spawn(h, "post", [os.path.join(
            os.environ["VIGIE_BUILD"], "bin", "vigie-post"), "--json", "-c", post_cfg])
        self.post.wait_line("status", connected=True, timeout=20)
        wait_for(lambda: self.post.log_text().count("connected to") >= 2, 20,
                 "the post to connect to both centrals")
        cfg, sock, self.outbox = write_node_config(h, self.site, self.standby)
        self.node = h.spawn("node", [os.path.join(os.environ["VIGIE_BUILD"], "bin",
                                                  "vigie-node"), "-c", cfg])
        self.inj = Injector(sock, timeout=20)
        self.addCleanup(self.inj.close)
        # Whatever happens, a stopped broker is continued before the
        # harness stops it (a SIGTERM to a stopped process waits).
        self.addCleanup(self._sigcont_primary)
        self.raised = []

    def _sigcont_primary(self):
        if self.primary.alive():
            self.primary.sigcont()

    def raise_alarm(self, zone):
        self.inj.send(f"kind=duress sensor=panic-{zone} text=\"alarm in {zone}\"")
        answers = self.inj.read_answers(len(self.raised) + 1, timeout=30)
        self.assertTrue(answers[-1].startswith("OK "), answers[-1])
        self.raised.append(zone)

    def dispatch_lines(self):
        return self.post.objects("dispatch")

    def new_dispatch_zones(self):
        """Zones of the alarms' dispatches (troubles - path loss, silence -
        are dispatched to the post too, and acked alike)."""
        return [o["zone"] for o in self.dispatch_lines() if o["new"] and o["kind"] == "duress"]

    def wait_dispatched(self, zones, timeout, what):
        wait_for(lambda: set(zones) <= set(self.new_dispatch_zones()), timeout, what)

    def ack_new(self):
        """Acknowledge, from the console, every dispatch not acked yet."""
        acked = {o["dispatch"] for o in self.post.objects("ack")}
        for o in self.dispatch_lines():
            if o["new"] and o["id"] not in acked:
                self.post.send(f"ack {o['id']}")
                acked.add(o["id"])

    def test_hung_primary_central_post_gets_every_dispatch_once(self):
        # Before: everything flows through the primary.
        for z in ZONES[:2]:
            self.raise_alarm(z)
        self.wait_dispatched(ZONES[:2], 30, "dispatches before the hang")
        self.ack_new()

        # The primary central hangs, alarms keep coming.
        self.primary.sigstop()
        hung_at = time.monotonic()
        during = ZONES[2:7]
        for z in during:
            self.raise_alarm(z)
            time.sleep(HANG_S / (len(during) + 1))  # spread over the hang (pacing only)
        # Every dispatch raised during the hang reaches the post while the
        # primary is still stopped: through the standby only.
        self.wait_dispatched(during, 120, "dispatches during the hang, via the standby")
        self.assertTrue(self.primary.alive())
        self.ack_new()
        # The relay and the post left the hung primary (keepalive) and their
        # reconnects to it, TLS, were ended by the CONNACK timeout; the
        # primary stays stopped until both said so.
        hung = rf"127\.0\.0\.1:{self.primary.port}"
        left_hung = rf"mqtt primary: connection to {hung} lost: .*mqtt primary: no CONNACK from {hung} "
        wait_for(lambda: re.search(left_hung, self.relay.log(), re.S), 90,
                 "the relay to drop the hung primary and time out reconnecting to it")
        wait_for(lambda: re.search(left_hung, self.post.log_text(), re.S), 90,
                 "the post to drop the hung primary and time out reconnecting to it")
        # Meanwhile everything went through the standby: the bridge
        # reconnected there, the node took its secondary path, to it.
        standby = f"127.0.0.1:{self.standby.port}"
        wait_for(lambda: f"Connecting bridge (step 1) vigie-bridge-{SITE} ({standby})"
                 in self.site.proc.log_text(), 90, "the bridge to reconnect to the standby")
        wait_for(lambda: f"site {SITE} bridge up on central standby" in self.relay.log(), 90,
                 "the relay to see the bridge up on the standby")
        wait_for(lambda: f"mqtt secondary: connected to {standby}" in self.node.log_text(), 90,
                 "the node connected to the standby (its secondary path)")
        # Those reconnects got through the TCP connect: the hung broker's
        # kernel accepted them, and they wait in its accept queue, the TLS
        # handshake never begun by the stopped broker.
        queued = accept_queue(self.primary.port)
        self.assertGreaterEqual(queued or 0, 2, "connections accepted by the hung "
                                                "primary's kernel during the hang")
        left = HANG_S - (time.monotonic() - hung_at)
        if left > 0:
            time.sleep(left)  # the hang lasts HANG_S at least (pacing only)
        self.primary.sigcont()

        # After: one more alarm, then everything settles.
        self.raise_alarm(ZONES[7])
        self.wait_dispatched(ZONES[:8], 60, "the dispatch after SIGCONT")
        self.ack_new()
        wait_for(lambda: pending_in_outbox(self.outbox) == 0, 90,
                 "the node's outbox to drain (every event receipted)")
        wait_for(lambda: self.relay.log().count("connected to the central broker primary")
                 >= 2, 60, "the relay back on the primary")
        wait_for(lambda: self.post.log_text().count("connected to 127.0.0.1:%d"
                                                    % self.primary.port) >= 2, 60,
                 "the post back on the primary")
        # Every ack reached the relay (through either central).
        alarm_ids = {o["incident"] for o in self.dispatch_lines() if o["kind"] == "duress"}
        wait_for(lambda: alarm_ids <= {i for (i,) in self.relay.rows(
            "SELECT DISTINCT incident FROM acks")}, 60, "every alarm's ack at the relay")
        # Let late copies (the primary's queued messages, re-sends) arrive.
        time.sleep(8)

        # The post: each dispatch shown once; re-sends and second copies
        # were updates or counted duplicates, never new entries.
        news = [o["id"] for o in self.dispatch_lines() if o["new"]]
        self.assertEqual(len(news), len(set(news)), f"a dispatch shown twice: {news}")
        self.assertEqual(sorted(self.new_dispatch_zones()), sorted(ZONES[:8]))
        stats = self.post.ask("stats", "stats")
        self.assertEqual(stats["new"], len(news))

        # The relay: each event once, every confirmed event stored.
        answers = oks(self.inj.answers)
        stored = self.relay.rows("SELECT boot_id, seq FROM events WHERE site=? AND node=?",
                                 SITE, NODE)
        self.assertEqual(len(stored), len(set(stored)))
        self.assertLessEqual(set(answers), set(stored))
        # Each incident acknowledged once, though acks went out on both.
        per_incident = self.relay.rows("SELECT incident, count(*) FROM acks GROUP BY incident")
        self.assertLessEqual(alarm_ids, {i for i, _ in per_incident})
        self.assertEqual(len(alarm_ids), 8)
        self.assertTrue(all(n == 1 for _, n in per_incident), per_incident)

        # Supervision not fooled: whatever flapped during the hang, the post,
        # the node and the bridge end up online.
        log = self.relay.log()
        self.assertNotEqual(last_match(log, rf"supervision: police post {POST} "
                                            r"(offline|online again)"), "offline", log[-3000:])
        self.assertNotIn(last_match(log, rf"supervision: node {NODE} (silent|offline|heard)"),
                         ("silent", "offline"))
        self.assertNotEqual(last_match(log, rf"supervision: site bridge of {SITE} "
                                            r"(down|up again)"), "down")
        # The node used its secondary path (the standby) and said so.
        self.assertIn("switching to the secondary path", self.node.log_text())


if __name__ == "__main__":
    unittest.main()
