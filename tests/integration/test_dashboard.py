"""The browser dashboard (dashboard/) against a real central broker.

Debian's Chromium, headless, driven by playwright-core through
dashboard/tests/driver.mjs (JSON lines on a pipe); the page is built from the
sources into the test's directory and served by dashboard/serve.mjs on
127.0.0.1. The test plays the relay with paho and the generated vigie_pb2
(retained SiteStatus, Incident, PatternAlert..., dispatches), a site broker
bridges to the central (bridge notification), and, when vigie-relay is built,
a last test runs the real relay and a real node: the page acks the relay's
incident and the relay's audit log has the operator's name.

Skips (with the reason) only when Chromium or dashboard/node_modules is
missing: scripts/deps.sh installs chromium, scripts/test.sh runs npm ci.

Screenshots are kept in $VIGIE_BUILD/test-artifacts/dashboard/ (printed).
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import vigie_harness as hh
from vigie_harness import HarnessTestCase, free_port, publish_sync, wait_for

DASH = os.path.join(hh.SOURCE, "dashboard")
CHROMIUM = os.environ.get("VIGIE_CHROMIUM", "/usr/bin/chromium")
NODE = shutil.which("node") or "/usr/bin/node"
OPERATOR = "Lt Éloïse Martin"          # not ASCII on purpose
OPERATOR_ASCII = "Brigadier Dupont"    # vigie-relay keeps names ASCII ('?' otherwise)
DESKTOP = (1280, 800)
PHONE = (390, 844)

_dist = None


def pb():
    import vigie_pb2  # generated into $VIGIE_BUILD/generated/python
    return vigie_pb2


def now_us():
    return int(time.time() * 1e6)


def no_node_modules():
    if not os.path.isdir(os.path.join(DASH, "node_modules")):
        return (f"{DASH}/node_modules is missing: cd dashboard && npm ci "
                f"(scripts/test.sh does it)")
    return None


def skip_reason():
    if not os.access(CHROMIUM, os.X_OK):
        return (f"{CHROMIUM} is not installed: apt-get install chromium "
                f"(scripts/deps.sh installs it)")
    return no_node_modules()


def artifacts_dir():
    base = hh.BUILD or tempfile.gettempdir()
    d = os.path.join(os.path.abspath(base), "test-artifacts", "dashboard")
    os.makedirs(d, exist_ok=True)
    return d


def npm_bin(name):
    return os.path.join(DASH, "node_modules", ".bin", name)


def run(argv, timeout=180, **kw):
    r = subprocess.run(argv, cwd=DASH, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({r.returncode}):\n"
                             f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def built_dist():
    """Build the page from the sources once per run, into a temporary
    directory (the source tree's dist/ is left alone)."""
    global _dist
    if _dist is None:
        out = tempfile.mkdtemp(prefix="vigie-dashboard-dist-")
        run([NODE, npm_bin("vite"), "build", "--outDir", out, "--emptyOutDir",
             "--logLevel", "warn"])
        _dist = out
    return _dist


def tearDownModule():
    if _dist:
        shutil.rmtree(_dist, ignore_errors=True)


class Driver(hh.Proc):
    """dashboard/tests/driver.mjs: one JSON command per line in, one JSON
    answer per line out. stderr goes to the harness log."""

    def __init__(self, harness, name, argv):
        super().__init__(harness, name, argv)
        self.answers = {}
        self._cond = threading.Condition()
        self._next = 1

    @classmethod
    def spawn(cls, harness, name="browser"):
        argv = [NODE, os.path.join(DASH, "tests", "driver.mjs"), "--chromium", CHROMIUM,
                "--profile", harness.path(f"{name}-profile")]
        p = cls(harness, name, argv)
        harness.procs[name] = p
        p.start()
        p.wait_answer(0, 30)
        return p

    def start(self):
        argv = self.argv
        if hh.SETPRIV:
            argv = [hh.SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        with open(self.log_path, "ab") as log:
            self.starts += 1
            log.write(f"==== harness: start of {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=log, cwd=DASH, start_new_session=True)
        self.harness._record_pid(self)
        threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True).start()
        return self

    def _read(self, stream):
        for raw in stream:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            with self._cond:
                self.answers[obj.get("id")] = obj
                self._cond.notify_all()

    def wait_answer(self, id_, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while id_ not in self.answers:
                if not self.alive():
                    raise AssertionError(f"browser driver exited ({self.returncode}):\n"
                                         f"{self.log_tail(30)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"browser driver: no answer to #{id_} in {timeout} s")
                self._cond.wait(min(left, 0.1))
            return self.answers.pop(id_)

    def call(self, cmd, timeout=None, **args):
        """Run a command; returns its value or raises AssertionError."""
        id_ = self._next
        self._next += 1
        msg = dict(args, id=id_, cmd=cmd)
        if timeout is not None:
            msg["timeout"] = int(timeout * 1000)
        self.popen.stdin.write((json.dumps(msg) + "\n").encode())
        self.popen.stdin.flush()
        a = self.wait_answer(id_, (timeout or 10) + 20)
        if not a.get("ok"):
            raise AssertionError(f"browser: {cmd} {args}: {a.get('error')}")
        return a.get("value")

    def stop(self, timeout=10.0):
        if self.alive():
            try:
                self.popen.stdin.close()  # the driver closes the browser and exits
                self.popen.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        return super().stop(timeout)


@unittest.skipIf(no_node_modules(), no_node_modules())
class DashboardUnitTest(unittest.TestCase):
    """The page's own checks: TypeScript types and the vitest unit tests
    (model, proto descriptor against protoc's, topics, map projection)."""

    def test_typescript_and_unit_tests(self):
        run([NODE, npm_bin("tsc"), "--noEmit", "-p", "."])
        r = run([NODE, npm_bin("vitest"), "run"])
        print("\n" + "\n".join(r.stdout.strip().splitlines()[-6:]), flush=True)


@unittest.skipIf(skip_reason(), skip_reason())
class DashboardTest(HarnessTestCase):

    # ---- fixtures ----

    def serve(self, central, ack_post="hq-louvre"):
        port = free_port()
        argv = [NODE, os.path.join(DASH, "serve.mjs"), "--dist", built_dist(),
                "--host", "127.0.0.1", "--port", str(port),
                "--broker", f"ws://127.0.0.1:{central.ws_port}/mqtt",
                "--secrets", central.secrets_path, "--ack-post", ack_post]
        proc = self.h.spawn("dashboard-server", argv)

        def up():
            proc.check_running()
            return "vigie-dashboard: http://" in proc.log_text()
        wait_for(up, 15, "the dashboard server to listen")
        return f"http://127.0.0.1:{port}/"

    def browser(self, url, operator=OPERATOR, size=DESKTOP):
        b = Driver.spawn(self.h)
        self.addCleanup(self.check_browser_report, b)
        b.call("open", url=url + "?" + urllib.parse.urlencode({"operator": operator}),
               width=size[0], height=size[1], timeout=30)
        b.call("waitText", selector="#conn", text="Connected", timeout=15)
        return b

    def check_browser_report(self, b):
        if not b.alive():
            return
        rep = b.call("report")
        self.assertEqual(rep["blocked"], [], "the page asked for something off 127.0.0.1")
        self.assertEqual(rep["pageErrors"], [], "errors in the page")
        for ws in rep["websockets"]:
            self.assertTrue(ws.startswith("ws://127.0.0.1:"), ws)

    def shot(self, b, name, size=None, full=False, selector=None):
        if size:
            b.call("viewport", width=size[0], height=size[1])
            time.sleep(0.3)  # one layout pass
        path = os.path.join(artifacts_dir(), f"{name}.png")
        b.call("screenshot", path=path, fullPage=full, **({"selector": selector} if selector else {}))
        print(f"\nscreenshot: {path}", flush=True)
        return path

    # ---- playing the relay ----

    def relay_client(self, central):
        return self.h.client(central, "relay")

    def publish(self, client, topic, msg, retain=False):
        publish_sync(client, topic, msg.SerializeToString(), qos=1, retain=retain)

    def incident(self, id_, **kw):
        p = pb()
        fields = dict(id=id_, site="louvre", zone="apollo-gallery", state=p.INCIDENT_OPEN,
                      priority=p.PRIORITY_HIGH, kind=p.KIND_GLASS_BREAK,
                      first_event_us=now_us() - 42_000_000, last_event_us=now_us(),
                      level=0, level_name="site-security", event_count=1,
                      detectors=["apollo-1/gb-w2"], updated_us=now_us(), region="paris")
        fields.update(kw)
        return p.Incident(**fields)

    def picture(self, central, site):
        """The retained picture a relay and the nodes leave on the central."""
        p = pb()
        relay = self.relay_client(central)
        loc = {"louvre": (48.8606, 2.3376), "orsay": (48.86, 2.3266), "mnhn": (48.8418, 2.3561)}
        names = {"louvre": "Musée du Louvre", "orsay": "Musée d'Orsay",
                 "mnhn": "Muséum national d'Histoire naturelle"}
        states = {"louvre": p.SITE_ALARM, "orsay": p.SITE_OFFLINE, "mnhn": p.SITE_NORMAL}
        for s in ("louvre", "orsay", "mnhn"):
            st = p.SiteStatus(site=s, name=names[s], time_us=now_us(), state=states[s],
                              posture=p.POSTURE_HEIGHTENED if s == "louvre" else p.POSTURE_NORMAL,
                              location=p.Location(lat=loc[s][0], lon=loc[s][1]), region="paris",
                              bridge_up=s != "orsay",
                              uncovered_zones=["apollo-balcony"] if s == "louvre" else [],
                              open_incidents=["louvre-a"] if s == "louvre" else [],
                              nodes=[p.NodeHealth(node="apollo-1", online=True,
                                                  last_heartbeat_us=now_us(), path="primary")]
                              if s == "louvre" else [])
            self.publish(relay, f"vigie/v1/status/{s}", st, retain=True)
        self.publish(relay, "vigie/v1/post/pp-paris-1/state",
                     p.PostState(post="pp-paris-1", status=p.POST_ONLINE, time_us=now_us(),
                                 name="Préfecture de police, 1er"), retain=True)
        self.publish(relay, "vigie/v1/post/hq-louvre/state",
                     p.PostState(post="hq-louvre", status=p.POST_OFFLINE, time_us=now_us(),
                                 name="Louvre security HQ", reason="lwt"), retain=True)
        self.publish(relay, "vigie/v1/pattern/louvre-orsay-grinder",
                     p.PatternAlert(id="louvre-orsay-grinder", rule="same-tool-2-sites",
                                    title="Angle grinder at two museums",
                                    explanation="Angle-grinder cuts at the Louvre and at Orsay "
                                                "within 40 min, 1.1 km apart.",
                                    sites=["louvre", "orsay"], incidents=["louvre-a", "orsay-x"],
                                    first_us=now_us() - 2_400_000_000, last_us=now_us(),
                                    updated_us=now_us(), priority=p.PRIORITY_HIGH,
                                    posture=p.POSTURE_HEIGHTENED, active=True,
                                    instructions=["Perimeter patrols", "No parking at facades"]),
                     retain=True)
        self.publish(relay, "vigie/v1/incident/louvre-a",
                     self.incident("louvre-a", priority=p.PRIORITY_CRITICAL,
                                   state=p.INCIDENT_CONFIRMED, confirmed=True, level=1,
                                   level_name="museum-hq", event_count=4,
                                   detectors=["apollo-1/gb-w2", "apollo-1/seismic-w2"],
                                   attributes=[p.Attribute(key="tool", value="angle-grinder"),
                                               p.Attribute(key="vehicle", value="lift-truck")]),
                     retain=True)
        self.publish(relay, "vigie/v1/incident/mnhn-old",
                     self.incident("mnhn-old", site="mnhn", state=p.INCIDENT_CLOSED,
                                   closed_us=now_us() - 60_000_000, acked_by="Sgt Leroy"),
                     retain=True)
        # The node's birth and heartbeat come over the site broker and the bridge.
        node = self.h.client(site, "node")
        birth = p.NodeState(site="louvre", node="apollo-1", boot_id=7, status=p.NODE_ONLINE,
                            time_us=now_us(), version="test", heartbeat_period_ms=1000,
                            reporting_time_ms=5000, uncovered_zones=["apollo-balcony"],
                            zones=[p.Zone(id="apollo-gallery", name="Galerie d'Apollon",
                                          location=p.Location(lat=48.86085, lon=2.337)),
                                   p.Zone(id="apollo-balcony", name="Balcony over the quai",
                                          location=p.Location(lat=48.8604, lon=2.3371))])
        publish_sync(node, "vigie/v1/site/louvre/node/apollo-1/state", birth.SerializeToString(),
                     retain=True)
        return relay, node

    def heartbeat(self, node_client, seq):
        p = pb()
        body = p.HeartbeatBody(site="louvre", node="apollo-1", boot_id=7, time_us=now_us(),
                               last_seq=12, outbox_pending=0, period_ms=1000,
                               reporting_time_ms=5000, path="primary", hb_seq=seq)
        node_client.publish("vigie/v1/site/louvre/node/apollo-1/heartbeat",
                            p.Heartbeat(body=body.SerializeToString()).SerializeToString(), qos=0)

    def acks(self, central):
        return self.h.subscriber(central, "relay", ["vigie/v1/post/+/ack"], name="ack-listener")

    def decode_ack(self, m):
        a = pb().Ack()
        a.ParseFromString(m.payload)
        return a

    def row(self, id_):
        return f'#queue li[data-incident="{id_}"]'

    # ---- the tests ----

    def test_live_picture_ack_by_keyboard_and_mouse_broker_restart(self):
        p = pb()
        central = self.h.start_central(ws=True, sites=["louvre", "orsay", "mnhn"],
                                       posts=["pp-paris-1", "hq-louvre"])
        site = self.h.start_site("louvre", central)
        relay, node = self.picture(central, site)
        hb = [0]

        def beat():
            hb[0] += 1
            self.heartbeat(node, hb[0])
        beat()
        acks = self.acks(central)
        url = self.serve(central, ack_post="hq-louvre")
        b = self.browser(url)

        # The current picture, from retained state alone.
        b.call("waitText", selector=self.row("louvre-a"), text="Galerie d'Apollon", timeout=10)
        row_a = b.call("text", selector=self.row("louvre-a"))
        for words in ("CRITICAL", "CONFIRMED", "escalation L2 museum-hq", "4 events",
                      "tool=angle-grinder", "since first event"):
            self.assertIn(words, row_a)
        sites = b.call("text", selector="#sites")
        for words in ("ALARM", "Musée du Louvre", "OFFLINE", "Musée d'Orsay", "NORMAL",
                      "Muséum national d'Histoire naturelle", "Coverage gaps: apollo-balcony",
                      "Posture HEIGHTENED", "bridge DOWN"):
            self.assertIn(words, sites)
        b.call("waitText", selector="#map svg", text="ALARM")
        self.assertIn("Angle-grinder cuts at the Louvre and at Orsay",
                      b.call("text", selector="#patterns"))
        b.call("waitText", selector="#health", text="louvre/apollo-1", timeout=10)
        health = b.call("text", selector="#health")
        for words in ("ONLINE", "Préfecture de police, 1er", "OFFLINE", "(lwt)", "UP",
                      "Musée du Louvre"):  # the bridge of the site broker, by name
            self.assertIn(words, health)
        self.assertEqual(b.call("eval", expr="document.querySelectorAll('#queue li').length"), 1,
                         "the closed incident is not in the queue")
        self.assertIn("Histoire naturelle",
                      b.call("eval", expr="document.getElementById('closed-list').textContent"))

        # A new incident appears within a second of its publication.
        beat()
        t0 = time.time()
        self.publish(relay, "vigie/v1/incident/louvre-b",
                     self.incident("louvre-b", priority=p.PRIORITY_CRITICAL, zone="apollo-balcony",
                                   kind=p.KIND_VIBRATION, level=2, level_name="police",
                                   first_event_us=now_us() - 5_000_000), retain=True)
        seen = b.call("waitFn", expr="window.vigie.seen['louvre-b']", timeout=5)
        delay_ms = seen - t0 * 1000
        print(f"\nnew incident drawn {delay_ms:.0f} ms after its publication", flush=True)
        self.assertLess(delay_ms, 1000)
        # Sorted: both critical, the older first.
        order = b.call("eval", expr="[...document.querySelectorAll('#queue li.inc')].map(e => e.dataset.incident)")
        self.assertEqual(order, ["louvre-a", "louvre-b"])

        # The relay dispatches louvre-b to the police post; the page shows it.
        self.publish(relay, "vigie/v1/post/pp-paris-1/dispatch",
                     p.Dispatch(id="louvre-b-l2", incident="louvre-b", post="pp-paris-1",
                                site="louvre", site_name="Musée du Louvre",
                                priority=p.PRIORITY_CRITICAL, kind=p.KIND_VIBRATION,
                                level=2, level_name="police", attempt=1, sent_us=now_us()))
        b.call("waitText", selector=self.row("louvre-b"), text="Dispatched to pp-paris-1")

        # Ack louvre-b with the keyboard only: G to the queue, arrows, A.
        b.call("press", key="g")
        focused = lambda: b.call("eval", expr="document.activeElement.dataset.incident || null")
        self.assertEqual(focused(), "louvre-a")
        b.call("press", key="ArrowDown")
        self.assertEqual(focused(), "louvre-b")
        self.shot(b, "dashboard-keyboard-focus-1280x800")
        b.call("press", key="a")
        m = acks.wait_for_count(1, timeout=5)[0]
        ack = self.decode_ack(m)
        self.assertEqual(m.topic, "vigie/v1/post/pp-paris-1/ack")
        self.assertEqual((ack.dispatch, ack.incident, ack.post, ack.by, ack.source),
                         ("louvre-b-l2", "louvre-b", "pp-paris-1", OPERATOR, "dashboard"))
        self.assertLess(abs(ack.time_us - now_us()), 10_000_000)
        b.call("waitText", selector=self.row("louvre-b"), text="Ack sent to pp-paris-1")

        # The relay confirms: the row says who acknowledged.
        self.publish(relay, "vigie/v1/incident/louvre-b",
                     self.incident("louvre-b", priority=p.PRIORITY_CRITICAL, zone="apollo-balcony",
                                   kind=p.KIND_VIBRATION, level=2, level_name="police",
                                   state=p.INCIDENT_ACKNOWLEDGED, acked_by=ack.by,
                                   acked_us=now_us()), retain=True)
        b.call("waitText", selector=self.row("louvre-b"), text=f"Acknowledged by {OPERATOR}")

        # Ack louvre-a with the mouse: no dispatch seen, so the configured post
        # and the id <incident>-l<level>.
        beat()
        b.call("click", selector=self.row("louvre-a") + " button.ack")
        acks.wait_for_count(2, timeout=5)
        m = acks.received()[1]
        ack = self.decode_ack(m)
        self.assertEqual(m.topic, "vigie/v1/post/hq-louvre/ack")
        self.assertEqual((ack.dispatch, ack.incident, ack.post, ack.by),
                         ("louvre-a-l1", "louvre-a", "hq-louvre", OPERATOR))
        b.call("waitText", selector=self.row("louvre-a"), text="Ack sent to hq-louvre")

        self.shot(b, "dashboard-1280x800")
        self.shot(b, "dashboard-phone-390x844", size=PHONE)
        self.shot(b, "dashboard-phone-390-full", full=True)
        self.shot(b, "dashboard-phone-390-map", selector="#map svg")
        b.call("viewport", width=DESKTOP[0], height=DESKTOP[1])

        # Broker restart: the page says it is disconnected, reconnects by
        # itself, and shows what comes next.
        central.stop()
        b.call("waitText", selector="#banner", text="DISCONNECTED", timeout=10)
        self.assertTrue(b.call("eval", expr="!document.getElementById('banner').hidden"))
        self.assertIn("DISCONNECTED", b.call("text", selector="#conn"))
        time.sleep(1.5)  # a few reconnection attempts against a closed port
        self.shot(b, "dashboard-disconnected-1280x800")
        central.start()
        b.call("waitText", selector="#conn", text="Connected", timeout=20)
        b.call("waitText", selector="#banner", text="Reconnected", timeout=5)
        relay = self.relay_client(central)
        t0 = time.time()
        self.publish(relay, "vigie/v1/incident/louvre-c",
                     self.incident("louvre-c", priority=p.PRIORITY_MEDIUM, kind=p.KIND_MOTION),
                     retain=True)
        seen = b.call("waitFn", expr="window.vigie.seen['louvre-c']", timeout=5)
        self.assertLess(seen - t0 * 1000, 1000)
        # The retained picture came back with the broker's persistence.
        self.assertIn("Musée d'Orsay", b.call("text", selector="#sites"))
        b.call("wait", selector="#banner", state="hidden", timeout=10)

    def test_login_form_when_no_password_is_configured(self):
        central = self.h.start_central(ws=True, sites=["louvre"])
        port = free_port()
        self.h.spawn("dashboard-server", [
            NODE, os.path.join(DASH, "serve.mjs"), "--dist", built_dist(), "--port", str(port),
            "--broker", f"ws://127.0.0.1:{central.ws_port}"])
        wait_for(lambda: "http://" in self.h.procs["dashboard-server"].log_text(), 15, "server")
        b = Driver.spawn(self.h)
        self.addCleanup(self.check_browser_report, b)
        b.call("open", url=f"http://127.0.0.1:{port}/", width=PHONE[0], height=PHONE[1], timeout=30)
        b.call("wait", selector="#login-form")
        # A wrong password: refused, said so, the form again.
        b.call("type", selector="input[name=operator]", text="Sgt Leroy")
        b.call("type", selector="input[name=password]", text="wrong")
        b.call("press", key="Enter")
        b.call("waitText", selector="#login-error", text="user name or password refused", timeout=10)
        self.shot(b, "dashboard-login-refused-phone")
        b.call("type", selector="input[name=password]", text=central.password("dashboard"))
        b.call("press", key="Enter")
        b.call("waitText", selector="#conn", text="Connected", timeout=10)
        self.assertEqual(b.call("text", selector="#operator"), "Sgt Leroy")

    def test_served_by_the_brokers_websockets_listener(self):
        """The other way to serve the page: Mosquitto's http_dir on the
        central's websockets listener. The generated config plus one line,
        `http_dir DIST` in the websockets listener's block (the change
        proposed for vigie-broker-config); the page then finds the broker at
        its own origin, with no config.json of a server."""
        central = self.h.start_central(ws=True, sites=["louvre"], start=False)
        with open(central.conf, encoding="utf-8") as f:
            lines = f.read().splitlines()
        i = lines.index("protocol websockets")
        lines.insert(i + 1, f"http_dir {built_dist()}")
        conf = os.path.join(central.config_dir, "mosquitto-http-dir.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        proc = self.h.spawn("central-http-dir", [hh.MOSQUITTO, "-c", conf])

        def ready():
            proc.check_running()
            return central.connect_rc("relay") == 0
        wait_for(ready, 10, "the central with http_dir")
        b = Driver.spawn(self.h)
        self.addCleanup(self.check_browser_report, b)
        pw = urllib.parse.quote(central.password("dashboard"))
        b.call("open", url=f"http://127.0.0.1:{central.ws_port}/?operator=Sgt%20Leroy#password={pw}",
               width=DESKTOP[0], height=DESKTOP[1], timeout=30)
        b.call("waitText", selector="#conn", text="Connected", timeout=15)
        rep = b.call("report")
        self.assertEqual(rep["websockets"], [f"ws://127.0.0.1:{central.ws_port}/mqtt"])
        self.assertNotIn("password", b.call("eval", expr="location.href"),
                         "the password is removed from the address bar")

    def test_real_relay_and_node(self):
        relay_bin = hh.bin_path("vigie-relay")
        node_bin = hh.bin_path("vigie-node")
        central = self.h.start_central(ws=True, sites=["louvre"], posts=["pp-paris-1", "hq-louvre"])
        site = self.h.start_site("louvre", central)
        db = self.h.path("relay.db")
        cfg = self.h.path("relay.yaml")
        with open(cfg, "w") as f:
            f.write(RELAY_YAML.format(port=central.port, password=central.password("relay"), db=db,
                                      tls=central.tls_yaml_block()))
        r = subprocess.run([relay_bin, "check-config", cfg], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        self.h.spawn("relay", [relay_bin, "-c", cfg])
        ncfg = self.h.path("node.yaml")
        sock = self.h.path("node.sock")
        with open(ncfg, "w") as f:
            f.write(NODE_YAML.format(port=site.port, password=site.password("node"),
                                     outbox=self.h.path("outbox.db"), sock=sock,
                                     tls=site.tls_yaml()))
        self.h.spawn("node", [node_bin, "-c", ncfg])
        acks = self.acks(central)
        incidents = self.h.subscriber(central, "relay", ["vigie/v1/incident/+"], name="incidents")
        url = self.serve(central, ack_post="hq-louvre")
        b = self.browser(url, operator=OPERATOR_ASCII)
        # The relay's status for the site (from its config) reaches the page.
        b.call("waitText", selector="#sites", text="Musée du Louvre", timeout=15)

        # The node reports two independent detectors: a confirmed intrusion.
        wait_for(lambda: os.path.exists(sock), 10, "the node's socket")
        import socket as so
        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"kind=glass_break sensor=gb-w2 tool=angle-grinder\n"
                  b"kind=vibration sensor=seismic-w2\n")
        got = b""
        while got.count(b"\n") < 2:
            got += s.recv(4096)
        s.close()
        self.assertTrue(all(line.startswith(b"OK") for line in got.splitlines()), got)

        def an_incident(ms):
            for m in ms:
                if m.payload:
                    i = pb().Incident()
                    i.ParseFromString(m.payload)
                    if i.site == "louvre" and not i.trouble and i.state != pb().INCIDENT_CLOSED:
                        return i
            return None
        inc = incidents.wait_for(an_incident, timeout=15, what="the relay's incident")
        inc = an_incident(incidents.received())
        b.call("wait", selector=self.row(inc.id), timeout=5)
        # The real node's heartbeats (QoS 0, through the bridge) reach the page.
        b.call("waitFn", expr="window.vigie.model.nodes.get('louvre/apollo-1')?.hb?.msg.hb_seq",
               timeout=5)
        self.shot(b, "dashboard-real-relay-1280x800")
        b.call("click", selector=self.row(inc.id) + " button.ack")
        m = acks.wait_for_count(1, timeout=5)[0]
        ack = self.decode_ack(m)
        self.assertEqual((ack.incident, ack.by, ack.source), (inc.id, OPERATOR_ASCII, "dashboard"))
        # The relay takes it: the page shows the relay's word, and the audit log has it.
        b.call("waitText", selector=self.row(inc.id), text=f"Acknowledged by {OPERATOR_ASCII}",
               timeout=10)

        def audited():
            r = subprocess.run([relay_bin, "audit", "--db", db, "--incident", inc.id],
                               capture_output=True, text=True, timeout=10)
            return r.stdout if OPERATOR_ASCII in r.stdout else None
        out = wait_for(audited, 10, "the ack in the relay's audit log")
        print(f"\nvigie-relay audit --incident {inc.id}:\n{out}", flush=True)
        self.assertIn("acknowledged", out)


RELAY_YAML = """\
id: relay-test
database: {db}
synchronous: normal
broker:
  host: 127.0.0.1
  port: {port}
  username: relay
  password: "{password}"
  keepalive: 5
{tls}reporting_time: 5s
status_interval: 1s
dispatch_resend: 2s
posts:
  - id: pp-paris-1
    name: Préfecture de police, 1er arrondissement
  - id: hq-louvre
    name: Louvre security HQ
escalation:
  - name: site-security
    alert: true
    ack_deadline: 60s
  - name: museum-hq
    post: hq-louvre
    ack_deadline: 60s
  - name: police
    post: pp-paris-1
    ack_deadline: 60s
    police: true
sites:
  - id: louvre
    name: Musée du Louvre
    region: paris
    location: {{lat: 48.8606, lon: 2.3376}}
    zones:
      - id: apollo-gallery
        name: Galerie d'Apollon
        location: {{lat: 48.86085, lon: 2.33700}}
      - id: apollo-balcony
        name: Balcony over the quai
"""

NODE_YAML = """\
site: louvre
node: apollo-1
outbox: {outbox}
socket: {sock}
heartbeat_period: 1s
reporting_time: 5s
brokers:
  primary: {{host: 127.0.0.1, port: {port}, username: node, password: "{password}", keepalive: 5{tls}}}
zones:
  - {{id: apollo-gallery, name: Galerie d'Apollon, location: {{lat: 48.86085, lon: 2.33700}}}}
  - {{id: apollo-balcony, name: Balcony over the quai}}
  - {{id: quai-facade, name: Seine facade}}
sensors:
  - {{id: gb-w2, kind: glass_break, zones: [apollo-balcony, apollo-gallery]}}
  - {{id: seismic-w2, kind: vibration, zones: [apollo-balcony]}}
"""


if __name__ == "__main__":
    unittest.main()
