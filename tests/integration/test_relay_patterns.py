"""The pattern tracker end to end: real site brokers with their bridges,
real vigie-node processes replaying scenario files at accelerated speed
(each line carries its own event time, `time=`), the central broker and the
real relay with examples/patterns.yaml.

- the 2025 series (examples/scenarios/series-2025-*.scn) raises the
  expected campaigns and only those, one alert per campaign that grows,
  dispatched to the police posts in scope (re-sent until acknowledged) and
  raising the posture of the museums in scope;
- the control (control-2025-*.scn: as many incidents, unrelated, spread over
  time and space) raises none;
- a relay killed with -9 in the middle of the windows resumes them: the
  campaigns that need incidents from before the kill are still seen, and
  the alert from before the kill grows under its id.

Site security is played by a dashboard client that acknowledges each alarm
incident as it shows, as guards would: an unacknowledged incident absorbs
every later alarm of its zone, days later too."""

import calendar
import os
import subprocess
import sys
import threading
import time
import unittest

from vigie_harness import HarnessTestCase, bin_path, publish_sync, wait_for
from test_relay_support import Relay, ack, pb, site_conf

SOURCE = os.environ.get("VIGIE_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(SOURCE, "examples", "patterns.yaml")
SCENARIOS = os.path.join(SOURCE, "examples", "scenarios")
MUSEUMS = ["limoges", "mnhn", "langres", "louvre"]
LINES = {"limoges": 3, "mnhn": 7, "langres": 3, "louvre": 17}
SPEED = 8  # days of the series per second

NODE_CONF = """site: {site}
node: {site}-1
outbox: {dir}/{site}-{tag}.db
heartbeat_period: 500ms
reporting_time: 10s
brokers:
  primary: {{host: 127.0.0.1, port: {port}, username: {user}, password: "{password}"{tls}}}
"""


def zone(id_, floor, facade="", kind="gallery"):
    z = {"id": id_, "name": id_.replace("-", " ").capitalize(), "floor": floor, "kind": kind}
    if facade:
        z["facade"] = facade
    return z


def ladder(post):
    return [{"name": "site-security", "alert": True, "ack_deadline": "1m"},
            {"name": "police", "post": post, "ack_deadline": "1m"}]


SITES = [
    site_conf("louvre", name="Louvre", region="ile-de-france",
              location={"lat": 48.8606, "lon": 2.3376},
              zones=[zone("quai-facade", "0", "seine", "facade"),
                     zone("apollo-balcony", "1", "seine", "balcony"),
                     zone("apollo-gallery", "1")]),
    site_conf("mnhn", name="Natural History Museum", region="ile-de-france",
              location={"lat": 48.8440, "lon": 2.3560},
              zones=[zone("mineralogy-gallery", "0"), zone("security-room", "0", kind="room")]),
    site_conf("orsay", name="Orsay", region="ile-de-france",
              location={"lat": 48.8600, "lon": 2.3266}),
    site_conf("versailles", name="Versailles", region="ile-de-france",
              location={"lat": 48.8049, "lon": 2.1204}),
    site_conf("limoges", name="Adrien Dubouche", region="nouvelle-aquitaine",
              location={"lat": 45.8336, "lon": 1.2611},
              zones=[zone("ceramics-gallery", "0")], escalation=ladder("pp-limoges")),
    site_conf("langres", name="Langres", region="grand-est",
              location={"lat": 47.8625, "lon": 5.3331},
              zones=[zone("coin-room", "0", kind="room")], escalation=ladder("pp-langres")),
    site_conf("lyon", name="Lyon fine arts", region="auvergne-rhone-alpes",
              location={"lat": 45.7670, "lon": 4.8336}, escalation=ladder("pp-lyon")),
]
POSTS = ["pp-paris", "pp-limoges", "pp-langres", "pp-lyon"]

# What the series must raise: rule -> museums of its campaign.
EXPECTED = {
    "precious-thefts-nationwide": {"limoges", "mnhn", "langres", "louvre"},
    "precious-thefts-region": {"mnhn", "louvre"},
    "security-offline-before-intrusion": {"mnhn"},
    "vehicle-then-upper-floor": {"louvre"},
    "facade-reconnaissance": {"louvre"},
}


def report(text):
    print(f"\n    [figure] {text}", file=sys.stderr, flush=True)


class Acker:
    """Site security: acknowledges every alarm incident once, as it shows."""

    def __init__(self, h, central):
        self.acked = set()
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.c = h.client(central, "dashboard")
        self.c.on_message = self.on_message
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.subscribe("vigie/v1/incident/+", 1)
        if not subscribed.wait(10):
            raise AssertionError("acker: no SUBACK")

    def on_message(self, client, userdata, m):
        p = pb()
        if not m.payload:
            return
        i = p.Incident.FromString(m.payload)
        if i.trouble or i.state not in (p.INCIDENT_OPEN, p.INCIDENT_CONFIRMED):
            return
        with self.lock:
            if i.id in self.acked:
                return
            self.acked.add(i.id)
        client.publish("vigie/v1/post/pp-paris/ack",
                       ack("pp-paris", "", by="guard", incident=i.id), qos=1)


def latest(messages, cls, key="id"):
    out = {}
    for m in messages:
        if m.payload:
            x = cls.FromString(m.payload)
            out[getattr(x, key)] = x
    return out


class PatternsTest(HarnessTestCase):

    def world(self, museums=MUSEUMS):
        self.central = self.h.start_central(sites=museums, posts=POSTS)
        self.sites = {m: self.h.start_site(m, self.central) for m in museums}
        self.watch = self.h.subscriber(self.central, "dashboard",
                                       ["vigie/v1/pattern/+", "vigie/v1/post/+/dispatch",
                                        "vigie/v1/relay/+/alert", "vigie/v1/status/+"])
        self.acker = Acker(self.h, self.central)
        self.relay = Relay(self.h, self.central, posts=POSTS, escalation=ladder("pp-paris"),
                           sites=SITES, patterns={"rules": RULES},
                           dispatch_resend="1s", dispatch_resend_max="2s").start()
        self.nodes = {}

    def play(self, museum, scenario, speed=SPEED, tag="a"):
        site = self.sites[museum]
        conf = self.h.path(f"{museum}-{tag}.yaml")
        with open(conf, "w") as f:
            f.write(NODE_CONF.format(dir=self.h.tmp, site=museum, tag="node", port=site.port,
                                     tls=site.tls_yaml(),
                                     user=site.node_user(),
                                     password=site.password(site.node_user())))
        proc = self.h.spawn(f"node-{museum}-{tag}", [bin_path("vigie-node"), "-c", conf,
                                                      "--scenario", scenario,
                                                      "--speed", str(speed)])
        self.nodes[museum] = proc
        return proc

    def scenario(self, kind, museum, minus_days=0.0):
        """The scenario file, its offsets moved `minus_days` earlier (the
        event times, `time=`, stay)."""
        path = os.path.join(SCENARIOS, f"{kind}-2025-{museum}.scn")
        if not minus_days:
            return path
        out = self.h.path(f"{kind}-{museum}-shifted.scn")
        with open(path) as src, open(out, "w") as dst:
            for line in src:
                if line.strip() and not line.startswith("#"):
                    off, rest = line.split(None, 1)
                    line = "%.6f %s" % (max(0.0, float(off) - minus_days), rest)
                dst.write(line)
        return out

    def wait_stored(self, museums, timeout=60):
        for m in museums:
            wait_for(lambda: self.relay.count("SELECT count(*) FROM events WHERE site=?", m)
                     >= LINES[m], timeout, f"the events of {m} stored")

    def settle(self):
        self.watch.wait_quiet(1.5, 30, "vigie/v1/pattern/+")

    def patterns(self):
        return latest(self.watch.received("vigie/v1/pattern/+"), pb().PatternAlert)

    def pattern_history(self, pid):
        p = pb()
        return [p.PatternAlert.FromString(m.payload)
                for m in self.watch.received(f"vigie/v1/pattern/{pid}") if m.payload]

    def dispatches(self, post="+"):
        p = pb()
        return [p.Dispatch.FromString(m.payload)
                for m in self.watch.received(f"vigie/v1/post/{post}/dispatch")]

    def site_alerts(self, site="+"):
        p = pb()
        return [p.SiteAlert.FromString(m.payload)
                for m in self.watch.received(f"vigie/v1/relay/{site}/alert")]

    def by_rule(self):
        out = {}
        for a in self.patterns().values():
            out.setdefault(a.rule, []).append(a)
        return out

    def test_series_2025_raises_the_expected_campaigns_only(self):
        p = pb()
        self.world()
        for m in MUSEUMS:
            self.play(m, self.scenario("series", m))
        self.wait_stored(MUSEUMS)
        self.settle()
        rules = self.by_rule()
        self.assertEqual(set(rules), set(EXPECTED), {r: [a.explanation for a in v]
                                                     for r, v in rules.items()})
        for rule, alerts in rules.items():
            self.assertEqual(len(alerts), 1, f"{rule}: one campaign, one alert")
            a = alerts[0]
            self.assertTrue(a.active)
            self.assertEqual(set(a.sites), EXPECTED[rule], f"{rule}: {a.explanation}")
            self.assertTrue(a.explanation and a.title and a.incidents, rule)
            self.assertTrue(a.instructions, rule)
        # Seen early: the third theft (Langres) makes the national campaign,
        # eleven days before the Louvre; the Louvre then grows the same alert.
        nat = rules["precious-thefts-nationwide"][0]
        hist = self.pattern_history(nat.id)
        self.assertEqual(set(hist[0].sites), {"limoges", "mnhn", "langres"})
        self.assertEqual(set(hist[-1].sites), EXPECTED["precious-thefts-nationwide"])
        self.assertIn("Langres", hist[0].explanation)
        self.assertIn("3 museums", hist[0].explanation)
        raised = time.strftime("%Y-%m-%d", time.gmtime(hist[0].last_us / 1e6))
        report(f"2025 series: national campaign raised at the Langres theft ({raised}), "
               f"before the Louvre; {len(hist)} version(s) of {nat.id}")
        region = rules["precious-thefts-region"][0]
        self.assertEqual(region.region, "ile-de-france")
        self.assertEqual(region.posture, p.POSTURE_HEIGHTENED)
        recon = rules["facade-reconnaissance"][0]
        self.assertIn("facade=seine", recon.explanation)
        seq = rules["vehicle-then-upper-floor"][0]
        self.assertIn("then entry on an upper floor", seq.explanation)
        self.assertEqual(seq.posture, p.POSTURE_CRITICAL)
        off = rules["security-offline-before-intrusion"][0]
        self.assertIn("alarm or video offline", off.explanation)
        # Dispatched to the police posts in scope, with `pattern` set.
        for rule, (a,) in rules.items():
            got = [d for d in self.dispatches("pp-paris") if d.pattern == a.id]
            self.assertTrue(got, f"{rule}: dispatched to pp-paris")
            self.assertEqual(got[-1].incident, a.id)
        nat_posts = {d.post for d in self.dispatches() if d.pattern == nat.id}
        self.assertEqual(nat_posts, set(POSTS))
        self.assertEqual(set(nat.posts), set(POSTS))
        # Museums in scope raise their posture: Orsay (same region, no
        # incident), Lyon (the national campaign).
        orsay = [x for x in self.site_alerts("orsay") if x.pattern]
        self.assertIn(region.id, {x.pattern for x in orsay})
        self.assertTrue(all(x.posture >= p.POSTURE_HEIGHTENED for x in orsay))
        self.assertTrue(orsay[-1].instructions)
        self.assertIn(nat.id, {x.pattern for x in self.site_alerts("lyon")})
        self.assertNotIn(region.id, {x.pattern for x in self.site_alerts("lyon")})
        status = wait_for(lambda: [s for s in latest(self.watch.received("vigie/v1/status/orsay"),
                                                   p.SiteStatus, "site").values()
                                   if s.posture == p.POSTURE_HEIGHTENED], 5,
                          "Orsay's status heightened")
        self.assertNotEqual(status[0].state, p.SITE_ALARM, "no incident of its own")
        # Re-sent until acknowledged: Lyon's post has not acked yet.
        wait_for(lambda: max([d.attempt for d in self.dispatches("pp-lyon")
                              if d.pattern == nat.id] or [0]) >= 2, 10,
                 "a re-send of the national campaign to pp-lyon")
        last = [d for d in self.dispatches("pp-lyon") if d.pattern == nat.id][-1]
        post = self.h.client(self.central, "post-pp-lyon")
        publish_sync(post, "vigie/v1/post/pp-lyon/ack",
                     ack("pp-lyon", last.id, by="Capitaine Morel", incident=nat.id))
        wait_for(lambda: "acked=1" in str(self.relay.rows(
            "SELECT data FROM pattern_state WHERE ns='disp' AND key=?",
            f"{nat.id}/pp-lyon")), 5, "the ack stored")
        n = len([d for d in self.dispatches("pp-lyon") if d.pattern == nat.id])
        time.sleep(2.5)
        self.assertEqual(len([d for d in self.dispatches("pp-lyon") if d.pattern == nat.id]), n,
                         "no re-send after the ack")
        self.relay.stop()
        out = subprocess.run([bin_path("vigie-relay"), "patterns", "--db", self.relay.db],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        for a in self.patterns().values():
            self.assertIn(f"pattern {a.id}  (rule {a.rule})", out.stdout)
        self.assertEqual(out.stdout.count("  why: "), len(EXPECTED))
        self.assertIn("post pp-lyon: version", out.stdout)
        self.assertIn("acknowledged by Capitaine Morel", out.stdout)
        print(f"\n{out.stdout}", file=sys.stderr)
        hist = self.relay.audit(nat.id).stdout
        self.assertIn("pattern-grown", hist)
        self.assertIn("acknowledged by Capitaine Morel at post pp-lyon", hist)

    def test_control_raises_nothing(self):
        self.world()
        for m in MUSEUMS:
            self.play(m, self.scenario("control", m), speed=4 * SPEED)
        self.wait_stored(MUSEUMS)
        time.sleep(2)
        self.assertEqual(self.patterns(), {}, [a.explanation for a in self.patterns().values()])
        self.assertFalse([d for d in self.dispatches() if d.pattern])
        self.assertFalse([x for x in self.site_alerts() if x.pattern])
        self.relay.stop()
        # The tracker did read them all (and let the old ones go).
        line = [l for l in self.relay.log().splitlines() if " patterns: " in l][-1]
        fed = int(line.split(" patterns: ", 1)[1].split()[0])
        self.assertGreaterEqual(fed, self.relay.count("SELECT count(*) FROM incidents"))
        report(f"control: {fed} incident updates read, no pattern ({line.split(' patterns: ')[1]})")
        out = subprocess.run([bin_path("vigie-relay"), "patterns", "--db", self.relay.db],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.stdout.strip(), "no active pattern")

    def test_restart_mid_window_keeps_the_state(self):
        self.world()
        # Until mid-September: Limoges' theft, the Natural History
        # Museum's outage and theft.
        for m in ("limoges", "mnhn"):
            self.play(m, self.scenario("series", m))
        self.wait_stored(["limoges", "mnhn"])
        self.settle()
        rules = self.by_rule()
        self.assertEqual(set(rules), {"security-offline-before-intrusion"})
        before = rules["security-offline-before-intrusion"][0].id
        fed = self.relay.count("SELECT count(*) FROM pattern_state WHERE ns='inc'")
        self.assertGreaterEqual(fed, 3)
        self.relay.kill9()
        self.relay.start()
        self.assertIn("1 active alert(s) resumed", self.relay.log())
        # October, after the restart: Langres, then the Louvre. Both
        # campaigns need the incidents from before the kill.
        for m in ("langres", "louvre"):
            self.play(m, self.scenario("series", m, minus_days=74))
        self.wait_stored(MUSEUMS)
        self.settle()
        rules = self.by_rule()
        self.assertEqual(set(rules), set(EXPECTED))
        self.assertEqual(set(rules["precious-thefts-nationwide"][0].sites),
                         EXPECTED["precious-thefts-nationwide"])
        self.assertEqual(set(rules["precious-thefts-region"][0].sites), {"mnhn", "louvre"})
        self.assertEqual(rules["security-offline-before-intrusion"][0].id, before,
                         "the same campaign, the same alert")
        ids = {pb().PatternAlert.FromString(m.payload).rule + "/" + m.topic
               for m in self.watch.received("vigie/v1/pattern/+") if m.payload}
        self.assertEqual(len(ids), len(EXPECTED), ids)
        # Months later an incident anywhere moves the watermark past every
        # window: the campaigns end, inactive, and the museums they raised
        # go back to normal.
        p = pb()
        region = rules["precious-thefts-region"][0].id
        later = calendar.timegm((2026, 1, 10, 12, 0, 0)) * 10**6
        ev = p.Event(site="louvre", node="probe", boot_id=1, seq=1, time_us=later,
                     kind=p.KIND_MOTION, state=p.STATE_ALARM, zone="apollo-gallery")
        publish_sync(self.h.client(self.central, "bridge-louvre"),
                     "vigie/v1/site/louvre/node/probe/event",
                     p.SignedEvent(event=ev.SerializeToString()).SerializeToString())
        wait_for(lambda: not [a for a in self.patterns().values() if a.active], 10,
                 "every campaign ended")
        self.assertEqual(len(self.patterns()), len(EXPECTED))
        back = wait_for(lambda: [x for x in self.site_alerts("orsay")
                                 if x.pattern == region and x.posture == p.POSTURE_NORMAL],
                        5, "Orsay back to normal")
        self.assertIn("back to the normal posture", back[-1].text)
        wait_for(lambda: [s for s in latest(self.watch.received("vigie/v1/status/orsay"),
                                            p.SiteStatus, "site").values()
                          if s.posture == p.POSTURE_NORMAL], 5, "Orsay's status normal")
        self.assertEqual(self.relay.count("SELECT count(*) FROM pattern_state WHERE ns IN "
                                          "('alert', 'disp')"), 0)
        self.assertIn("pattern-ended", self.relay.audit(region).stdout)


class PatternsCommandLineTest(HarnessTestCase):
    """check-config lists the rules, or says where the rules file is wrong."""

    def test_check_config_lists_the_rules_and_names_the_bad_line(self):
        rules = self.h.path("patterns.yaml")
        with open(RULES) as f:
            text = f.read()
        with open(rules, "w") as f:
            f.write(text)
        conf = self.h.path("relay.yaml")
        with open(conf, "w") as f:
            f.write("id: r\ndatabase: %s\nbroker: {host: 127.0.0.1, port: 1}\n"
                    "patterns: {rules: patterns.yaml}\n" % self.h.path("r.db"))
        r = subprocess.run([bin_path("vigie-relay"), "check-config", conf],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("6 pattern rule(s), longest window 60 d", r.stdout)
        self.assertIn("pattern vehicle-then-upper-floor: sequence within 30 min", r.stdout)
        with open(rules, "w") as f:
            f.write(text.replace("node_tamper,", "node_tampered,"))
        r = subprocess.run([bin_path("vigie-relay"), "check-config", conf],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        line = 1 + text[:text.index("node_tamper,")].count("\n")
        self.assertIn(f"{rules}:{line}: rules[3].steps[0].match.kind[3]: unknown event kind "
                      f"\"node_tampered\"", r.stderr)


if __name__ == "__main__":
    unittest.main()
