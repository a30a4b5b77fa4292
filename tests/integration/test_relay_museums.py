"""Three museums, one relay, two police posts, all real: site brokers with
their bridges, vigie-node processes playing scenarios, the central broker,
vigie-relay, and two post processes with a retained birth and a real LWT.

The Louvre plays the Apollo Gallery heist (examples/scenarios, sped up);
Orsay and the Natural History Museum run normal traffic (tests, opening and
closing, a power dip). Expected: the confirmed intrusion at the balcony
reaches the police post well within 1 s of the second detector, the
display-case attack goes there at once, acking stops the escalation, the
primary post's death moves what it has not acked to its backup, and the
other museums cause no dispatch."""

import os
import sys
import time
import unittest

from vigie_harness import HarnessTestCase, bin_path, publish_sync, wait_for
from test_relay_support import Relay, ack, dispatches, incidents, pb, site_conf
from test_relay_escalation import POST_SCRIPT

SPEED = 40

LOUVRE_NODE = """site: louvre
node: apollo-1
outbox: {dir}/louvre-apollo-1.db
heartbeat_period: 500ms
reporting_time: 3s
brokers:
  primary: {{host: 127.0.0.1, port: {port}, username: {user}, password: "{password}"{tls}}}
zones:
  - {{id: quai-facade, name: "Seine facade, quai side", kind: facade, floor: "0", facade: seine}}
  - {{id: apollo-balcony, name: "Apollo balcony", kind: balcony, floor: "1", facade: seine}}
  - {{id: apollo-gallery, name: "Galerie d'Apollon", kind: gallery, floor: "1", facade: seine}}
sensors:
  - {{id: radar-quai, kind: vehicle, zones: [quai-facade]}}
  - {{id: lift-beam, kind: perimeter, zones: [apollo-balcony]}}
  - {{id: seismic-w2, kind: vibration, zones: [apollo-balcony]}}
  - {{id: gb-w2, kind: glass_break, zones: [apollo-balcony, apollo-gallery]}}
  - {{id: pir-apollo, kind: motion, zones: [apollo-gallery]}}
  - {{id: case-regalia, kind: display_case, zones: [apollo-gallery]}}
  - {{id: case-napoleon, kind: display_case, zones: [apollo-gallery]}}
  - {{id: cam-apollo-west, kind: camera_moved, zones: [apollo-gallery]}}
"""

QUIET_NODE = """site: {site}
node: hall-1
outbox: {dir}/{site}-hall-1.db
heartbeat_period: 500ms
reporting_time: 3s
brokers:
  primary: {{host: 127.0.0.1, port: {port}, username: {user}, password: "{password}"{tls}}}
"""

QUIET_SCENARIO = """# normal traffic: nothing here is a crime
0    kind=open_close state=alarm sensor=door-staff text="staff entrance unlocked"
+2   kind=test state=test sensor=door-staff text="periodic test"
+2   kind=power_loss state=trouble sensor=ups-1 text="mains dip"
+1   kind=power_loss state=restore sensor=ups-1
+2   kind=open_close state=restore sensor=door-staff text="locked"
"""

LOUVRE_ZONES = [
    {"id": "quai-facade", "name": "Seine facade, quai side", "floor": "0", "facade": "seine",
     "location": {"lat": 48.8597, "lon": 2.3372}, "cameras": ["cam-quai-1"],
     "action_plan": "Police to Quai François-Mitterrand"},
    {"id": "apollo-balcony", "name": "Apollo balcony", "floor": "1", "facade": "seine",
     "location": {"lat": 48.8599, "lon": 2.3373}, "cameras": ["cam-quai-3"],
     "action_plan": "Block the quai; a lift truck is at the facade"},
    {"id": "apollo-gallery", "name": "Galerie d'Apollon", "floor": "1", "facade": "seine",
     "location": {"lat": 48.8601, "lon": 2.3374},
     "cameras": ["cam-apollo-east", "cam-apollo-west"],
     "action_plan": "Close the Rotonde grille; guards to both gallery ends"},
]


def report(text):
    print(f"\n    [figure] {text}", file=sys.stderr, flush=True)


class ThreeMuseumsTest(HarnessTestCase):

    def spawn_post(self, central, post):
        script = self.h.path("post.py")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(POST_SCRIPT)
        proc = self.h.spawn(post, [sys.executable, script, central.host, str(central.port),
                                   post, central.password(f"post-{post}")]
                            + central.tls_files(),
                            env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
        wait_for(lambda: "online" in proc.log_text(), 10, f"post {post} online")
        return proc

    def node(self, name, conf_text, site, scenario, loops):
        conf = self.h.path(f"{name}.yaml")
        with open(conf, "w") as f:
            f.write(conf_text.format(dir=self.h.tmp, port=site.port, user=site.node_user(),
                                     password=site.password(site.node_user()), site=site.site,
                                     tls=site.tls_yaml()))
        return self.h.spawn(name, [bin_path("vigie-node"), "-c", conf, "--scenario", scenario,
                                   "--speed", str(SPEED), "--loop", str(loops)])

    def test_heist_at_one_museum_normal_traffic_at_two(self):
        bin_path("vigie-node")
        museums = ["louvre", "orsay", "mnhn"]
        central = self.h.start_central(sites=museums, posts=["pp-1", "pp-2"])
        sites = {m: self.h.start_site(m, central) for m in museums}
        watch = self.h.subscriber(central, "dashboard", ["vigie/v1/incident/#",
                                                         "vigie/v1/post/+/dispatch",
                                                         "vigie/v1/relay/+/alert"])
        relay = Relay(self.h, central, posts=[{"id": "pp-1", "backup": "pp-2"}, "pp-2"],
                      escalation=[{"name": "site-security", "alert": True, "ack_deadline": "20s"},
                                  {"name": "police", "post": "pp-1", "ack_deadline": "20s"}],
                      sites=[site_conf("louvre", zones=LOUVRE_ZONES, region="paris",
                                       address="Rue de Rivoli, 75001 Paris"),
                             site_conf("orsay", region="paris"), site_conf("mnhn", region="paris")],
                      dispatch_resend="1s", dispatch_resend_max="2s").start()
        pp1 = self.spawn_post(central, "pp-1")
        pp2 = self.spawn_post(central, "pp-2")
        quiet = self.h.path("quiet.scn")
        with open(quiet, "w") as f:
            f.write(QUIET_SCENARIO)
        heist = os.path.join(os.environ.get("VIGIE_SOURCE", "../.."), "examples", "scenarios",
                             "louvre-apollo-heist.scn")
        for m in ("orsay", "mnhn"):
            self.node(f"{m}-node", QUIET_NODE, sites[m], quiet, 0)
        self.node("louvre-node", LOUVRE_NODE, sites["louvre"], heist, 1)
        p = pb()

        def balcony():
            return [i for i in incidents(watch).values() if i.zone == "apollo-balcony" and i.confirmed]

        inc = wait_for(balcony, 30, "the balcony intrusion confirmed")[0]
        d = wait_for(lambda: [x for x in dispatches(watch, "pp-1") if x.incident == inc.id], 5,
                     "its police dispatch")[0]
        self.assertTrue(d.confirmed)
        self.assertEqual(d.zone.facade, "seine")
        self.assertEqual(list(d.zone.cameras), ["cam-quai-3"])
        self.assertEqual(d.action_plan, "Block the quai; a lift truck is at the facade")
        # The second detector's event time (node clock, same host) against
        # the moment the police post printed the dispatch.
        refs = list(inc.events)
        second = next(r for r in refs if r.sensor != refs[0].sensor)
        line = next(l for l in pp1.log_text().splitlines() if l.startswith(f"dispatch {d.id} 1 "))
        arrived = float(line.split()[-1])
        latency = arrived - second.time_us / 1e6
        report(f"heist: second detector ({second.sensor}) -> confirmed dispatch at the police "
               f"post in {latency * 1000:.1f} ms (node, site broker, bridge, central, relay, "
               f"fsync, central, post)")
        self.assertLess(latency, 1.0)
        # The display cases: at once, critical.
        cases = wait_for(lambda: [x for x in dispatches(watch, "pp-1")
                                  if x.kind == p.KIND_DISPLAY_CASE or
                                  (x.zone.id == "apollo-gallery" and x.confirmed)], 30,
                         "the gallery dispatch")
        gallery = cases[0]
        self.assertEqual(gallery.priority, p.PRIORITY_CRITICAL)
        # The post acknowledges the balcony: its escalation stops.
        post = self.h.client(central, "post-pp-1")
        publish_sync(post, "vigie/v1/post/pp-1/ack", ack("pp-1", d.id, by="Brigadier Lefèvre"))
        wait_for(lambda: incidents(watch)[inc.id].state == p.INCIDENT_ACKNOWLEDGED, 5, "ack")
        self.assertEqual(incidents(watch)[inc.id].acked_by, "Brigadier Lefèvre")
        # pp-1 dies: the gallery dispatch, not acked, goes to pp-2 (same id).
        pp1.kill9()
        moved = wait_for(lambda: [l for l in pp2.log_text().splitlines()
                                  if l.startswith(f"dispatch {gallery.id} ")], 10,
                         "the backup receives the unacked dispatch")
        self.assertTrue(moved)
        balcony_at_pp2 = [l for l in pp2.log_text().splitlines() if l.startswith(f"dispatch {d.id} ")]
        self.assertEqual(balcony_at_pp2, [], "an acked dispatch is not moved")
        # Normal traffic elsewhere: stored, but nobody was called.
        time.sleep(1)
        self.assertFalse([x for x in dispatches(watch) if x.site in ("orsay", "mnhn")])
        self.assertGreater(relay.count("SELECT count(*) FROM events WHERE site='orsay'"), 0)
        self.assertGreater(relay.count("SELECT count(*) FROM events WHERE site='mnhn'"), 0)
        relay.stop()
        out = relay.audit(inc.id).stdout
        self.assertIn("confirmed", out)
        self.assertIn("acknowledged by Brigadier Lefèvre at post pp-1", out)
        print(f"\n{out}", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
