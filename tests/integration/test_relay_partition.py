"""Issue 8: relays that split sites between them (static partition).

Two vigie-relay processes on one central broker, each with `serve: listed`
and its own, disjoint `sites:`: relay-a serves the Louvre and Orsay,
relay-b the Natural History Museum and Langres. Every museum has its site
broker, its bridge and a real vigie-node playing a duress alarm and two
tests; one police post, pp-1, is shared. Expected:

- each relay stores its own sites' events and nothing of the others (both
  databases read), and every event is receipted: each node's outbox
  empties;
- each alarm reaches the shared post under one dispatch id, sent by the
  relay that serves its site, never by both; the post's acks reach both
  relays, the other relay ignores them quietly;
- the Louvre's bridge dropping raises a bridge trouble in relay-a only;
- the shared post's loss is raised once, by relay-a (relay-b has
  `supervise_posts: false` and only follows the post's state).

A second test: a relay that served every site before (`serve: all`, the
same persistent session) and now serves a list ignores what its old
wildcard subscription still brings (counted as "not served") and drops that
subscription, so the next run receives nothing of the other sites.

TLS on every link, as the harness's brokers speak it. No timed assertion:
every wait polls with a deadline; every process is stopped by PID by the
harness, also when a test fails."""

import json
import os
import sqlite3
import sys
import unittest

from vigie_harness import HarnessTestCase, bin_path, publish_sync, wait_for
from test_relay_support import Relay, ack, dispatches, event, incidents, pb, site_conf
from test_relay_escalation import POST_SCRIPT

SERVED = {"relay-a": ["louvre", "orsay"], "relay-b": ["mnhn", "langres"]}
MUSEUMS = SERVED["relay-a"] + SERVED["relay-b"]
POST = "pp-1"

NODE = """site: {site}
node: hall-1
outbox: {outbox}
heartbeat_period: 500ms
reporting_time: 5s
brokers:
  primary: {{host: 127.0.0.1, port: {port}, username: {user}, password: "{password}"{tls}}}
"""

# One alarm for the police (duress goes there at once), two that call
# nobody.
SCENARIO = """# one duress alarm, two periodic tests
0     kind=duress state=alarm sensor=panic-desk text="duress at the front desk"
+0.5  kind=test state=test sensor=door-staff text="periodic test"
+0.5  kind=test state=test sensor=ups-1 text="periodic test"
"""
EVENTS = 3

LADDER = [{"name": "police", "post": POST, "ack_deadline": "60s"}]


def owner(site):
    return next(r for r, sites in SERVED.items() if site in sites)


class PartitionTest(HarnessTestCase):

    def spawn_post(self, central):
        script = self.h.path("post.py")
        with open(script, "w") as f:
            f.write(POST_SCRIPT)
        proc = self.h.spawn(POST, [sys.executable, script, central.host, str(central.port),
                                   POST, central.password(f"post-{POST}")]
                            + central.tls_files(),
                            env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
        wait_for(lambda: "online" in proc.log_text(), 10, f"post {POST} online")
        return proc

    def spawn_node(self, site, scenario):
        outbox = self.h.path(f"{site.site}-hall-1.db")
        conf = self.h.path(f"{site.site}-node.yaml")
        with open(conf, "w") as f:
            f.write(NODE.format(site=site.site, outbox=outbox, port=site.port,
                                user=site.node_user(), password=site.password(site.node_user()),
                                tls=site.tls_yaml()))
        self.h.spawn(f"node-{site.site}", [bin_path("vigie-node"), "-c", conf, "--scenario",
                                           scenario, "--speed", "10", "--loop", "1"])
        return outbox

    @staticmethod
    def pending(outbox):
        """Events still in a node's outbox (not receipted); None before the
        node created it."""
        if not os.path.exists(outbox):
            return None
        db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.OperationalError:
            return None  # schema not there yet
        finally:
            db.close()

    def relay(self, central, name, **kw):
        return Relay(self.h, central, name=name, posts=[POST], escalation=LADDER,
                     sites=[site_conf(s) for s in SERVED[name]], serve="listed",
                     dispatch_resend="1s", dispatch_resend_max="2s", **kw)

    def test_two_relays_split_four_museums(self):
        bin_path("vigie-node")
        central = self.h.start_central(sites=MUSEUMS, posts=[POST])
        sites = {m: self.h.start_site(m, central) for m in MUSEUMS}
        watch = self.h.subscriber(central, "dashboard", ["vigie/v1/incident/#",
                                                         "vigie/v1/post/+/dispatch"])
        post = self.spawn_post(central)
        relays = {
            # relay-a supervises the shared post; relay-b only follows its
            # state (its dispatches would still move to a backup).
            "relay-a": self.relay(central, "relay-a").start(),
            "relay-b": self.relay(central, "relay-b", supervise_posts=False).start(),
        }
        for name, r in relays.items():
            self.assertIn(f"serve: listed: 2 site(s) served here ({', '.join(SERVED[name])})",
                          r.log())
        scenario = self.h.path("duress.scn")
        with open(scenario, "w") as f:
            f.write(SCENARIO)
        outboxes = {m: self.spawn_node(sites[m], scenario) for m in MUSEUMS}

        # Every event stored by the relay serving its site...
        for m in MUSEUMS:
            r = relays[owner(m)]
            wait_for(lambda: r.count("SELECT count(*) FROM events WHERE site=?", m) == EVENTS,
                     60, f"{owner(m)} to store the {EVENTS} events of {m}", interval=0.1)
        # ...and receipted: each node's outbox empties.
        for m in MUSEUMS:
            wait_for(lambda: self.pending(outboxes[m]) == 0, 30,
                     f"the outbox of {m}'s node to empty (every event receipted)",
                     interval=0.1)
        # Each relay holds its own sites only, in every table.
        for name, r in relays.items():
            for table in ("events", "streams", "nodes", "incidents"):
                got = {row[0] for row in r.rows(f"SELECT DISTINCT site FROM {table}")
                       if row[0]}
                self.assertLessEqual(got, set(SERVED[name]), f"{name}: {table}")
            self.assertEqual({row[0] for row in r.rows("SELECT DISTINCT site FROM events")},
                             set(SERVED[name]), name)

        # Each alarm reaches the shared post under one dispatch id.
        p = pb()

        def duress_dispatches():
            out = {}
            for d in dispatches(watch, POST):
                if d.kind == p.KIND_DURESS:
                    out.setdefault(d.site, set()).add(d.id)
            return out

        wait_for(lambda: set(duress_dispatches()) == set(MUSEUMS), 30,
                 "a duress dispatch of every museum at the post")
        seen = duress_dispatches()
        for m in MUSEUMS:
            self.assertEqual(len(seen[m]), 1, f"{m}: one dispatch, not one per relay: {seen[m]}")
            (did,) = seen[m]
            wait_for(lambda: f"dispatch {did} " in post.log_text(), 10,
                     f"the post to print {did}")
        # Sent by the relay serving the site, never by the other one.
        for d in dispatches(watch, POST):
            mine = owner(d.site) if d.site else None
            for name, r in relays.items():
                n = r.count("SELECT count(*) FROM dispatches WHERE id=?", d.id)
                if d.site:
                    self.assertEqual(n, 1 if name == mine else 0, f"{d.id} in {name}")
        for m in MUSEUMS:
            duress = [i for i in incidents(watch).values()
                      if i.site == m and i.kind == p.KIND_DURESS]
            self.assertEqual(len(duress), 1, f"{m}: one duress incident in all")

        # The post acknowledges each one; the acks go to both relays.
        poster = self.h.client(central, f"post-{POST}")
        for m in MUSEUMS:
            (did,) = seen[m]
            publish_sync(poster, f"vigie/v1/post/{POST}/ack", ack(POST, did, by="Lefèvre"))
        for m in MUSEUMS:
            (did,) = seen[m]
            inc = did.rsplit("-", 1)[0]
            mine = relays[owner(m)]
            wait_for(lambda: mine.count("SELECT count(*) FROM acks WHERE incident=?", inc) == 1,
                     10, f"{owner(m)} to record the ack of {inc}")
            wait_for(lambda: incidents(watch)[inc].state == p.INCIDENT_ACKNOWLEDGED, 10,
                     f"{inc} acknowledged")
        for name, r in relays.items():
            # The other relay's acks: no row, no warning, no info line.
            rows = r.rows("SELECT incident FROM acks")
            for (inc,) in rows:
                self.assertIn(inc.split("-")[0], SERVED[name])
            self.assertNotIn("ack on ", r.log(), f"{name} spoke of another relay's ack")

        # The Louvre's bridge drops: relay-a raises the trouble, relay-b
        # does not even hear of it.
        sites["louvre"].kill9()

        def bridge_trouble(name):
            return relays[name].count("SELECT count(*) FROM incidents WHERE site='louvre' "
                                      "AND subject='bridge' AND trouble=1")

        wait_for(lambda: bridge_trouble("relay-a") == 1, 20, "relay-a's louvre bridge trouble")
        wait_for(lambda: [i for i in incidents(watch).values()
                          if i.site == "louvre" and i.subject == "bridge"], 10,
                 "the bridge trouble published")
        self.assertIn("site louvre bridge down", relays["relay-a"].log())
        # relay-b: the supervision of another site is not its business; its
        # own bridges are up.
        self.assertEqual(bridge_trouble("relay-b"), 0)
        self.assertEqual(relays["relay-b"].count(
            "SELECT count(*) FROM incidents WHERE subject='bridge'"), 0)
        self.assertNotIn("louvre", relays["relay-b"].log())

        # The shared post goes away: relay-a (supervise_posts, the
        # default) raises one trouble; relay-b follows the post's state but
        # leaves the trouble to relay-a, so the loss is reported once.
        post.kill9()

        def post_trouble(name):
            return relays[name].count("SELECT count(*) FROM incidents "
                                      "WHERE subject='post:pp-1' AND trouble=1")

        wait_for(lambda: post_trouble("relay-a") == 1, 20, "relay-a's post trouble")
        wait_for(lambda: "police post pp-1 offline: not raised here" in relays["relay-b"].log(),
                 20, "relay-b to see the post's loss")
        self.assertEqual(post_trouble("relay-b"), 0)
        for name, r in relays.items():
            r.stop()
            st = r.stats()
            self.assertEqual(st.get("not served"), 0, f"{name}: per-site subscriptions only")
            self.assertEqual(st.get("stored"), EVENTS * len(SERVED[name]), name)
            self.assertEqual(st.get("rejected"), 0, name)

    def test_a_relay_that_served_every_site_keeps_out_the_others(self):
        central = self.h.start_central(sites=["louvre", "mnhn"], posts=[POST])
        relay = Relay(self.h, central, name="relay-b", posts=[POST], escalation=LADDER,
                      sites=[site_conf("mnhn")])
        # An earlier run served every site: its session holds the wildcard.
        relay.start()
        relay.stop()
        louvre = self.h.client(central, "bridge-louvre")
        mnhn = self.h.client(central, "bridge-mnhn")
        ev = "vigie/v1/site/{}/node/hall-1/event"
        p = pb()

        def send(client, site, seq):
            publish_sync(client, ev.format(site), event(site, "hall-1", 7, seq,
                                                        kind=p.KIND_TEST, state=p.STATE_TEST))

        # Queued for the relay's session while it is away.
        for seq in (1, 2, 3):
            send(louvre, "louvre", seq)
        send(mnhn, "mnhn", 1)
        with open(relay.conf) as f:
            cfg = json.load(f)
        cfg["serve"] = "listed"
        with open(relay.conf, "w") as f:
            json.dump(cfg, f, indent=1)
        relay.start()
        # Delivered in order: once mnhn's is stored, the Louvre's came.
        wait_for(lambda: relay.count("SELECT count(*) FROM events WHERE site='mnhn'") == 1, 10,
                 "mnhn's event stored")
        relay.stop()
        self.assertEqual(relay.count("SELECT count(*) FROM events WHERE site='louvre'"), 0)
        self.assertEqual(relay.count("SELECT count(*) FROM streams WHERE site='louvre'"), 0)
        st = relay.stats()
        self.assertEqual(st.get("not served"), 3, "the Louvre's three events, counted")
        self.assertEqual(st.get("receipts"), 1, "mnhn's only")
        # The wildcard was dropped from the session: nothing of the Louvre
        # is queued for the next run.
        for seq in (4, 5):
            send(louvre, "louvre", seq)
        send(mnhn, "mnhn", 2)
        relay.start()
        wait_for(lambda: relay.count("SELECT count(*) FROM events WHERE site='mnhn'") == 2, 10,
                 "mnhn's second event stored")
        relay.stop()
        st = relay.stats()
        self.assertEqual(st.get("not served"), 0)
        self.assertEqual(relay.count("SELECT count(*) FROM events WHERE site='louvre'"), 0)


if __name__ == "__main__":
    unittest.main()
