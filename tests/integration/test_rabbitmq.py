"""Vigie on a clustered central broker that is not Mosquitto (issue 8, item
5): a two-node RabbitMQ 3.10 cluster with its MQTT plugin (MQTT 3.1.1).

    museum: vigie-node -> Mosquitto site broker --bridge (3.1.1)--> rabbit1
                                                                      | cluster
    vigie-post (auto) --------------------------------------------> rabbit1
    vigie-relay (3.1.1, persistent session) ----------------------> rabbit2

Every message between the museum or the post and the relay crosses the
cluster: events, heartbeats and acks from rabbit1 to rabbit2; receipts and
dispatches back. What the test proves:

- an alarm reaches the police post as a dispatch, and the post's ack
  reaches the relay, although the relay only came up after the node's
  (retained) birth, which RabbitMQ keeps on rabbit1 alone;
- the relay killed with -9 and restarted during a burst of 400 alarms:
  every event the node confirmed is stored exactly once, and every one is
  receipted back to the node (its outbox empties); the alarms make one
  incident, whose dispatch the post shows as new once;
- rabbit2, the relay's node, restarted during a burst of 300: RabbitMQ
  confirms to the bridge what it routes to the relay's queue on the node
  that is down, and drops it. The node's re-send of what no Receipt covers
  brings every event in all the same, once.

What differs from Mosquitto and how Vigie copes (docs/SCALE.md has the
table): the site bridge is a plain MQTT 3.1.1 client (`vigie-broker-config
site --central-broker other`: RabbitMQ refuses Mosquitto's bridge flag);
the relay says `protocol: 3.1.1` and the post `protocol: auto`, which must
find 3.1.1 by itself (RabbitMQ 3.10 has no MQTT 5 and closes an MQTT 5
CONNECT without an answer); retained messages are per
node and never needed; topic permissions mirror broker-config's acl.

Needs Debian's rabbitmq-server (scripts/deps.sh installs it). Not installed:
the test fails (CI must run it). Installed but unable to start a node when
not run as root (a locked-down machine): the test is skipped with the reason.
No timed assertions: every wait has a generous deadline.

Run alone (about 40 s here, the cluster forming in 15-20 s of it):
    cd tests/integration && VIGIE_BUILD=../../build VIGIE_SOURCE=../.. \\
      PYTHONPATH=../../build/generated/python:. /usr/bin/python3 -m unittest -v test_rabbitmq
"""

import json
import os
import sqlite3
import sys
import threading
import time
import unittest

from vigie_harness import HarnessTestCase, bin_path, wait_for
from rabbitmq_support import RabbitCluster, rabbitmq_available
from test_relay_support import NodeSocket, Relay, pb, site_conf
from test_post import PostProc

SITE = "louvre"
NODE = "hall-1"
POST = "p1"

NODE_CONF = """site: {site}
node: {node}
outbox: {outbox}
socket: {sock}
heartbeat_period: 500ms
reporting_time: 5s
resend_timeout: 1s
brokers:
  primary: {{host: 127.0.0.1, port: {port}, username: {user}, password: "{password}"{tls}}}
zones:
  - {{id: apollo-gallery, name: "Galerie d'Apollon", kind: gallery, floor: "1", facade: seine}}
  - {{id: hall, name: Hall, kind: hall, floor: "0"}}
sensors:
  - {{id: case-regalia, kind: display_case, zones: [apollo-gallery]}}
  - {{id: pir-hall, kind: motion, zones: [hall]}}
"""

ZONES = [{"id": "apollo-gallery", "name": "Galerie d'Apollon", "floor": "1", "facade": "seine",
          "cameras": ["cam-apollo-east"], "action_plan": "Close the Rotonde grille"},
         {"id": "hall", "name": "Hall", "floor": "0"}]


def report(text):
    print(f"\n    [rabbitmq] {text}", file=sys.stderr, flush=True)


class RabbitMQClusterTest(HarnessTestCase):

    def setUp(self):
        self.cluster = None
        # Registered before the harness's own cleanup, so it runs after it:
        # whatever survived the harness (a detached epmd, a stray beam.smp)
        # is found by its port or directory and killed by PID.
        self.addCleanup(self._sweep)
        super().setUp()
        ok, why = rabbitmq_available()
        if not ok:
            self.fail(f"{why}. RabbitMQ is part of the test suite's dependencies: "
                      f"run scripts/deps.sh as root.")
        bin_path("vigie-node")
        self.cluster = RabbitCluster(self.h, sites=[SITE], posts=[POST])
        t = time.monotonic()
        try:
            self.cluster.start()
            self.cluster_seconds = time.monotonic() - t
        except AssertionError as e:
            if os.geteuid() != 0:
                raise unittest.SkipTest(f"RabbitMQ could not run as uid {os.geteuid()} "
                                        f"({e}); this test runs as root in CI") from None
            raise

    def _sweep(self):
        if self.cluster is None:
            return
        killed = self.cluster.sweep()
        if killed:
            self.fail(f"processes left after the harness closed, killed now: {killed}")

    # the pieces

    def start_node(self, site):
        conf = self.h.path("node.yaml")
        self.node_sock = self.h.path("node.sock")
        self.outbox = self.h.path("outbox.db")
        with open(conf, "w") as f:
            f.write(NODE_CONF.format(site=SITE, node=NODE, outbox=self.outbox,
                                     sock=self.node_sock, port=site.port,
                                     user=site.node_user(),
                                     password=site.password(site.node_user()),
                                     # TLS to the site broker when the harness gives it
                                     tls=getattr(site, "tls_yaml", lambda: "")()))
        node = self.h.spawn("node", [bin_path("vigie-node"), "-c", conf])
        wait_for(lambda: node.check_running() or os.path.exists(self.node_sock), 20,
                 "the node's socket")
        return node

    def start_relay(self, broker):
        relay = Relay(self.h, broker, posts=[POST],
                      escalation=[{"name": "police", "post": POST, "ack_deadline": "60s"}],
                      sites=[site_conf(SITE, zones=ZONES, address="Rue de Rivoli, Paris")],
                      dispatch_resend="1s", dispatch_resend_max="2s")
        set_protocol(relay.conf, "broker", "3.1.1")
        return relay.start(timeout=30)

    def start_post(self, broker):
        path = self.h.path("post.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"post: {POST}\nname: \"Préfecture de police\"\noperator: Brigadier Dupont\n"
                    f"broker:\n  host: {broker.host}\n  port: {broker.port}\n"
                    f"  username: post-{POST}\n  password: \"{broker.password(f'post-{POST}')}\"\n"
                    f"  protocol: auto\n  keepalive: 5\n{broker.tls_yaml_block(2)}")
        post = PostProc.spawn(self.h, "post", [bin_path("vigie-post"), "--json", "-c", path])
        post.wait_line("status", timeout=30, connected=True)
        return post

    def outbox_pending(self):
        db = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            db.close()

    def stored(self, relay):
        return set(relay.rows("SELECT boot_id, seq FROM events WHERE site=? AND node=?",
                              SITE, NODE))

    def burst(self, count, line, confirmed, pace=0.004):
        """Submit `count` events from a thread; their identities go to
        `confirmed`. Returns (thread, done event)."""
        done = threading.Event()
        errors = []

        def run():
            s = NodeSocket(self.node_sock)
            try:
                for i in range(count):
                    confirmed.append(s.send(f"{line} text=\"burst {i}\""))
                    time.sleep(pace)
            except Exception as e:  # reported by the main thread
                errors.append(e)
            finally:
                s.close()
                done.set()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, done, errors

    def wait_all_stored_once(self, relay, confirmed, timeout=90):
        want = set(confirmed)
        self.assertEqual(len(want), len(confirmed), "the node confirmed an identity twice")
        wait_for(lambda: want <= self.stored(relay), timeout,
                 f"all {len(want)} confirmed events stored by the relay "
                 f"(missing {len(want - self.stored(relay))})", interval=0.25)
        # Each once: the table's key is the identity, and the relay's
        # streams say the same contiguous count of this boot.
        rows = relay.rows("SELECT boot_id, seq, count(*) FROM events WHERE site=? AND node=? "
                          "GROUP BY boot_id, seq HAVING count(*) > 1", SITE, NODE)
        self.assertEqual(rows, [])
        # Everything receipted back down through the cluster and the bridge.
        wait_for(lambda: self.outbox_pending() == 0, timeout,
                 "the node's outbox to empty (every event receipted)", interval=0.25)

    # the test

    def test_dispatch_crosses_the_cluster_and_restarts_lose_nothing(self):
        t0 = time.monotonic()
        n1, n2 = self.cluster.nodes
        # A plain MQTT 3.1.1 bridge: RabbitMQ refuses Mosquitto's bridge flag.
        site = self.h.start_site(SITE, n1, extra_args=["--central-broker", "other"],
                                 timeout=30)
        node = self.start_node(site)
        # The node's birth is retained on rabbit1 only; the relay, started
        # after it on rabbit2, never gets it and must not need it.
        s = NodeSocket(self.node_sock)
        submitted = [s.send("kind=test state=test sensor=pir-hall text=\"before the relay\"")]
        relay = self.start_relay(n2)
        post = self.start_post(n1)

        # 1. An alarm: node -> site -> bridge -> rabbit1 -> rabbit2 -> relay
        #    -> rabbit2 -> rabbit1 -> post; the ack goes back the same way.
        submitted.append(s.send("kind=display_case sensor=case-regalia tool=hammer"))
        d = post.wait_line("dispatch", timeout=30, site=SITE)[0]
        self.assertTrue(d["new"])
        post.send(f"ack {d['id']}")
        # RabbitMQ sends a PUBACK once it has stored the message (publisher
        # confirms), which can come after the relay's answer (the incident
        # acknowledged) has reached the post: the post still reports its
        # ack as delivered, once, in either order.
        wait_for(lambda: relay.count("SELECT count(*) FROM acks") >= 1, 30,
                 "the post's ack at the relay")
        post.wait_line("ack", timeout=30, dispatch=d["id"])
        # The event from before the relay's first connection had no queue to
        # go to at the broker (a new session): the node re-sends it, since no
        # Receipt covered it.
        wait_for(lambda: relay.count("SELECT count(*) FROM events WHERE site=?", SITE) == 2, 30,
                 "the event from before the relay's first session, re-sent by the node")
        s.close()

        # 2. The relay killed with -9 in the middle of a burst of alarms
        #    (motion in the hall: one incident, dispatched to the post).
        alarm = "kind=motion sensor=pir-hall"
        confirmed = []
        t, done, errors = self.burst(400, alarm, confirmed)
        wait_for(lambda: len(self.stored(relay)) >= 100, 60, "the relay storing the burst")
        relay.kill9()
        wait_for(lambda: len(confirmed) >= 250 or done.is_set(), 60,
                 "the burst going on while the relay is down")
        relay.start(timeout=30)
        t.join(120)
        self.assertFalse(errors, errors)
        self.assertEqual(len(confirmed), 400)
        self.wait_all_stored_once(relay, confirmed)
        self.assertIn("session resumed", relay.log())

        # 3. rabbit2, where the relay's session queue lives, restarted in the
        #    middle of a burst (rabbit2, not rabbit1: docs/SCALE.md). What
        #    rabbit1 routes to that queue meanwhile is confirmed and dropped;
        #    the node's re-send brings it.
        confirmed2 = []
        t, done, errors = self.burst(300, alarm, confirmed2, pace=0.02)
        wait_for(lambda: len(confirmed2) >= 50, 60, "the second burst started")
        down_from = len(confirmed2)
        n2.stop(timeout=60)
        wait_for(lambda: len(confirmed2) >= 150 or done.is_set(), 60,
                 "the burst going on while rabbit2 is down")
        n2.start(timeout=120)
        down_to = len(confirmed2)
        t.join(120)
        self.assertFalse(errors, errors)
        self.assertEqual(len(confirmed2), 300)
        self.wait_all_stored_once(relay, confirmed2)

        # Nothing doubled: one incident for the hall, its dispatch shown as
        # new once; the display case's, acknowledged, never shown again.
        hall = relay.rows("SELECT id FROM incidents WHERE site=? AND zone='hall'", SITE)
        self.assertEqual(len(hall), 1, hall)
        hall_new = [o for o in post.objects("dispatch", new=True)
                    if o.get("incident") == hall[0][0]]
        self.assertEqual(len(hall_new), 1, hall_new)
        self.assertEqual(len(post.objects("dispatch", id=d["id"], new=True)), 1)
        self.assertEqual(len(post.objects("dispatch", id=d["id"])), 1)
        self.assertEqual(len(post.objects("ack", dispatch=d["id"])), 1)
        self.assertTrue(node.alive() and relay.proc.alive() and post.alive())
        # Everything stored is what was submitted, plus what the node says
        # of itself: with no Receipt through its only path for its
        # failover_time (rabbit2 down), a path_loss trouble and its restore.
        submitted += confirmed + confirmed2
        extra = self.stored(relay) - set(submitted)
        kinds = {relay.count("SELECT kind FROM events WHERE site=? AND node=? AND boot_id=? "
                             "AND seq=?", SITE, NODE, b, q) for b, q in extra}
        self.assertLessEqual(kinds, {pb().KIND_PATH_LOSS}, f"unexpected events {sorted(extra)}")
        total = len(self.stored(relay))
        # Supervision's own troubles (a relay cut off from its broker node
        # still counts node silence: docs/SCALE.md), reported, not judged.
        others = relay.count("SELECT count(*) FROM incidents WHERE id NOT IN (?, ?)",
                             hall[0][0], d["incident"])
        report(f"cluster formed in {self.cluster_seconds:.1f} s; {total} events stored once "
               f"({len(extra)} path_loss of the node's own) across a relay kill -9 and a restart of rabbit2 ({down_to - down_from} "
               f"confirmed by the node while rabbit2 was down); other incidents "
               f"(supervision) {others}; test body {time.monotonic() - t0:.1f} s")


def set_protocol(conf_path, section, protocol):
    """Rewrite a JSON config written by a helper: broker protocol pinned."""
    with open(conf_path) as f:
        cfg = json.load(f)
    cfg[section]["protocol"] = protocol
    with open(conf_path, "w") as f:
        json.dump(cfg, f, indent=1)


if __name__ == "__main__":
    unittest.main()
