"""vigie-relay, stage 1: ingest. Real mosquitto brokers on 127.0.0.1 and
the real relay; nodes are played by MQTT clients (as the site bridge's user
on the central) or by a real vigie-node behind a real site broker.

- each event is stored once, keyed by (site, node, boot_id, seq), and the
  Receipt names the highest contiguous seq of that boot, after the commit;
- repeats are recognised, re-receipted, never stored or processed again;
- bad payloads on every topic the relay reads are logged with the reason,
  counted, and the relay goes on;
- a relay killed with -9 loses nothing: its persistent session keeps what
  was published meanwhile, and what it never receipted comes again."""

import os
import shutil
import sqlite3
import subprocess
import threading
import time
import unittest

from vigie_harness import HarnessTestCase, bin_path, publish_many, publish_sync, wait_for
from test_relay_support import (NodeSocket, Relay, event, heartbeat, highest_receipt, pb,
                                post_state, receipts, ack)

EV = "vigie/v1/site/louvre/node/{}/event"


class IngestTest(HarnessTestCase):

    def setUp(self):
        super().setUp()
        self.central = self.h.start_central(sites=["louvre", "orsay"], posts=["p1"])

    def node(self, site="louvre"):
        """A client with the rights of a site's bridge: publishes that site's
        events, reads its receipts."""
        return self.h.client(self.central, f"bridge-{site}")

    def receipt_sub(self, site="louvre"):
        return self.h.subscriber(self.central, f"bridge-{site}", [f"vigie/v1/relay/{site}/#"])

    def wait_receipt(self, sub, node, boot, seq, timeout=10):
        wait_for(lambda: highest_receipt(sub, node, boot) >= seq, timeout,
                 f"receipt of {node} boot {boot} up to {seq} (got {highest_receipt(sub, node, boot)})")
        self.assertEqual(highest_receipt(sub, node, boot), seq, "never past what was sent")

    def test_stores_once_and_receipts_highest_contiguous(self):
        relay = Relay(self.h, self.central).start()
        sub = self.receipt_sub()
        n = self.node()
        publish_many(n, [(EV.format("n1"), event("louvre", "n1", 100, s)) for s in range(1, 51)])
        self.wait_receipt(sub, "n1", 100, 50)
        self.assertEqual(relay.count("SELECT count(*) FROM events"), 50)
        # Repeats: receipted again (the node may have lost ours), not stored again.
        before = len(receipts(sub, "n1"))
        publish_many(n, [(EV.format("n1"), event("louvre", "n1", 100, s)) for s in range(10, 21)])
        wait_for(lambda: len(receipts(sub, "n1")) > before, 10, "a receipt for the repeats")
        self.assertEqual(highest_receipt(sub, "n1", 100), 50)
        self.assertEqual(relay.count("SELECT count(*) FROM events"), 50)
        self.assertEqual(relay.count("SELECT count(*) FROM events WHERE seq BETWEEN 10 AND 20"), 11)
        relay.stop()
        st = relay.stats()
        self.assertEqual(st["repeats"], 11, st)
        self.assertEqual(st["stored"], 50, st)
        self.assertEqual(st["rejected"], 0, st)

    def test_gap_holds_the_receipt_back(self):
        Relay(self.h, self.central).start()
        sub = self.receipt_sub()
        n = self.node()
        for s in (1, 2, 4, 5):
            publish_sync(n, EV.format("n1"), event("louvre", "n1", 7, s))
        self.wait_receipt(sub, "n1", 7, 2)
        # 4 and 5 are stored but not receipted: the receipt says "all up to".
        time.sleep(0.3)
        self.assertEqual(highest_receipt(sub, "n1", 7), 2)
        publish_sync(n, EV.format("n1"), event("louvre", "n1", 7, 3))
        self.wait_receipt(sub, "n1", 7, 5)

    def test_receipts_per_node_and_boot(self):
        Relay(self.h, self.central).start()
        lsub, osub = self.receipt_sub("louvre"), self.receipt_sub("orsay")
        ln, on = self.node("louvre"), self.node("orsay")
        publish_many(ln, [(EV.format("n1"), event("louvre", "n1", 10, s)) for s in (1, 2, 3)]
                     + [(EV.format("n1"), event("louvre", "n1", 11, s)) for s in (1,)]
                     + [(EV.format("n2"), event("louvre", "n2", 10, s)) for s in (1, 2)])
        publish_sync(on, "vigie/v1/site/orsay/node/n1/event", event("orsay", "n1", 10, 1))
        self.wait_receipt(lsub, "n1", 10, 3)
        self.wait_receipt(lsub, "n1", 11, 1)
        self.wait_receipt(lsub, "n2", 10, 2)
        self.wait_receipt(osub, "n1", 10, 1)
        # Each site's receipts go down its own subtree only.
        self.assertEqual([r for r in receipts(lsub) if r[0] == "n1" and r[1] == 10 and r[2] == 1
                          and False], [])
        self.assertFalse(any(m.topic.startswith("vigie/v1/relay/louvre/") for m in osub.received()))

    def test_bad_payloads_are_logged_counted_and_survived(self):
        relay = Relay(self.h, self.central).start()
        sub = self.receipt_sub()
        n = self.node()
        post = self.h.client(self.central, "post-p1")
        good = event("louvre", "n1", 5, 1)
        p = pb()
        wrong_types = [
            heartbeat("louvre", "n1", 5),
            p.Receipt(site="louvre", node="n1", boot_id=5, seq=1).SerializeToString(),
            p.NodeState(site="louvre", node="n1", boot_id=5, status=p.NODE_ONLINE).SerializeToString(),
            p.Dispatch(id="x-l1", incident="x", post="p1").SerializeToString(),
        ]
        bad_events = [os.urandom(300), b"\xff" * 40, good[:-7], b""] + wrong_types + [
            event("orsay", "n9", 5, 1),                       # another site's event
            event("louvre", "n2", 5, 1),                      # another node's event
            event("louvre", "n1", 5, 0),                      # seq 0
            event("louvre", "n1", 0, 1),                      # boot 0
            event("louvre", "n1", 5, 1, zone="Bad Zone!"),    # not an id
            b"\x00" * 70000,                                  # over 64 KiB
        ]
        items = [(EV.format("n1"), b) for b in bad_events]
        hb = "vigie/v1/site/louvre/node/n1/heartbeat"
        st = "vigie/v1/site/louvre/node/n1/state"
        # A wrong type is caught where its wire layout differs from the
        # expected one (protobuf is not self-describing: a SignedEvent has a
        # Heartbeat's layout, so it is judged by its body).
        items += [(hb, os.urandom(100)), (hb, heartbeat("louvre", "n1", 5)[:-3]),
                  (hb, p.NodeState(site="louvre", node="n1", boot_id=5,
                                   status=p.NODE_ONLINE).SerializeToString()),
                  (hb, p.Heartbeat(body=os.urandom(20)).SerializeToString()),
                  (hb, heartbeat("orsay", "n1", 5)), (hb, heartbeat("louvre", "n1", 0))]
        items += [(st, os.urandom(64)), (st, good[:10]),
                  (st, p.NodeState(site="louvre", node="n7", boot_id=5,
                                   status=p.NODE_ONLINE).SerializeToString()),
                  (st, p.NodeState(site="louvre", node="n1", boot_id=5, status=9).SerializeToString())]
        publish_many(n, items)
        pitems = [("vigie/v1/post/p1/ack", os.urandom(50)),
                  ("vigie/v1/post/p1/ack", ack("p1", "")),
                  ("vigie/v1/post/p1/ack", ack("p2", "louvre-1-l1")),
                  ("vigie/v1/post/p1/state", os.urandom(33)),
                  ("vigie/v1/post/p1/state", post_state("p2", True)),
                  ("vigie/v1/post/p1/state", good)]
        publish_many(post, pitems)
        # Still working: a good event is stored and receipted.
        publish_sync(n, EV.format("n1"), good)
        self.wait_receipt(sub, "n1", 5, 1)
        self.assertTrue(relay.proc.alive())
        self.assertEqual(relay.count("SELECT count(*) FROM events"), 1)
        self.assertEqual(relay.count("SELECT count(*) FROM incidents"), 0)
        relay.stop()
        log = relay.log()
        for reason in ("does not decode", "event names orsay/n9, the topic louvre/n1",
                       "event names louvre/n2, the topic louvre/n1", "both start at 1",
                       "is not an id", "over 64 KiB", "heartbeat names orsay/n1",
                       "heartbeat body does not decode", "heartbeat without a boot id",
                       "does not decode as a NodeState", "node state names louvre/n7",
                       "node state with status 9", "does not decode as an Ack",
                       "ack names no valid incident", "ack names post p2",
                       "does not decode as a PostState", "post state names p2"):
            self.assertIn(reason, log)
        stats = relay.stats()
        # Every bad message counted once.
        self.assertEqual(stats["rejected"], len(items) + len(pitems), stats)
        self.assertEqual(stats["rejected"], stats["bad"] + stats["mismatched"], stats)
        self.assertGreaterEqual(stats["mismatched"], 6, stats)

    def test_kill9_loses_nothing(self):
        """Events keep coming while the relay is killed and restarted: each
        ends up stored once and receipted; its persistent session held what
        came while it was away."""
        relay = Relay(self.h, self.central).start()
        sub = self.receipt_sub()
        n = self.node()
        total = 3000
        done = threading.Event()

        def feed():
            try:
                batch = 100
                for start in range(1, total + 1, batch):
                    publish_many(n, [(EV.format("n1"), event("louvre", "n1", 42, s))
                                     for s in range(start, min(start + batch, total + 1))])
                    time.sleep(0.01)
            finally:
                done.set()

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        wait_for(lambda: highest_receipt(sub, "n1", 42) >= 300, 20, "first receipts")
        relay.kill9()
        time.sleep(0.5)
        relay.start()
        t.join(60)
        self.assertTrue(done.is_set())
        # A node re-sends what is not receipted: play that part.
        deadline = time.monotonic() + 60
        while highest_receipt(sub, "n1", 42) < total and time.monotonic() < deadline:
            have = highest_receipt(sub, "n1", 42)
            wait_for(lambda: highest_receipt(sub, "n1", 42) > have, 3, "progress") \
                if False else time.sleep(1)
            if highest_receipt(sub, "n1", 42) == have:
                publish_many(n, [(EV.format("n1"), event("louvre", "n1", 42, s))
                                 for s in range(have + 1, total + 1)])
        self.assertEqual(highest_receipt(sub, "n1", 42), total)
        self.assertEqual(relay.count("SELECT count(*) FROM events"), total)
        self.assertEqual(relay.count("SELECT contig FROM streams WHERE node='n1' AND boot_id=42"), total)
        self.assertIn("session resumed", relay.log())

    def test_end_to_end_with_a_real_node(self):
        """vigie-node -> site broker -> bridge -> central -> relay: the node
        exits after its scenario only once every event is receipted."""
        node_bin = bin_path("vigie-node")
        site = self.h.start_site("louvre", self.central)
        relay = Relay(self.h, self.central).start()
        scenario = os.path.join(os.environ.get("VIGIE_SOURCE", "../.."), "examples",
                                "scenarios", "routine.scn")
        conf = self.h.path("node.yaml")
        with open(conf, "w") as f:
            f.write(f"""site: louvre
node: hall-1
outbox: {self.h.path('hall-1.db')}
heartbeat_period: 500ms
reporting_time: 2s
brokers:
  primary: {{host: 127.0.0.1, port: {site.port}, username: {site.node_user()}, password: "{site.password(site.node_user())}"{site.tls_yaml()}}}
""")
        node = self.h.spawn("node", [node_bin, "-c", conf, "--scenario", scenario, "--speed", "100",
                                     "--exit-after-scenario"])
        self.assertEqual(node.wait_exit(30), 0, node.log_tail())
        with open(scenario) as f:
            lines = [l for l in f if l.strip() and not l.startswith("#")]
        self.assertEqual(relay.count("SELECT count(*) FROM events WHERE node='hall-1'"), len(lines))
        wait_for(lambda: "node louvre/hall-1 online" in relay.log(), 5, "the birth seen")

    def test_relay_that_lost_its_database_takes_the_nodes_receipts(self):
        """The relay's database is lost (replaced by an empty one) while a
        node runs on: the node's next events come above a gap the relay
        cannot fill (the node deleted what was receipted). Its heartbeats
        say how far it was receipted; the relay takes that as stored, so
        its receipts pass the gap and the node's outbox empties, and only
        the new events are stored."""
        site = self.h.start_site("louvre", self.central)
        relay = Relay(self.h, self.central).start()
        sock_path = self.h.path("node.sock")
        outbox = self.h.path("hall-1.db")
        conf = self.h.path("node.yaml")
        with open(conf, "w") as f:
            f.write(f"""site: louvre
node: hall-1
outbox: {outbox}
socket: {sock_path}
heartbeat_period: 300ms
reporting_time: 3s
resend_timeout: 1s
brokers:
  primary: {{host: 127.0.0.1, port: {site.port}, username: {site.node_user()}, password: "{site.password(site.node_user())}"{site.tls_yaml()}}}
""")
        node = self.h.spawn("node", [bin_path("vigie-node"), "-c", conf])
        wait_for(lambda: node.check_running() or os.path.exists(sock_path), 20, "the node's socket")
        s = NodeSocket(sock_path)

        def pending():
            db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=10)
            try:
                return db.execute("SELECT count(*) FROM events").fetchone()[0]
            finally:
                db.close()

        first = [s.send(f"kind=test state=test sensor=s{i}") for i in range(3)]
        boot = first[0][0]
        wait_for(lambda: pending() == 0, 20, "the first events receipted")
        relay.kill9()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(relay.db + suffix):
                os.remove(relay.db + suffix)
        relay.start()
        later = [s.send(f"kind=test state=test sensor=t{i}") for i in range(2)]
        self.assertEqual([q for _, q in later], [4, 5])
        wait_for(lambda: pending() == 0, 20,
                 f"the node's outbox to empty ({pending()} left)")
        self.assertIn(f"louvre/hall-1 boot {boot}: the node holds receipts up to #3", relay.log())
        self.assertEqual(relay.count("SELECT count(*) FROM events"), 2)
        self.assertEqual(relay.count(f"SELECT contig FROM streams WHERE node='hall-1' "
                                     f"AND boot_id={boot}"), 5)
        s.close()
        self.assertTrue(node.alive())

    def test_backup_while_running_then_restore(self):
        """`vigie-relay backup` copies the database while the relay runs and
        events keep coming: one checked, self-contained file, never written
        over an existing one, refused for a database that is not a relay's.
        Put back in place of a lost database, the relay starts from it and
        catches up on the node's receipts."""
        relay = Relay(self.h, self.central).start()
        sub = self.receipt_sub()
        n = self.node()
        publish_many(n, [(EV.format("n1"), event("louvre", "n1", 42, s)) for s in range(1, 201)])
        self.wait_receipt(sub, "n1", 42, 200)
        out = self.h.path("backup.db")
        more = threading.Thread(target=publish_many, daemon=True, args=(
            n, [(EV.format("n1"), event("louvre", "n1", 42, s)) for s in range(201, 2001)]))
        more.start()
        r = subprocess.run([bin_path("vigie-relay"), "backup", "--db", relay.db, out],
                           capture_output=True, text=True, timeout=60)
        more.join(60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"^backup of .* to .*: \d+ event\(s\), \d+ incident\(s\), "
                                   r"checked\n$")
        self.assertFalse(os.path.exists(out + "-wal") or os.path.exists(out + ".partial"))
        db = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
        try:
            self.assertEqual(db.execute("PRAGMA quick_check").fetchone()[0], "ok")
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "delete")
            copied = db.execute("SELECT count(*) FROM events").fetchone()[0]
            contig = db.execute("SELECT contig FROM streams WHERE node='n1' AND boot_id=42"
                                ).fetchone()[0]
            # One transaction's view: everything up to its contig is in it.
            self.assertGreaterEqual(copied, 200)
            self.assertEqual(db.execute("SELECT count(*) FROM events WHERE node='n1' "
                                        "AND boot_id=42 AND seq <= ?", (contig,)).fetchone()[0],
                             contig)
        finally:
            db.close()
        size = os.path.getsize(out)
        r = subprocess.run([bin_path("vigie-relay"), "backup", "--db", relay.db, out],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("exists: refusing to overwrite", r.stderr)
        self.assertEqual(os.path.getsize(out), size)
        other = self.h.path("other.db")
        sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
        r = subprocess.run([bin_path("vigie-relay"), "backup", "--db", other,
                            self.h.path("other-copy.db")], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not a relay database", r.stderr)
        self.assertFalse(os.path.exists(self.h.path("other-copy.db")))
        # The database is lost; the copy goes in its place.
        self.wait_receipt(sub, "n1", 42, 2000)
        relay.kill9()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(relay.db + suffix):
                os.remove(relay.db + suffix)
        shutil.copy(out, relay.db)
        relay.start()
        # Everything the copy held (the broker may also deliver again what
        # the killed relay had not acknowledged: more is fine, less is not).
        self.assertEqual(relay.count("SELECT count(*) FROM events WHERE node='n1' AND "
                                     f"boot_id=42 AND seq <= {contig}"), contig)
        self.assertGreaterEqual(relay.count("SELECT count(*) FROM events"), copied)
        # The node's word (its heartbeats, QoS 0, every period) on what it
        # was receipted for.
        publish_many(n, [(EV.format("n1"), event("louvre", "n1", 42, 2001))])

        def caught_up():
            publish_sync(n, "vigie/v1/site/louvre/node/n1/heartbeat",
                         heartbeat("louvre", "n1", 42, receipted_seq=2000), qos=0)
            return highest_receipt(sub, "n1", 42) >= 2001

        wait_for(caught_up, 20, "receipts past the copy, from the node's heartbeats")
        self.assertEqual(highest_receipt(sub, "n1", 42), 2001)
        self.assertEqual(relay.count("SELECT contig FROM streams WHERE node='n1' AND boot_id=42"),
                         2001)


if __name__ == "__main__":
    unittest.main()
