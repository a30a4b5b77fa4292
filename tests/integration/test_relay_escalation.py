"""vigie-relay, stage 3: incidents, the escalation ladder, dispatches to
police posts, acknowledgements, durable state and the audit log.

Posts are played by MQTT clients as the generated post-<post> users (or by
a small process with a real LWT, killed with -9)."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
import unittest

from vigie_harness import HarnessTestCase, bin_path, publish_sync, wait_for
from test_relay_support import (Relay, ack, dispatches, event, incidents, pb, post_state,
                                site_conf)

EV = "vigie/v1/site/louvre/node/apollo-1/event"


def report(text):
    print(f"\n    [figure] {text}", file=sys.stderr, flush=True)


ZONES = [
    {"id": "apollo-gallery", "name": "Galerie d'Apollon", "kind": "gallery", "floor": "1",
     "facade": "seine", "location": {"lat": 48.86085, "lon": 2.337},
     "cameras": ["cam-apollo-east", "cam-apollo-west"],
     "action_plan": "Close the Rotonde grille; guards to both gallery ends"},
    {"id": "apollo-balcony", "name": "Apollo balcony", "floor": "1", "facade": "seine",
     "cameras": ["cam-quai-3"], "action_plan": "Police to the quai side"},
]

LADDER = [
    {"name": "site-security", "alert": True, "ack_deadline": "1s",
     "instructions": ["Guards to the zone"]},
    {"name": "museum-hq", "post": "hq", "ack_deadline": "1s"},
    {"name": "police", "post": "p1", "ack_deadline": "1s"},
]

POSTS = [{"id": "p1", "backup": "p1b"}, "p1b", "hq"]

# A post with a real LWT: connects as post-<post>, announces itself
# retained, prints each dispatch id; its will says OFFLINE.
POST_SCRIPT = textwrap.dedent("""
    import sys, time
    import paho.mqtt.client as mqtt
    import vigie_pb2 as pb
    host, port, post, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    tls = sys.argv[5:8]  # CA, client certificate, key: the harness brokers speak TLS
    def state(s):
        return pb.PostState(post=post, status=s, time_us=int(time.time() * 1e6)).SerializeToString()
    c = mqtt.Client(client_id="post-" + post, clean_session=False)
    if tls:
        c.tls_set(ca_certs=tls[0], certfile=tls[1] or None, keyfile=tls[2] or None)
    c.username_pw_set("post-" + post, pw)
    c.will_set(f"vigie/v1/post/{post}/state", state(pb.POST_OFFLINE), qos=1, retain=True)
    def on_connect(cl, ud, fl, rc):
        cl.subscribe(f"vigie/v1/post/{post}/dispatch", qos=1)
        cl.publish(f"vigie/v1/post/{post}/state", state(pb.POST_ONLINE), qos=1, retain=True)
        print("online", flush=True)
    def on_message(cl, ud, m):
        d = pb.Dispatch.FromString(m.payload)
        print("dispatch", d.id, d.attempt, d.site, "%.6f" % time.time(), flush=True)
    c.on_connect = on_connect
    c.on_message = on_message
    c.connect(host, port, 5)
    c.loop_forever()
""")


class EscalationTest(HarnessTestCase):

    def setUp(self):
        super().setUp()
        self.central = self.h.start_central(sites=["louvre"], posts=["p1", "p1b", "hq"])
        self.watch = self.h.subscriber(self.central, "dashboard",
                                       ["vigie/v1/incident/#", "vigie/v1/status/#",
                                        "vigie/v1/relay/#", "vigie/v1/post/+/dispatch"])
        self.node = self.h.client(self.central, "bridge-louvre")
        self.seq = 0

    def relay(self, **kw):
        kw.setdefault("posts", POSTS)
        kw.setdefault("escalation", LADDER)
        kw.setdefault("sites", [site_conf("louvre", zones=ZONES, region="paris",
                                          address="Rue de Rivoli, 75001 Paris",
                                          location={"lat": 48.8606, "lon": 2.3376})])
        kw.setdefault("dispatch_resend", "400ms")
        kw.setdefault("dispatch_resend_max", "800ms")
        return Relay(self.h, self.central, **kw)

    def alarm(self, kind, sensor, zone="apollo-gallery", boot=9, state=None, **attrs):
        p = pb()
        self.seq += 1
        fields = {}
        if attrs:
            fields["attributes"] = [p.Attribute(key=k, value=v) for k, v in attrs.items()]
        t0 = time.monotonic()
        publish_sync(self.node, EV, event("louvre", "apollo-1", boot, self.seq, kind=kind,
                                          state=p.STATE_ALARM if state is None else state,
                                          zone=zone, sensor=sensor, **fields))
        return t0

    def the_incident(self):
        return wait_for(lambda: list(incidents(self.watch).values()), 5, "an incident")[0]

    def test_ladder_escalates_resends_and_ack_stops(self):
        relay = self.relay().start()
        p = pb()
        self.alarm(p.KIND_MOTION, "pir-apollo")
        inc = self.the_incident()
        self.assertEqual(inc.state, p.INCIDENT_OPEN)
        self.assertEqual(inc.region, "paris")
        alert = wait_for(lambda: self.watch.received("vigie/v1/relay/louvre/alert"), 5, "alert")[0]
        a = p.SiteAlert.FromString(alert.payload)
        self.assertEqual(a.id, f"{inc.id}-l0")
        self.assertIn("Close the Rotonde grille; guards to both gallery ends", list(a.instructions))
        self.assertIn("Guards to the zone", list(a.instructions))
        # Level 1 after the 1 s deadline, then the police.
        wait_for(lambda: dispatches(self.watch, "hq"), 3, "dispatch to hq")
        d = wait_for(lambda: dispatches(self.watch, "p1"), 3, "dispatch to the police")[0]
        self.assertEqual(d.id, f"{inc.id}-l2")
        self.assertEqual(d.level, 2)
        self.assertEqual(d.level_name, "police")
        # Exactly where: zone, floor, facade, coordinates, cameras, plan.
        self.assertEqual(d.zone.id, "apollo-gallery")
        self.assertEqual(d.zone.name, "Galerie d'Apollon")
        self.assertEqual(d.zone.floor, "1")
        self.assertEqual(d.zone.facade, "seine")
        self.assertAlmostEqual(d.zone.location.lat, 48.86085)
        self.assertEqual(list(d.zone.cameras), ["cam-apollo-east", "cam-apollo-west"])
        self.assertEqual(d.action_plan, "Close the Rotonde grille; guards to both gallery ends")
        self.assertEqual(d.site_name, "Louvre")
        self.assertEqual(d.address, "Rue de Rivoli, 75001 Paris")
        self.assertAlmostEqual(d.site_location.lon, 2.3376)
        # Re-sent with the same id until acked.
        wait_for(lambda: len(dispatches(self.watch, "p1")) >= 3, 5, "re-sends")
        ds = dispatches(self.watch, "p1")
        self.assertEqual({x.id for x in ds}, {d.id})
        self.assertEqual([x.attempt for x in ds][:3], [1, 2, 3])
        self.assertEqual({x.id for x in dispatches(self.watch)}, {f"{inc.id}-l1", f"{inc.id}-l2"})
        post = self.h.client(self.central, "post-p1")
        publish_sync(post, "vigie/v1/post/p1/ack", ack("p1", d.id, by="Brigadier Martin"))
        wait_for(lambda: incidents(self.watch)[inc.id].state == p.INCIDENT_ACKNOWLEDGED, 5,
                 "acknowledged")
        self.assertEqual(incidents(self.watch)[inc.id].acked_by, "Brigadier Martin")
        time.sleep(0.3)
        n = len(dispatches(self.watch))
        time.sleep(2.0)
        self.assertEqual(len(dispatches(self.watch)), n, "an acked incident stops escalating")
        # A repeated ack changes nothing.
        publish_sync(post, "vigie/v1/post/p1/ack", ack("p1", d.id, by="Someone Else"))
        time.sleep(0.3)
        self.assertEqual(incidents(self.watch)[inc.id].acked_by, "Brigadier Martin")
        relay.stop()
        out = relay.audit(inc.id)
        self.assertEqual(out.returncode, 0, out.stderr)
        for what in ("opened", "alert", "escalated", "dispatch", "resend", "acknowledged"):
            self.assertIn(what, out.stdout)
        self.assertIn("acknowledged by Brigadier Martin at post p1", out.stdout)
        self.assertEqual(relay.count("SELECT count(*) FROM acks"), 1)

    def test_confirmed_intrusion_goes_to_the_police_at_once(self):
        self.relay().start()
        p = pb()
        self.alarm(p.KIND_VIBRATION, "seismic-w2", zone="apollo-balcony", tool="disc-cutter")
        inc = self.the_incident()
        self.assertFalse(inc.confirmed)
        time.sleep(0.2)
        t0 = self.alarm(p.KIND_GLASS_BREAK, "gb-w2", zone="apollo-balcony")
        d = wait_for(lambda: dispatches(self.watch, "p1"), 2, "police dispatch")[0]
        latency = self.watch.received("vigie/v1/post/p1/dispatch")[0].time - t0
        report(f"second detector -> confirmed dispatch at a post's subscriber in "
               f"{latency * 1000:.1f} ms (python client -> central -> relay, fsync -> central)")
        self.assertLess(latency, 1.0)
        self.assertTrue(d.confirmed)
        self.assertEqual(d.priority, p.PRIORITY_CRITICAL)
        self.assertEqual(d.id, f"{inc.id}-l2")
        self.assertIn(p.Attribute(key="tool", value="disc-cutter"), list(d.attributes))
        self.assertIn("CONFIRMED", d.text)
        inc = wait_for(lambda: [i for i in incidents(self.watch).values() if i.confirmed], 2,
                       "confirmed incident")[0]
        self.assertEqual(list(inc.detectors), ["apollo-1/seismic-w2", "apollo-1/gb-w2"])
        self.assertEqual(inc.level, 2)

    def test_display_case_and_duress_at_once(self):
        self.relay().start()
        p = pb()
        self.alarm(p.KIND_DISPLAY_CASE, "case-regalia")
        d = wait_for(lambda: dispatches(self.watch, "p1"), 2, "police dispatch")[0]
        self.assertEqual(d.kind, p.KIND_DISPLAY_CASE)
        self.alarm(p.KIND_DURESS, "panic-desk", zone="apollo-balcony")
        wait_for(lambda: len({x.incident for x in dispatches(self.watch, "p1")}) == 2, 2,
                 "duress dispatch")

    def test_offline_post_goes_to_its_backup(self):
        self.relay().start()
        p = pb()
        post = self.h.client(self.central, "post-p1")
        publish_sync(post, "vigie/v1/post/p1/state", post_state("p1", False), retain=True)
        time.sleep(0.3)
        self.alarm(p.KIND_DISPLAY_CASE, "case-regalia")
        # (p1b also hears of p1's own trouble: the post-offline incident.)
        d = wait_for(lambda: [x for x in dispatches(self.watch, "p1b") if x.site == "louvre"], 3,
                     "dispatch to the backup")[0]
        self.assertEqual(d.post, "p1b")
        self.assertEqual(d.backup_for, "p1")
        self.assertTrue(d.id.endswith("-l2"))
        self.assertEqual(dispatches(self.watch, "p1"), [])
        self.assertTrue(any(x.id.startswith("post-p1-") for x in dispatches(self.watch, "p1b")),
                        "p1's trouble went to its backup too")

    def test_primary_post_killed_backup_receives_it(self):
        self.relay().start()
        p = pb()
        script = self.h.path("post.py")
        with open(script, "w") as f:
            f.write(POST_SCRIPT)
        env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        proc = self.h.spawn("post-p1", [sys.executable, script, self.central.host,
                                        str(self.central.port), "p1",
                                        self.central.password("post-p1")]
                             + self.central.tls_files(), env=env)
        wait_for(lambda: "online" in proc.log_text(), 10, "post p1 online")
        self.alarm(p.KIND_DISPLAY_CASE, "case-regalia")
        wait_for(lambda: "dispatch " in proc.log_text(), 3, "p1 received the dispatch")
        did = proc.log_text().split("dispatch ", 1)[1].split()[0]
        proc.kill9()  # its LWT says OFFLINE
        d = wait_for(lambda: [x for x in dispatches(self.watch, "p1b") if x.site == "louvre"], 5,
                     "the backup gets it")[0]
        self.assertEqual(d.id, did, "same dispatch, same id")
        self.assertEqual(d.backup_for, "p1")
        self.assertGreater(d.attempt, 1)

    def test_relay_kill9_during_escalation_resumes_without_new_ids(self):
        relay = self.relay(escalation=[
            {"name": "site-security", "alert": True, "ack_deadline": "1s"},
            {"name": "museum-hq", "post": "hq", "ack_deadline": "3s"},
            {"name": "police", "post": "p1", "ack_deadline": "1s"}]).start()
        p = pb()
        self.alarm(p.KIND_MOTION, "pir-apollo")
        inc = self.the_incident()
        wait_for(lambda: dispatches(self.watch, "hq"), 3, "dispatch to hq")
        relay.kill9()
        t_kill = time.monotonic()
        time.sleep(0.5)
        relay.start()
        self.assertIn("1 open incident(s) resumed (1 escalating)", relay.log())
        # Re-sent after the restart, same id; then the police at the deadline.
        wait_for(lambda: dispatches(self.watch, "p1"), 6, "police after the restart")
        hq = dispatches(self.watch, "hq")
        self.assertGreaterEqual(len(hq), 2)
        self.assertEqual({x.id for x in hq}, {f"{inc.id}-l1"})
        self.assertEqual(sorted(x.attempt for x in hq), list(range(1, len(hq) + 1)),
                         "attempts continue across the restart")
        self.assertEqual({x.id for x in dispatches(self.watch)}, {f"{inc.id}-l1", f"{inc.id}-l2"})
        self.assertEqual(len(incidents(self.watch)), 1, "no second incident")
        # The event re-sent by its node (not receipted yet?) is a repeat.
        publish_sync(self.node, EV, event("louvre", "apollo-1", 9, 1, kind=p.KIND_MOTION,
                                          state=p.STATE_ALARM, zone="apollo-gallery",
                                          sensor="pir-apollo"))
        time.sleep(0.5)
        self.assertEqual(relay.count("SELECT count(*) FROM incidents"), 1)
        self.assertEqual(relay.count("SELECT count(*) FROM events"), 1)
        post = self.h.client(self.central, "post-p1")
        publish_sync(post, "vigie/v1/post/p1/ack", ack("p1", f"{inc.id}-l2"))
        wait_for(lambda: incidents(self.watch)[inc.id].state == p.INCIDENT_ACKNOWLEDGED, 5, "ack")
        relay.stop()
        out = relay.audit(inc.id).stdout
        self.assertIn("escalated", out)
        self.assertIn("acknowledged by dupont", out)
        lst = subprocess.run([bin_path("vigie-relay"), "incidents", "--db", relay.db, "--all"],
                             capture_output=True, text=True, timeout=30)
        self.assertIn(inc.id, lst.stdout)
        self.assertIn("acknowledged", lst.stdout)
        report(f"relay kill -9 during an escalation: resumed, police dispatched "
               f"{time.monotonic() - t_kill:.1f} s after the kill, ids unchanged")

    def test_relay_kill9_before_its_commit_keeps_the_ids(self):
        # A dispatch leaves before its rows commit. Here they never do:
        # another process holds the database's write lock. The relay is
        # killed with the police dispatched and nothing stored; the node
        # sends its unreceipted event again, a second later (a new id would
        # differ), and the police gets the same dispatch id: a repeat.
        relay = self.relay().start()
        p = pb()
        lock = sqlite3.connect(relay.db, timeout=10, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            self.alarm(p.KIND_DURESS, "duress-desk")
            first = wait_for(lambda: dispatches(self.watch, "p1"), 5,
                             "the police dispatch, the database locked")[0]
            relay.kill9()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        self.assertEqual(relay.count("SELECT count(*) FROM incidents WHERE zone = ?",
                                     "apollo-gallery"), 0,
                         "the incident's row must not have committed")
        self.assertEqual(relay.count("SELECT count(*) FROM events"), 0)
        time.sleep(1.2)
        relay.start()
        self.assertRegex(relay.log(), r"\d+ incident\(s\) published but not stored")
        publish_sync(self.node, EV, event("louvre", "apollo-1", 9, 1, kind=p.KIND_DURESS,
                                          state=p.STATE_ALARM, zone="apollo-gallery",
                                          sensor="duress-desk"))
        wait_for(lambda: len(dispatches(self.watch, "p1")) >= 2, 5,
                 "the police dispatch again")
        inc_id = first.id.rsplit("-l", 1)[0]
        self.assertEqual({d.id for d in dispatches(self.watch, "p1")}, {first.id})
        self.assertEqual([i for i, x in incidents(self.watch).items()
                          if x.zone == "apollo-gallery"], [inc_id],
                         "one incident, under its first id")
        wait_for(lambda: relay.count("SELECT count(*) FROM incidents WHERE id = ?",
                                     inc_id) == 1, 5, "the incident stored")
        self.assertEqual(relay.count("SELECT count(*) FROM incidents WHERE zone = ?",
                                     "apollo-gallery"), 1)
        relay.stop()

    def test_trouble_closes_on_restore_and_status(self):
        self.relay().start()
        p = pb()
        self.alarm(p.KIND_CAMERA_MOVED, "cam-apollo-west", state=p.STATE_TROUBLE)
        inc = self.the_incident()
        self.assertTrue(inc.trouble)
        wait_for(lambda: any(p.SiteStatus.FromString(m.payload).state == p.SITE_TROUBLE
                             for m in self.watch.received("vigie/v1/status/louvre")), 3,
                 "site status TROUBLE")
        self.alarm(p.KIND_CAMERA_MOVED, "cam-apollo-west", state=p.STATE_RESTORE)
        wait_for(lambda: incidents(self.watch)[inc.id].state == p.INCIDENT_CLOSED, 3, "closed")
        wait_for(lambda: p.SiteStatus.FromString(
            self.watch.received("vigie/v1/status/louvre")[-1].payload).state == p.SITE_NORMAL,
            4, "site status NORMAL")

    def test_closed_incidents_leave_the_broker_after_retain_closed(self):
        """A closed incident's retained state is cleared (an empty retained
        message) retain_closed after it closed, so a dashboard loads today's
        picture, not every incident ever; the database keeps them all. One
        closed before a restart is cleared by the next run, from the
        database."""
        p = pb()

        def cleared(inc_id):
            return any(not m.payload for m in self.watch.received(f"vigie/v1/incident/{inc_id}"))

        def trouble(camera):
            before = set(incidents(self.watch))
            self.alarm(p.KIND_CAMERA_MOVED, camera, state=p.STATE_TROUBLE)
            new = wait_for(lambda: set(incidents(self.watch)) - before, 5, "a new incident")
            inc_id = new.pop()
            self.alarm(p.KIND_CAMERA_MOVED, camera, state=p.STATE_RESTORE)
            wait_for(lambda: incidents(self.watch)[inc_id].state == p.INCIDENT_CLOSED, 5,
                     f"{inc_id} closed")
            return inc_id

        relay = self.relay(retain_closed="1h").start()
        first = trouble("cam-apollo-west")
        self.assertEqual(relay.stop(), 0)
        self.assertFalse(cleared(first))
        self.assertEqual(relay.count("SELECT count(*) FROM cleared"), 0)
        # Started again with a shorter retain_closed, which the closed
        # incident (loaded from the database) is past.
        with open(relay.conf) as f:
            cfg = json.load(f)
        cfg["retain_closed"] = "1s"
        with open(relay.conf, "w") as f:
            json.dump(cfg, f)
        relay.start()
        wait_for(lambda: cleared(first), 10, f"{first}'s retained state cleared")
        # Closed while the relay runs: cleared a second later.
        second = trouble("cam-apollo-east")
        wait_for(lambda: cleared(second), 10, f"{second}'s retained state cleared")
        # Recorded too (the clear leaves before its row commits).
        wait_for(lambda: relay.count(f"SELECT count(*) FROM cleared WHERE id IN "
                                     f"('{first}', '{second}')") == 2, 5,
                 "both clears recorded")
        self.assertEqual(relay.count("SELECT count(*) FROM incidents WHERE state = 4"), 2)
        # A dashboard subscribing now gets neither; a marker published after
        # its subscription comes after anything retained would have.
        late = self.h.subscriber(self.central, "dashboard", ["vigie/v1/incident/+"])
        marker = self.h.client(self.central, "relay")
        publish_sync(marker, "vigie/v1/incident/marker", b"m")
        wait_for(lambda: late.received("vigie/v1/incident/marker"), 5, "the marker")
        self.assertEqual([m.topic for m in late.received("vigie/v1/incident/+")],
                         ["vigie/v1/incident/marker"])


if __name__ == "__main__":
    unittest.main()
