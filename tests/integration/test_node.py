"""vigie-node against real brokers: node -> site broker -> bridge -> central.

Until the relay exists, ReceiptPlayer (harness, test only) plays its receipt
role at the central broker.
"""

import os
import socket
import sqlite3
import subprocess
import threading
import time
import unittest

from vigie_harness import (HarnessTestCase, ReceiptPlayer, bin_path, decode_event,
                           wait_for)
import vigie_pb2 as pb

EVENT_TOPIC = "vigie/v1/site/+/node/+/event"


def node_config(h, name, site, broker, secondary=None, **over):
    """Write a node config for `site` on `broker`; returns (path, socket, outbox)."""
    d = h.path(name)
    os.makedirs(d, exist_ok=True)
    sock = os.path.join(d, "node.sock")
    outbox = os.path.join(d, "outbox.db")
    settings = {
        "heartbeat_period": "1s", "reporting_time": "3s", "resend_timeout": "1s",
        "failover_time": "2s",
    }
    settings.update(over)
    lines = [f"site: {site}", f"node: {name}", f"outbox: {outbox}", f"socket: {sock}"]
    lines += [f"{k}: {v}" for k, v in settings.items()]
    lines += ["brokers:",
              f"  primary: {{host: 127.0.0.1, port: {broker.port}, username: node, "
              f"password: \"{broker.password('node')}\", keepalive: 5{broker.tls_yaml()}}}"]
    if secondary is not None:
        user = f"node-{site}-direct"
        lines.append(f"  secondary: {{host: 127.0.0.1, port: {secondary.port}, "
                     f"username: {user}, password: \"{secondary.password(user)}\", keepalive: 5"
                     f"{secondary.tls_yaml()}}}")
    lines += ["zones:",
              "  - {id: gallery, name: Gallery, floor: \"1\", facade: north, cameras: [cam-1]}",
              "  - {id: balcony, name: Balcony}",
              "sensors:",
              "  - {id: pir-1, kind: motion, zones: [gallery]}",
              "  - {id: gb-1, kind: glass_break, zones: [gallery, balcony]}"]
    path = os.path.join(d, "node.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, sock, outbox


class Injector:
    """Writes event lines to a node's socket, pipelined, and collects the
    answers ("OK boot seq" / "ERR reason"), in order."""

    def __init__(self, sock_path, timeout=10.0):
        self.s = None

        def connected():
            # The socket file appears at bind(), a moment before listen().
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(sock_path)
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                return False
            self.s = s
            return True
        wait_for(connected, timeout, f"node socket {sock_path}")
        self.s.settimeout(timeout)
        self.answers = []
        self._buf = b""

    def send(self, line):
        self.s.sendall(line.encode() + b"\n")

    def read_answers(self, n, timeout=30.0):
        end = time.monotonic() + timeout
        while len(self.answers) < n:
            if time.monotonic() > end:
                raise AssertionError(f"{len(self.answers)} of {n} answers")
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            self._buf += data
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                self.answers.append(line.decode())
        return self.answers

    def close(self):
        self.s.close()


def oks(answers):
    """Identities (boot, seq) of the OK answers."""
    out = []
    for a in answers:
        if a.startswith("OK "):
            _, boot, seq = a.split()
            out.append((int(boot), int(seq)))
    return out


def pending_in_outbox(path):
    if not os.path.exists(path):  # the node has not created it yet
        return 0
    # Read-only: the test must never create or change the node's outbox.
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        db.close()


class NodeTest(HarnessTestCase):
    def mesh(self, site="louvre", direct=False):
        central = self.h.start_central(sites=[site], direct_node_users=direct)
        site_broker = self.h.start_site(site, central)
        return central, site_broker

    def start_node(self, name, cfg, *extra):
        return self.h.spawn(name, [bin_path("vigie-node"), "-c", cfg, *extra])

    def test_events_cross_the_bridge_are_receipted_and_leave_the_outbox(self):
        central, site = self.mesh()
        player = ReceiptPlayer(self.h, central)
        states = self.h.subscriber(central, "relay", ["vigie/v1/site/louvre/node/+/state"])
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site)
        node = self.start_node("n1", cfg)
        inj = Injector(sock)
        for i in range(50):
            inj.send(f"kind=motion sensor=pir-1 text=\"round {i}\" floor=1")
        answers = inj.read_answers(50)
        self.assertEqual(len(oks(answers)), 50, answers)
        boot = oks(answers)[0][0]
        self.assertEqual([s for _, s in oks(answers)], list(range(1, 51)))
        wait_for(lambda: len(player.events) >= 50, 15, "50 events at the central")
        ev = player.events[("louvre", "n1", boot, 7)]
        self.assertEqual(ev.kind, pb.KIND_MOTION)
        self.assertEqual(ev.zone, "gallery")       # derived from the sensor
        self.assertEqual(ev.text, "round 6")
        self.assertEqual([(a.key, a.value) for a in ev.attributes], [("floor", "1")])
        self.assertEqual(ev.source, "socket")
        wait_for(lambda: pending_in_outbox(outbox) == 0, 15, "outbox drained by receipts")
        # The retained birth says what the node covers, and what it does not.
        wait_for(lambda: states.count() >= 1, 10, "birth")
        st = pb.NodeState()
        st.ParseFromString(states.payloads()[-1])
        self.assertEqual(st.status, pb.NODE_ONLINE)
        self.assertEqual([z.id for z in st.zones], ["gallery", "balcony"])
        self.assertEqual(list(st.uncovered_zones), [])
        inj.close()
        node.stop()
        self.assertEqual(node.returncode, 0)

    def burst(self, sock, n, results, kind="intrusion"):
        """Inject n events from a thread; answers land in results."""
        def run():
            inj = Injector(sock)
            try:
                for i in range(n):
                    inj.send(f"kind={kind} sensor=gb-1 n={i}")
            except OSError:
                pass  # the node was killed: its answers so far still count
            try:
                inj.read_answers(n, timeout=120)
            except AssertionError:
                pass
            results.extend(inj.answers)
            inj.close()
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def assert_all_arrived(self, player, site, node, idents, timeout=60):
        want = {(site, node, b, s) for b, s in idents}
        wait_for(lambda: want <= set(player.events), timeout,
                 f"{len(want)} events at the central")
        # Repeats, if any, carried the same identity: at-least-once transport,
        # exactly-once by identity.
        self.assertEqual(set(player.arrivals) & want, want)

    def test_central_down_5s_during_1000_event_burst(self):
        central, site = self.mesh()
        player = ReceiptPlayer(self.h, central)
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site, resend_timeout="3s")
        self.start_node("n1", cfg)
        results = []
        t = self.burst(sock, 1000, results)
        wait_for(lambda: len(player.events) >= 100, 20, "first events at the central")
        central.stop()
        time.sleep(5)  # the outage under test, not a readiness wait
        central.start()
        t.join(60)
        self.assertEqual(len(oks(results)), 1000)
        self.assert_all_arrived(player, "louvre", "n1", oks(results))
        wait_for(lambda: pending_in_outbox(outbox) == 0, 30, "outbox drained")
        print(f"\ncentral outage: 1000 events, {player.duplicates} repeat(s) by identity")

    def test_site_broker_kill9_mid_burst_every_event_arrives(self):
        central, site = self.mesh()
        player = ReceiptPlayer(self.h, central)
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site)
        node = self.start_node("n1", cfg)
        results = []
        t = self.burst(sock, 1000, results)
        wait_for(lambda: len(player.events) >= 200, 20, "first events at the central")
        site.kill9()
        site.start()
        site.wait_bridge()
        t.join(60)
        self.assertEqual(len(oks(results)), 1000)
        self.assert_all_arrived(player, "louvre", "n1", oks(results))
        wait_for(lambda: pending_in_outbox(outbox) == 0, 30, "outbox drained")
        node.check_running()

    def test_node_kill9_during_burst_every_confirmed_event_is_resent(self):
        central, site = self.mesh()
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site)
        node = self.start_node("n1", cfg)
        results = []
        t = self.burst(sock, 3000, results)
        wait_for(lambda: len(results) > 0 or pending_in_outbox(outbox) >= 300, 20,
                 "burst under way")
        node.kill9()
        t.join(30)
        confirmed = oks(results)
        self.assertTrue(confirmed, "some events were confirmed before the kill")
        old_boot = confirmed[0][0]
        # Restart with the relay's role now played: every confirmed event of
        # the killed boot must reach the central.
        player = ReceiptPlayer(self.h, central)
        node.restart()
        self.assert_all_arrived(player, "louvre", "n1", confirmed)
        wait_for(lambda: pending_in_outbox(outbox) == 0, 30, "outbox drained")
        inj = Injector(sock)
        inj.send("kind=test state=test sensor=pir-1")
        (boot, seq), = oks(inj.read_answers(1))
        self.assertGreater(boot, old_boot)
        self.assertEqual(seq, 1)
        inj.close()

    def test_unreceipted_events_are_resent_with_the_same_identity(self):
        central, site = self.mesh()
        events = self.h.subscriber(site, "monitor", [EVENT_TOPIC])
        # A long failover time: no path-loss event of its own may join in.
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site, resend_timeout="300ms",
                                        failover_time="60s")
        self.start_node("n1", cfg)
        inj = Injector(sock)
        inj.send("kind=duress sensor=pir-1")
        (boot, seq), = oks(inj.read_answers(1))
        wait_for(lambda: events.count() >= 3, 10, "re-sends")
        idents = {(e.boot_id, e.seq) for e in (decode_event(p)[1] for p in events.payloads())}
        self.assertEqual(idents, {(boot, seq)})
        player = ReceiptPlayer(self.h, central)
        wait_for(lambda: pending_in_outbox(outbox) == 0, 10, "receipt")
        events.wait_quiet(1.5)
        n = events.count()
        time.sleep(1.5)  # no more re-sends once receipted: observe a quiet period
        self.assertEqual(events.count(), n)
        self.assertEqual(len(player.events), 1)
        inj.close()

    def test_dual_path_failover_and_return(self):
        central, site = self.mesh(direct=True)
        player = ReceiptPlayer(self.h, central)
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site, secondary=central,
                                        failover_time="1s")
        self.start_node("n1", cfg)
        inj = Injector(sock)
        inj.send("kind=motion sensor=pir-1")
        first = oks(inj.read_answers(1))
        self.assert_all_arrived(player, "louvre", "n1", first)
        site.kill9()
        for i in range(20):
            inj.send(f"kind=glass_break sensor=gb-1 n={i}")
        during = oks(inj.read_answers(21))[1:]
        self.assertEqual(len(during), 20)
        self.assert_all_arrived(player, "louvre", "n1", during, timeout=20)

        def path_events(state):
            return [e for e in player.events.values()
                    if e.kind == pb.KIND_PATH_LOSS and e.state == state]
        wait_for(lambda: path_events(pb.STATE_TROUBLE), 10, "path loss reported")
        lost = path_events(pb.STATE_TROUBLE)[0]
        self.assertIn(("path", "primary"), [(a.key, a.value) for a in lost.attributes])
        self.assertEqual(lost.path, "secondary")
        site.start()
        wait_for(lambda: path_events(pb.STATE_RESTORE), 20, "path restore reported")
        inj.send("kind=motion sensor=pir-1")
        after = oks(inj.read_answers(22))[-1:]
        self.assert_all_arrived(player, "louvre", "n1", after)
        self.assertEqual(player.events[("louvre", "n1") + after[0]].path, "primary")
        inj.close()

    def test_bad_lines_are_refused_and_the_node_goes_on(self):
        central, site = self.mesh()
        player = ReceiptPlayer(self.h, central)
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site)
        node = self.start_node("n1", cfg)
        inj = Injector(sock)
        lines = ["kind=teleport", "kind=motion zone=nowhere", "kind=motion sensor=ghost",
                 "zone=gallery", "kind=motion text=\"unterminated",
                 "kind=motion sensor=pir-1", "\x00\x01\x02 garbage"]
        for line in lines:
            inj.send(line)
        answers = inj.read_answers(len(lines))
        self.assertEqual([a.split()[0] for a in answers],
                         ["ERR"] * 5 + ["OK", "ERR"])
        self.assertIn("unknown kind", answers[0])
        self.assertIn("zone: \"nowhere\" is not in", answers[1])
        self.assertIn("sensor: \"ghost\"", answers[2])
        # An oversized line is refused and its connection closed ...
        inj.send("kind=motion text=" + "x" * 6000)
        answers = inj.read_answers(len(lines) + 1)
        self.assertIn("line longer than 4096 bytes", answers[-1])
        inj.close()
        # ... while the node goes on for everyone else.
        inj2 = Injector(sock)
        inj2.send("kind=motion sensor=pir-1")
        self.assertEqual(len(oks(inj2.read_answers(1))), 1)
        inj2.close()
        wait_for(lambda: len(player.events) == 2, 10, "the two good events")
        node.check_running()
        self.assertIn("line refused", node.log_text())

    def test_lwt_on_kill9_and_clean_shutdown_state(self):
        central, site = self.mesh()
        states = self.h.subscriber(central, "relay", ["vigie/v1/site/louvre/node/+/state"])
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site)
        node = self.start_node("n1", cfg)

        def last_state():
            if not states.count():
                return None
            st = pb.NodeState()
            st.ParseFromString(states.payloads()[-1])
            return st
        wait_for(lambda: last_state() and last_state().status == pb.NODE_ONLINE, 10, "birth")
        node.kill9()
        # The site broker publishes the will after 1.5 keepalives (5 s).
        wait_for(lambda: last_state().status == pb.NODE_OFFLINE, 15, "LWT")
        self.assertEqual(last_state().reason, "lwt")
        node.restart()
        wait_for(lambda: last_state().status == pb.NODE_ONLINE, 10, "birth again")
        node.stop()
        self.assertEqual(node.returncode, 0)
        wait_for(lambda: last_state().status == pb.NODE_OFFLINE, 10, "shutdown state")
        self.assertEqual(last_state().reason, "shutdown")


class WireContractTest(HarnessTestCase):
    def test_stock_protoc_decodes_a_captured_payload(self):
        """Any stock protobuf tool must decode what Vigie publishes."""
        central, site = NodeTest.mesh(self)
        events = self.h.subscriber(site, "monitor", [EVENT_TOPIC])
        cfg, sock, outbox = node_config(self.h, "n1", "louvre", site, failover_time="60s")
        self.h.spawn("n1", [bin_path("vigie-node"), "-c", cfg])
        inj = Injector(sock)
        inj.send("kind=display_case sensor=gb-1 tool=disc-cutter text=\"case 7\"")
        self.assertEqual(len(oks(inj.read_answers(1))), 1)
        inj.close()
        events.wait_for_count(1)
        payload = events.payloads()[0]
        proto_dir = os.path.join(os.environ["VIGIE_SOURCE"], "proto")

        def protoc(message, data):
            return subprocess.run(["protoc", f"--decode=vigie.v1.{message}", "-I", proto_dir,
                                   os.path.join(proto_dir, "vigie.proto")],
                                  input=data, capture_output=True, timeout=30)
        outer = protoc("SignedEvent", payload)
        self.assertEqual(outer.returncode, 0, outer.stderr)
        self.assertIn(b"event: ", outer.stdout)
        inner = protoc("Event", decode_event(payload)[0].event)
        self.assertEqual(inner.returncode, 0, inner.stderr)
        for needle in (b'site: "louvre"', b'node: "n1"', b"kind: KIND_DISPLAY_CASE",
                       b"state: STATE_ALARM", b'value: "disc-cutter"', b'text: "case 7"'):
            self.assertIn(needle, inner.stdout)


class NodeCliTest(HarnessTestCase):
    def run_node(self, *args):
        return subprocess.run([bin_path("vigie-node"), *args], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)

    def write(self, name, text):
        p = self.h.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    GOOD = ("site: louvre\nnode: n1\noutbox: /tmp/x.db\n"
            "brokers:\n  primary: {host: 127.0.0.1, port: 1883}\n"
            "zones:\n  - {id: gallery}\n  - {id: balcony}\n"
            "sensors:\n  - {id: pir-1, kind: motion, zones: [gallery]}\n")

    def test_check_config_lists_uncovered_zones(self):
        p = self.write("good.yaml", self.GOOD)
        r = self.run_node("check-config", p)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("uncovered zone: balcony", r.stdout)

    def test_broken_configs_name_file_line_and_field(self):
        cases = [
            (self.GOOD.replace("port: 1883", "port: http"), ":5: brokers.primary.port: expected an integer"),
            (self.GOOD.replace("site: louvre", "site: Louvre"), ":1: site:"),
            (self.GOOD.replace("node: n1\n", ""), "node: missing required key"),
            (self.GOOD.replace("zones: [gallery]", "zones: [attic]"), "covers zone \"attic\", which is not in zones"),
            (self.GOOD.replace("kind: motion", "kind: ufo"), "unknown event kind \"ufo\""),
            (self.GOOD + "heartbeat_perod: 5s\n", ":11: heartbeat_perod: unknown key"),
            (self.GOOD + "heartbeat_period: soon\n", "heartbeat_period:"),
            ("site: [louvre\n" + self.GOOD, "YAML syntax error"),
            (self.GOOD + "reporting_time: 1s\n", "must be longer than heartbeat_period"),
        ]
        for i, (text, needle) in enumerate(cases):
            p = self.write(f"bad{i}.yaml", text)
            for args in (["check-config", p], ["-c", p]):
                r = self.run_node(*args)
                self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
                self.assertIn(f"bad{i}.yaml", r.stderr)
                self.assertIn(needle, r.stderr, (i, r.stderr))

    def test_bad_arguments_exit_2(self):
        for args in (["-c"], ["frobnicate"], ["--speed", "fast", "-c", "x"],
                     ["check-config"], ["-c", "x", "--exit-after-scenario"]):
            r = self.run_node(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertTrue(r.stderr.strip(), args)
        r = self.run_node("check-config", self.h.path("missing.yaml"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.yaml", r.stderr)

    def test_scenario_errors_name_the_line(self):
        cfg = self.write("good.yaml", self.GOOD)
        scn = self.write("bad.scn", "# comment\n0 kind=motion\n+1 kind=warp\n")
        r = self.run_node("-c", cfg, "--scenario", scn)
        self.assertEqual(r.returncode, 2)
        self.assertIn("bad.scn:3: kind: unknown kind \"warp\"", r.stderr)


if __name__ == "__main__":
    unittest.main()
