"""Broker layer: generated Mosquitto configs, bridges, ACLs, outages.

Real mosquitto processes on 127.0.0.1 (see vigie_harness); no Vigie binary
is needed. Run from tests/integration with Debian's python3:
    VIGIE_SOURCE=<repo> PYTHONPATH=<build>/generated/python:. \
        /usr/bin/python3 -m unittest -v test_brokers
"""

import os
import re
import stat
import sys
import time
import unittest

from vigie_harness import (HarnessTestCase, publish_many, publish_sync, read_secrets,
                           try_connect, wait_for)

N_OUTAGE = 1000


def report(text):
    """Figures worth reading in the test log (CTest keeps stderr)."""
    print(f"\n    [figure] {text}", file=sys.stderr, flush=True)


def listening_addresses(port):
    """Local IPv4/IPv6 addresses listening on TCP `port`, from /proc/net."""
    out = set()
    for path, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, p = fields[1].split(":")
            if fields[3] == "0A" and int(p, 16) == port:  # 0A = LISTEN
                if width == 8:
                    out.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
                else:
                    out.add(addr)
    return out


class GeneratorTest(HarnessTestCase):
    """broker-config/vigie-broker-config on its own (no broker running)."""

    def gen(self, *args):
        return self.h.run_generator(list(args))

    def central_args(self, out, *extra):
        return ["central", "--out", out, "--port", "18830", "--site", "louvre",
                "--post", "p1", "--plaintext-loopback", "--quiet"] + list(extra)

    def snapshot(self, d):
        snap = {}
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if os.path.isfile(p):
                st = os.stat(p)
                with open(p, "rb") as f:
                    snap[name] = (f.read(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
        return snap

    def test_rejects_bad_site_ids_with_exit_2(self):
        out = self.h.path("bad")
        for bad in ["Louvre", "lou/vre", "", "a" * 65, "lou vre", "+", "#", "café", "x\n"]:
            with self.subTest(site=bad):
                r = self.gen("site", "--site", bad, "--out", out, "--port", "1883",
                             "--central-host", "127.0.0.1", "--central-port", "1884",
                             "--bridge-password", "abcdefgh1")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("invalid site id", r.stderr)
                self.assertIn("[a-z0-9_-]{1,64}", r.stderr)
                r = self.gen("central", "--site", "orsay", "--site", bad, "--out", out,
                             "--port", "1883")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("invalid site id", r.stderr)
        self.assertFalse(os.path.exists(out), "a rejected run must write nothing")

    def test_rejects_other_bad_input_with_exit_2(self):
        out = self.h.path("bad")
        cases = [
            (["central", "--out", out, "--port", "0"], "TCP port"),
            (["central", "--out", out, "--port", "1883", "--bind", "localhost"], "IP address"),
            (["central", "--out", out, "--port", "1883", "--post", "P1"], "invalid post id"),
            (["central", "--out", out, "--port", "1883", "--site", "a", "--site", "a"], "given twice"),
            (["central", "--out", out, "--port", "1883", "--ws-port", "1883"], "must differ"),
            (["central", "--out", out, "--port", "1883", "--certfile", "/x.pem"], "go together"),
            (["central", "--out", out, "--port", "1883", "--password", "nobody=abcdefgh1"],
             "unknown user"),
            (["site", "--site", "louvre", "--out", out, "--port", "1883",
              "--central-host", "127.0.0.1", "--central-port", "1884"], "no password for the bridge"),
            (["site", "--site", "louvre", "--out", out, "--port", "1883", "--central-host",
              "127.0.0.1", "--central-port", "1884", "--bridge-password", "short"], "8 to 256"),
            (["site", "--site", "louvre", "--out", out, "--port", "1883", "--central-host",
              "127.0.0.1", "--central-port", "1884", "--bridge-password", "abcdefgh1",
              "--keepalive", "2"], "5 s"),
            (["site", "--site", "louvre", "--out", out, "--port", "1883", "--central-host",
              "127.0.0.1", "--central-port", "1884", "--bridge-password", "abcdefgh1",
              "--restart-timeout", "10 1"], "BASE <= CAP"),
        ]
        for args, msg in cases:
            with self.subTest(args=args):
                r = self.gen(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(msg, r.stderr)
        self.assertFalse(os.path.exists(out), "a rejected run must write nothing")
        r = self.gen("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("central", r.stdout)

    def test_rerun_is_idempotent(self):
        out = self.h.path("central")
        r = self.gen(*self.central_args(out))
        self.assertEqual(r.returncode, 0, r.stderr)
        first = self.snapshot(out)
        self.assertEqual(set(first), {"mosquitto.conf", "passwd", "acl", "secrets"})
        self.assertEqual(first["secrets"][1], 0o600)
        users, _ = read_secrets(os.path.join(out, "secrets"))
        self.assertEqual(set(users), {"relay", "dashboard", "post-p1", "bridge-louvre"})

        # Same options: not one byte, mode or mtime changes.
        r = self.gen(*self.central_args(out))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.snapshot(out), first)

        # A new post: the existing passwords stay, one user is added.
        r = self.gen(*self.central_args(out, "--post", "p2"))
        self.assertEqual(r.returncode, 0, r.stderr)
        users2, _ = read_secrets(os.path.join(out, "secrets"))
        self.assertEqual({u: users2[u] for u in users}, users)
        self.assertIn("post-p2", users2)

        # An explicit password replaces that user's only.
        r = self.gen(*self.central_args(out, "--post", "p2", "--password", "relay=given-pw-123"))
        self.assertEqual(r.returncode, 0, r.stderr)
        users3, _ = read_secrets(os.path.join(out, "secrets"))
        self.assertEqual(users3["relay"], "given-pw-123")
        self.assertEqual(users3["dashboard"], users["dashboard"])

        # A site takes its bridge password from the central's secrets, and a
        # rerun without any password option reuses the stored one.
        site = self.h.path("louvre")
        base = ["site", "--site", "louvre", "--out", site, "--port", "18831",
                "--central-host", "127.0.0.1", "--central-port", "18830",
                "--plaintext-loopback", "--quiet"]
        r = self.gen(*base, "--central-secrets", os.path.join(out, "secrets"))
        self.assertEqual(r.returncode, 0, r.stderr)
        site_first = self.snapshot(site)
        self.assertIn(f"remote_password {users['bridge-louvre']}\n",
                      site_first["mosquitto.conf"][0].decode())
        r = self.gen(*base)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.snapshot(site), site_first)

    def test_plaintext_is_off_by_default_and_loopback_only(self):
        out = self.h.path("plain")
        central = ["central", "--out", out, "--port", "1883"]
        site = ["site", "--site", "louvre", "--out", out, "--port", "1883",
                "--bridge-password", "abcdefgh1", "--central-port", "1884"]
        tls = ["--certfile", "/x/server.crt", "--keyfile", "/x/server.key"]
        cases = [
            (central, "no TLS on the listener"),
            (central + ["--plaintext-loopback", "--bind", "10.1.2.3"],
             "--bind 10.1.2.3 is not a loopback address"),
            (central + ["--plaintext-loopback", "--bind", "127.0.0.1", "--bind", "0.0.0.0"],
             "--bind 0.0.0.0 is not a loopback address"),
            (central + tls + ["--ws-port", "9001", "--ws-plaintext-loopback", "--bind", "10.1.2.3"],
             "--ws-plaintext-loopback: --bind 10.1.2.3"),
            (central + tls + ["--ws-plaintext-loopback"], "needs --ws-port"),
            (site + tls + ["--central-host", "127.0.0.1"], "no TLS on the bridge"),
            (site + tls + ["--central-host", "central.example", "--plaintext-loopback"],
             "--central-host central.example is not a loopback address"),
            (site + ["--central-host", "127.0.0.1", "--bridge-cafile", "/x/ca.crt"],
             "no TLS on the listener"),
        ]
        for args, msg in cases:
            with self.subTest(args=args):
                r = self.gen(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(msg, r.stderr)
        self.assertFalse(os.path.exists(out), "a rejected run must write nothing")

        # TLS everywhere but a websockets listener for a local browser.
        r = self.gen(*central, *tls, "--cafile", "/x/ca.crt", "--require-certificate",
                     "--ws-port", "9001", "--ws-plaintext-loopback", "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "mosquitto.conf")) as f:
            text = f.read()
        listeners = text[text.index("# --- Listeners"):]
        mqtt_block, ws_block = listeners.split("listener 9001 ")
        self.assertIn("certfile /x/server.crt", mqtt_block)
        self.assertIn("require_certificate true", mqtt_block)
        self.assertNotIn("certfile", ws_block)
        # The plaintext listener says why it is there.
        plain = self.h.path("plain2")
        r = self.gen("central", "--out", plain, "--port", "1883", "--plaintext-loopback", "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(plain, "mosquitto.conf")) as f:
            self.assertIn("Plaintext, on loopback only (--plaintext-loopback)", f.read())

    def test_refuses_to_overwrite_foreign_config(self):
        out = self.h.path("foreign")
        os.makedirs(out)
        with open(os.path.join(out, "mosquitto.conf"), "w") as f:
            f.write("listener 1883\n")
        r = self.gen(*self.central_args(out))
        self.assertEqual(r.returncode, 2)
        self.assertIn("not written by this generator", r.stderr)
        with open(os.path.join(out, "mosquitto.conf")) as f:
            self.assertEqual(f.read(), "listener 1883\n")


class BrokerConfigTest(HarnessTestCase):
    """The generated configs run and say what the issue asks for."""

    REQUIRED_BOTH = [
        r"^persistence true$", r"^autosave_on_changes false$", r"^autosave_interval 1$",
        r"^set_tcp_nodelay true$", r"^max_queued_messages 1000000$", r"^max_queued_bytes 0$",
        r"^max_inflight_messages \d+$", r"^allow_anonymous false$",
        r"^per_listener_settings false$", r"^listener \d+ 127\.0\.0\.1$",
        r"^password_file /", r"^acl_file /", r"^persistence_location /.*/$",
    ]
    REQUIRED_SITE = [
        r"^connection vigie-bridge-louvre$", r"^cleansession false$",
        r"^bridge_protocol_version mqttv311$", r"^remote_clientid vigie-bridge-louvre$",
        r"^local_clientid vigie-bridge-louvre-local$", r"^try_private true$",
        r"^notifications true$",
        r"^notification_topic \$SYS/broker/connection/vigie-bridge-louvre/state$",
        r"^topic vigie/v1/site/louvre/# out 1$", r"^topic vigie/v1/relay/louvre/# in 1$",
        r"^restart_timeout 1 10$", r"^keepalive_interval 5$",
        r"^remote_username bridge-louvre$", r"^remote_password \S+$",
    ]

    def test_generated_configs_start_and_contain_required_settings(self):
        central = self.h.start_central(sites=["louvre"], posts=["p1"], ws=True,
                                       direct_node_users=True)
        site = self.h.start_site("louvre", central)   # also proves the bridge works
        for broker, required in ((central, self.REQUIRED_BOTH),
                                 (site, self.REQUIRED_BOTH + self.REQUIRED_SITE)):
            with open(broker.conf) as f:
                text = f.read()
            self.assertTrue(text.startswith("# ===="), "header comment first")
            self.assertIn("Generated by broker-config/vigie-broker-config", text)
            for pattern in required:
                self.assertRegex(text, re.compile(pattern, re.M), f"{broker.name}: {pattern}")
            for name in ("passwd", "acl", "secrets"):
                with open(os.path.join(broker.config_dir, name)) as f:
                    self.assertIn("Generated by broker-config/vigie-broker-config", f.read(),
                                  f"{broker.name}/{name} header")
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(broker.config_dir, "secrets")).st_mode),
                             0o600)
            # Every generated user logs in with its stored password.
            for user in broker.users:
                self.assertEqual(broker.connect_rc(user), 0, f"{user}@{broker.name}")
            # Bound to 127.0.0.1 only.
            self.assertEqual(listening_addresses(broker.port), {"127.0.0.1"}, broker.name)
            # TLS only, with a client certificate: plaintext and a client
            # without a certificate get no CONNACK (issue 5).
            self.assertRegex(text, re.compile(r"^require_certificate true$", re.M))
            self.assertIsNone(try_connect(broker.host, broker.port, "relay",
                                          broker.password(broker.ready_user), timeout=1.0))
            self.assertIsNone(broker.connect_rc(broker.ready_user, certfile="", keyfile="",
                                                timeout=1.0))
        # MQTT over websockets on the central.
        self.assertEqual(try_connect(central.host, central.ws_port, "dashboard",
                                     central.password("dashboard"), transport="websockets"), 0)
        self.assertEqual(listening_addresses(central.ws_port), {"127.0.0.1"})

    def test_wrong_password_refused(self):
        central = self.h.start_central(sites=["louvre", "orsay"])
        site = self.h.start_site("louvre", central, wait_bridge=False)
        NOT_AUTHORISED = 5
        self.assertEqual(central.connect_rc("relay", "not-the-password"), NOT_AUTHORISED)
        self.assertEqual(central.connect_rc("bridge-louvre", central.password("bridge-orsay")),
                         NOT_AUTHORISED)
        self.assertEqual(central.connect_rc("nobody", "whatever-pw"), NOT_AUTHORISED)
        self.assertEqual(central.connect_rc(None), NOT_AUTHORISED, "anonymous")
        self.assertEqual(site.connect_rc("node", "not-the-password"), NOT_AUTHORISED)
        self.assertEqual(site.connect_rc("node", central.password("relay")), NOT_AUTHORISED)
        self.assertEqual(site.connect_rc(None), NOT_AUTHORISED, "anonymous")
        self.assertEqual(central.connect_rc("relay"), 0)
        self.assertEqual(site.connect_rc("node"), 0)


class BridgeTest(HarnessTestCase):

    def test_site_message_arrives_at_central(self):
        central = self.h.start_central(sites=["louvre"])
        site = self.h.start_site("louvre", central)
        sub = self.h.subscriber(central, "relay", ["vigie/v1/site/+/node/+/event"])
        pub = self.h.client(site, "node")
        t0 = time.monotonic()
        publish_sync(pub, "vigie/v1/site/louvre/node/n1/event", b"up-1")
        (m,) = sub.wait_for_count(1, timeout=5)
        self.assertEqual((m.topic, m.payload, m.qos), ("vigie/v1/site/louvre/node/n1/event", b"up-1", 1))
        report(f"site -> bridge -> central latency {1000 * (m.time - t0):.1f} ms")

    def test_central_message_arrives_at_site(self):
        central = self.h.start_central(sites=["louvre"])
        site = self.h.start_site("louvre", central)
        sub = self.h.subscriber(site, "node", ["vigie/v1/relay/louvre/#"])
        relay = self.h.client(central, "relay")
        publish_sync(relay, "vigie/v1/relay/louvre/receipt/n1", b"down-1")
        (m,) = sub.wait_for_count(1, timeout=5)
        self.assertEqual((m.topic, m.payload, m.qos), ("vigie/v1/relay/louvre/receipt/n1", b"down-1", 1))

    def test_nothing_of_site_b_crosses_site_a_bridge(self):
        central = self.h.start_central(sites=["louvre", "orsay", "louvre2"])
        a = self.h.start_site("louvre", central)
        b = self.h.start_site("orsay", central)
        at_a = self.h.subscriber(a, "monitor", ["vigie/#"])
        at_b = self.h.subscriber(b, "monitor", ["vigie/#"])
        at_central = self.h.subscriber(central, "relay", ["vigie/#"])
        relay = self.h.client(central, "relay")
        node_a = self.h.client(a, "node")
        node_b = self.h.client(b, "node")

        # B's traffic, both ways, plus look-alikes of A's topics.
        publish_sync(node_b, "vigie/v1/site/orsay/node/n1/event", b"from-B")
        publish_sync(relay, "vigie/v1/relay/orsay/receipt/n1", b"to-B")
        publish_sync(relay, "vigie/v1/relay/louvre2/alert", b"to-louvre2")
        publish_sync(relay, "vigie/v1/site/orsay/node/n1/event", b"relay-wrote-B-up")
        publish_sync(relay, "vigie/v1/status/orsay", b"status-B")
        # A node of A may not speak for B: the site broker's ACL drops it.
        publish_sync(node_a, "vigie/v1/site/orsay/node/n1/event", b"forged-by-A")

        # Markers after everything, on the same connections.
        publish_sync(relay, "vigie/v1/relay/louvre/alert", b"marker-down-A")
        publish_sync(node_a, "vigie/v1/site/louvre/node/n1/event", b"marker-up-A")
        at_a.wait_for(lambda ms: {b"marker-down-A", b"marker-up-A"} <= {m.payload for m in ms},
                      timeout=5, what="both markers")
        at_central.wait_for(lambda ms: any(m.payload == b"marker-up-A" for m in ms),
                            timeout=5, what="A's up marker")
        at_b.wait_for(lambda ms: any(m.payload == b"to-B" for m in ms), timeout=5,
                      what="B's receipt (positive control)")

        seen_a = [(m.topic, m.payload) for m in at_a.received()]
        self.assertEqual(sorted(seen_a), sorted([
            ("vigie/v1/relay/louvre/alert", b"marker-down-A"),
            ("vigie/v1/site/louvre/node/n1/event", b"marker-up-A"),
        ]))
        central_payloads = at_central.payloads()
        self.assertEqual(central_payloads.count(b"from-B"), 1)
        self.assertNotIn(b"forged-by-A", central_payloads)
        self.assertNotIn(b"forged-by-A", at_b.payloads())
        # B's broker got only its own downward traffic from the central.
        self.assertEqual(sorted(m.topic for m in at_b.received()
                                if not m.topic.startswith("vigie/v1/site/orsay/")),
                         ["vigie/v1/relay/orsay/receipt/n1"])

    def test_bridge_state_notification_on_central(self):
        """What Mosquitto 2.0.11 publishes on the central for a site bridge
        (see broker-config/README.md): retained "1" once connected, the
        bridge's will "0" when the site vanishes, "1" again on return."""
        central = self.h.start_central(sites=["louvre"])
        site = self.h.start_site("louvre", central)
        topic = site.notification_topic
        states = self.h.subscriber(central, "relay", [topic])
        states.wait_for(lambda ms: ms and ms[-1].payload == b"1", timeout=5, what="state 1")
        self.assertTrue(states.received()[0].retain, "state is retained")
        t0 = time.monotonic()
        site.kill9()
        states.wait_for(lambda ms: ms[-1].payload == b"0", timeout=5, what="state 0 after kill -9")
        report(f"central saw bridge state 0 {1000 * (time.monotonic() - t0):.0f} ms after "
               f"kill -9 of the site broker")
        late = self.h.subscriber(central, "dashboard", [topic])
        late.wait_for(lambda ms: ms and ms[0].payload == b"0" and ms[0].retain, timeout=5,
                      what="retained 0 for a late subscriber")
        site.start()
        states.wait_for(lambda ms: ms[-1].payload == b"1", timeout=15, what="state 1 after restart")


class OutageTest(HarnessTestCase):
    """Broker outages with QoS 1 traffic queued at the site."""

    EVENT = "vigie/v1/site/louvre/node/n1/event"

    def setup_pair(self):
        central = self.h.start_central(sites=["louvre"])
        site = self.h.start_site("louvre", central)
        # The relay's stand-in: persistent session, subscribed before the outage.
        sub = self.h.subscriber(central, "relay", [self.EVENT], client_id="vigie-relay-test",
                                clean_session=False)
        return central, site, sub

    @staticmethod
    def unique(sub):
        return {m.payload for m in sub.received()}

    def test_central_down_5s_during_1000_qos1_all_delivered(self):
        central, site, sub = self.setup_pair()
        pub = self.h.client(site, "node")
        infos = []
        stopped_at = restarted_at = None
        t0 = time.monotonic()
        # ~6.5 s of publishing: before, during and after a 5 s central outage.
        for i in range(N_OUTAGE):
            infos.append(pub.publish(self.EVENT, b"%04d" % i, qos=1))
            if i == 100:
                central.stop()
                stopped_at = time.monotonic()
            if stopped_at and not restarted_at and time.monotonic() - stopped_at >= 5.0:
                central.start(wait=False)
                restarted_at = time.monotonic()
            time.sleep(0.0065)
        if not restarted_at:
            time.sleep(max(0.0, 5.0 - (time.monotonic() - stopped_at)))
            central.start(wait=False)
            restarted_at = time.monotonic()
        central.wait_ready()
        for info in infos:
            info.wait_for_publish(10)
            self.assertTrue(info.is_published(), "the site broker acknowledged every message")
        sub.wait_for(lambda ms: len({m.payload for m in ms}) >= N_OUTAGE, timeout=30,
                     what=f"{N_OUTAGE} distinct messages")
        done = time.monotonic()
        self.assertEqual(self.unique(sub), {b"%04d" % i for i in range(N_OUTAGE)})
        report(f"central stopped {restarted_at - stopped_at:.1f} s during {N_OUTAGE} QoS1 "
               f"publishes: {len(self.unique(sub))}/{N_OUTAGE} delivered, "
               f"{sub.count() - len(self.unique(sub))} duplicates, "
               f"all in {done - restarted_at:.1f} s after the restart "
               f"({done - t0:.1f} s in all)")

    def test_site_kill9_with_1000_queued_while_central_down(self):
        central, site, sub = self.setup_pair()
        central.stop()
        pub = self.h.client(site, "node")
        publish_many(pub, [(self.EVENT, b"%04d" % i) for i in range(N_OUTAGE)])
        # Every message is acknowledged by the site broker. It saves its
        # database each second: wait for the save that follows the last
        # message (the nodes re-send what a crash takes from the last
        # second; test_node proves that), then it dies.
        db = os.path.join(site.data_dir, "mosquitto.db")
        acked = time.time()
        wait_for(lambda: os.path.exists(db) and os.path.getmtime(db) > acked + 0.05, 5,
                 "the site broker's next save")
        site.kill9()
        central.start()
        site.start()
        site.wait_bridge()   # the probe queues behind whatever survived
        n = len(self.unique(sub))
        if n < N_OUTAGE:
            sub.wait_quiet(quiet=1.0, timeout=20)
            n = len(self.unique(sub))
        report(f"site broker kill -9 with {N_OUTAGE} QoS1 messages queued for the bridge "
               f"(central down): {n}/{N_OUTAGE} arrived after restart, "
               f"{N_OUTAGE - n} lost, {sub.count() - n} duplicates")
        self.assertLessEqual(self.unique(sub), {b"%04d" % i for i in range(N_OUTAGE)})
        # Everything queued before the last save survives the crash.
        self.assertEqual(n, N_OUTAGE)


if __name__ == "__main__":
    unittest.main()
