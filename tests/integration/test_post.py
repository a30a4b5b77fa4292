"""vigie-post against a real central broker.

Plays the relay with paho: publishes Dispatches on vigie/v1/post/<post>/dispatch
as the relay would (QoS 1, the same id re-sent until acknowledged) and reads
what the post says on .../ack and .../state. The console runs in its JSON-lines
mode (stdout a pipe, commands on stdin), and once in its terminal mode on a
pseudo-terminal.
"""

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import threading
import time
import unittest

import vigie_harness as hh
from vigie_harness import HarnessTestCase, publish_sync, wait_for

POST = "p1"
DISPATCH = f"vigie/v1/post/{POST}/dispatch"
ACK = f"vigie/v1/post/{POST}/ack"
STATE = f"vigie/v1/post/{POST}/state"
OPERATOR = "Brigadier Dupont"


def pb():
    import vigie_pb2  # generated into $VIGIE_BUILD/generated/python
    return vigie_pb2


def dispatch(id_, incident=None, attempt=1, level=None, post=POST, pattern="",
             priority=None, zone_name="Galerie d'Apollon", **fields):
    """A serialized Dispatch as the relay sends it."""
    p = pb()
    if level is None:
        level = int(id_.rsplit("-l", 1)[1]) if "-l" in id_ else 1
    now = int(time.time() * 1e6)
    zone = p.Zone(id="apollo-gallery", name=zone_name, floor="1", facade="seine",
                  kind="gallery", location=p.Location(lat=48.86085, lon=2.337),
                  cameras=["cam-apollo-east", "cam-quai-3"],
                  action_plan="Close the Rotonde grille; guards to both ends.")
    d = p.Dispatch(id=id_, incident=incident if incident is not None else id_.rsplit("-l", 1)[0],
                   post=post, site="louvre", site_name="Musée du Louvre", zone=zone,
                   kind=p.KIND_GLASS_BREAK,
                   priority=p.PRIORITY_CRITICAL if priority is None else priority,
                   confirmed=True, first_event_us=now - 30_000_000, sent_us=now,
                   level=level, level_name="police", attempt=attempt, pattern=pattern,
                   attributes=[p.Attribute(key="tool", value="angle-grinder"),
                               p.Attribute(key="vehicle", value="lift-truck")],
                   **fields)
    return d.SerializeToString()


def post_state(payload):
    s = pb().PostState()
    s.ParseFromString(payload)
    return s


def decode_ack(payload):
    a = pb().Ack()
    a.ParseFromString(payload)
    return a


class PostProc(hh.Proc):
    """vigie-post with its stdin and stdout as pipes (the harness's Proc gives
    /dev/null and a log file): commands go in, JSON lines come out and are
    parsed by a reader thread. stderr goes to the harness log as usual."""

    def __init__(self, harness, name, argv):
        super().__init__(harness, name, argv)
        self.lines = []
        self.bad_lines = []
        self._cond = threading.Condition()
        self._reader = None

    @classmethod
    def spawn(cls, harness, name, argv):
        if name in harness.procs:
            raise ValueError(f"a process named {name!r} exists already")
        p = cls(harness, name, argv)
        harness.procs[name] = p
        return p.start()

    def start(self):
        if self.alive():
            raise RuntimeError(f"{self.name} is already running")
        argv = self.argv
        if hh.SETPRIV:
            argv = [hh.SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        with open(self.log_path, "ab") as log:
            self.starts += 1
            log.write(f"==== harness: start #{self.starts} of {self.name}: "
                      f"{' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=log, start_new_session=True)
        self.harness._record_pid(self)
        with self._cond:
            self.lines = []
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,),
                                        daemon=True)
        self._reader.start()
        return self

    def _read(self, stream):
        # From a descriptor of our own, not the buffered stream: CPython
        # 3.11's BufferedReader, read in this thread while the test thread
        # closes or drops it, fails with "PyMemoryView_FromBuffer():
        # info->buf must not be NULL" and this thread would die silently
        # (seen in CI). The pipe ends for us when the post exits.
        fd = os.dup(stream.fileno())
        pending = b""
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += chunk
                while b"\n" in pending:
                    raw, pending = pending.split(b"\n", 1)
                    self._take(raw + b"\n")
        finally:
            os.close(fd)
        if pending:
            self._take(pending)

    def _take(self, raw):
        try:
            obj = json.loads(raw)
        except ValueError:
            with self._cond:
                self.bad_lines.append(raw)
                self._cond.notify_all()
            return
        with self._cond:
            self.lines.append(obj)
            self._cond.notify_all()

    def send(self, line):
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def objects(self, type_=None, **match):
        with self._cond:
            return [o for o in self.lines
                    if (type_ is None or o.get("type") == type_)
                    and all(o.get(k) == v for k, v in match.items())]

    def wait_line(self, type_, timeout=10.0, count=1, **match):
        """Wait until `count` lines of `type_` matching `match` came; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [o for o in self.lines if o.get("type") == type_
                       and all(o.get(k) == v for k, v in match.items())]
                if len(got) >= count:
                    return got
                if not self.alive():
                    raise AssertionError(f"{self.name} exited ({self.returncode}) waiting for "
                                         f"{type_} {match}:\n{self.log_tail(20)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {count} {type_} line(s) "
                                         f"{match}; got {self.lines}")
                self._cond.wait(min(left, 0.1))

    def ask(self, command, type_, timeout=10.0):
        """Send a command and wait for the next line of `type_`."""
        before = len(self.objects(type_))
        self.send(command)
        return self.wait_line(type_, timeout, count=before + 1)[-1]

    def stop(self, timeout=10.0):
        code = super().stop(timeout)
        self._close_pipes()
        return code

    def kill9(self):
        code = super().kill9()
        self._close_pipes()
        return code

    def wait_exit(self, timeout=10.0):
        code = super().wait_exit(timeout)
        self._close_pipes()
        return code

    def _close_pipes(self):
        if self.popen is None:
            return
        for f in (self.popen.stdin, self.popen.stdout):
            try:
                if f and not f.closed:
                    f.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(5)


class PtyProc(hh.Proc):
    """vigie-post on a pseudo-terminal: its stdin, stdout and stderr are the
    slave side, the test reads the screen from the master."""

    def __init__(self, harness, name, argv):
        super().__init__(harness, name, argv)
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.set_blocking(self.master, False)
        self.screen = b""

    @classmethod
    def spawn(cls, harness, name, argv):
        if name in harness.procs:
            raise ValueError(f"a process named {name!r} exists already")
        p = cls(harness, name, argv)
        harness.procs[name] = p
        return p

    def start(self):
        argv = self.argv
        if hh.SETPRIV:
            argv = [hh.SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        env = dict(os.environ, TERM="xterm-256color")
        self.starts += 1
        self.popen = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave,
                                      stderr=self.slave, start_new_session=True, env=env)
        self.harness._record_pid(self)
        return self

    def pump(self, seconds=0.0):
        deadline = time.monotonic() + seconds
        while True:
            r, _, _ = select.select([self.master], [], [], 0.02)
            if r:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                self.screen += data
            if time.monotonic() >= deadline and not r:
                return self.screen

    def wait_screen(self, needle, timeout=10.0):
        def seen():
            self.pump()
            return needle in self.screen
        wait_for(seen, timeout, f"{needle!r} on the console's screen")

    def type(self, data):
        os.write(self.master, data)

    def lflag(self):
        return termios.tcgetattr(self.slave)[3]

    def log_text(self):
        return self.screen.decode(errors="replace")

    def close_pty(self):
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class PostTest(HarnessTestCase):

    def setUp(self):
        super().setUp()
        self.binary = hh.bin_path("vigie-post")
        self.central = self.h.start_central(posts=[POST])
        self.acks = self.h.subscriber(self.central, "relay", [ACK], name="relay-acks")
        self.relay = self.h.client(self.central, "relay")

    # helpers

    def flags(self):
        return ["--host", self.central.host, "--port", str(self.central.port),
                "--post", POST, "--user", f"post-{POST}",
                "--password", self.central.password(f"post-{POST}")] + self.central.tls_args()

    def write_config(self, operator=OPERATOR):
        path = self.h.path("post.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"post: {POST}\n"
                    f"name: \"Préfecture de police, salle 1\"\n"
                    + (f"operator: {operator}\n" if operator else "")
                    + "keep_acked: 10m\n"
                    f"broker:\n"
                    f"  host: {self.central.host}\n"
                    f"  port: {self.central.port}\n"
                    f"  username: post-{POST}\n"
                    f"  password: \"{self.central.password(f'post-{POST}')}\"\n"
                    f"  keepalive: 5\n"
                    + self.central.tls_yaml_block())
        return path

    def start_post(self, name="post", args=None):
        argv = [self.binary, "--json"] + (args if args is not None
                                          else ["-c", self.write_config()])
        p = PostProc.spawn(self.h, name, argv)
        p.wait_line("status", connected=True)
        return p

    def retained_state(self, want_status, timeout=10.0, reason=None):
        """A fresh subscriber sees the retained PostState with `want_status`."""
        def check():
            sub = hh.Subscriber(self.central.host, self.central.port, "relay",
                                self.central.password("relay"), [STATE], name="late-joiner",
                                ca=self.central.tls_ca)
            try:
                ms = sub.wait_for(lambda ms: ms, timeout=2.0, what="the retained post state")
                st = post_state(ms[-1].payload)
                if ms[-1].retain and st.status == want_status and \
                        (reason is None or st.reason == reason):
                    return st
                return None
            except AssertionError:
                return None
            finally:
                sub.close()
        return wait_for(check, timeout, f"retained PostState status {want_status} ({reason})")

    def relay_sends(self, payload):
        publish_sync(self.relay, DISPATCH, payload)

    # tests

    def test_dispatch_once_and_ack_from_stdin(self):
        p = self.start_post()
        # Birth: retained ONLINE with name and version.
        st = self.retained_state(pb().POST_ONLINE)
        self.assertEqual(st.post, POST)
        self.assertEqual(st.name, "Préfecture de police, salle 1")
        self.assertTrue(st.version)

        # The relay sends, then re-sends the same id until acknowledged.
        self.relay_sends(dispatch("louvre-17-l2", attempt=1))
        first = p.wait_line("dispatch", id="louvre-17-l2")[0]
        self.relay_sends(dispatch("louvre-17-l2", attempt=2))
        lines = p.wait_line("dispatch", count=2, id="louvre-17-l2")
        self.assertEqual([(o["new"], o["attempt"]) for o in lines], [(True, 1), (False, 2)])
        # Scripts rely on these fields, in this order.
        self.assertEqual(list(first)[:13],
                         ["type", "id", "incident", "site", "zone", "kind", "priority",
                          "confirmed", "level", "attempt", "first_event_us", "age_s",
                          "pattern"])
        self.assertEqual(first["incident"], "louvre-17")
        self.assertEqual(first["site"], "louvre")
        self.assertEqual(first["zone"], "apollo-gallery")
        self.assertEqual(first["kind"], "glass_break")
        self.assertEqual(first["priority"], "critical")
        self.assertIs(first["confirmed"], True)
        self.assertEqual(first["level"], 2)
        self.assertIsNone(first["pattern"])
        self.assertGreaterEqual(first["age_s"], 29)
        # Where exactly, and what to do.
        self.assertEqual(first["zone_name"], "Galerie d'Apollon")
        self.assertEqual(first["facade"], "seine")
        self.assertEqual(first["cameras"], ["cam-apollo-east", "cam-quai-3"])
        self.assertAlmostEqual(first["location"]["lat"], 48.86085, places=5)
        self.assertEqual(first["attributes"][0], {"key": "tool", "value": "angle-grinder"})
        self.assertIn("Rotonde", first["action_plan"])

        # A redelivered identical copy changes nothing; the queue has one entry.
        self.relay_sends(dispatch("louvre-17-l2", attempt=2))
        stats = p.ask("stats", "stats")
        self.assertEqual(stats["new"], 1)
        self.assertEqual(stats["queue"], 1)
        before = len(p.objects("dispatch"))
        p.send("list")
        listed = p.wait_line("dispatch", count=before + 1)[before:]
        self.assertEqual([(o["id"], o["attempt"]) for o in listed], [("louvre-17-l2", 2)])

        # Acknowledge on stdin: the Ack reaches the relay with every field.
        p.send("ack louvre-17-l2")
        line = p.wait_line("ack", dispatch="louvre-17-l2")[0]
        self.assertEqual(line["by"], OPERATOR)
        self.assertEqual(line["incident"], "louvre-17")
        msg = self.acks.wait_for_count(1, topic=ACK)[0]
        ack = decode_ack(msg.payload)
        self.assertEqual((ack.dispatch, ack.incident, ack.post, ack.by, ack.source),
                         ("louvre-17-l2", "louvre-17", POST, OPERATOR, "post"))
        self.assertLess(abs(ack.time_us - time.time() * 1e6), 60e6)
        self.assertEqual(msg.qos, 1)

        # Twice is refused; an unknown id is refused; both say why.
        err = p.ask("ack louvre-17-l2", "error")
        self.assertIn("already", err["error"])
        err = p.ask("ack nope-l1", "error")
        self.assertIn("no dispatch", err["error"])
        err = p.ask("frobnicate", "error")
        self.assertIn("unknown command", err["error"])
        # A name given with the command wins over the configured one.
        self.relay_sends(dispatch("orsay-3-l1"))
        p.wait_line("dispatch", id="orsay-3-l1")
        p.send("ack orsay-3-l1 Capitaine Martin")
        self.assertEqual(p.wait_line("ack", dispatch="orsay-3-l1")[0]["by"], "Capitaine Martin")

        # A new escalation level is a new id; a pattern dispatch is marked.
        self.relay_sends(dispatch("louvre-17-l3", attempt=1))
        l3 = p.wait_line("dispatch", id="louvre-17-l3")[0]
        self.assertEqual((l3["new"], l3["level"], l3["acked"]), (True, 3, False))
        self.relay_sends(dispatch("pattern-facades-l1", incident="pattern-facades",
                                  pattern="facade-lifts"))
        pat = p.wait_line("dispatch", id="pattern-facades-l1")[0]
        self.assertEqual(pat["pattern"], "facade-lifts")
        # Sent here as the backup of a post that is offline: said so.
        self.relay_sends(dispatch("lyon-4-l2", backup_for="pp-lyon"))
        self.assertEqual(p.wait_line("dispatch", id="lyon-4-l2")[0]["backup_for"], "pp-lyon")

        # The relay re-sends a dispatch it did not see acked: the post acks again.
        # (The ack of orsay-3-l1 reaches the relay's subscriber after the post
        # has its PUBACK: wait for it, or it may land after clear().)
        self.acks.wait_for_count(2, topic=ACK)
        self.acks.clear()
        time.sleep(5.2)  # past the post's repeat guard, see post.c ACK_REPEAT_MS
        self.relay_sends(dispatch("louvre-17-l2", attempt=7))
        again = decode_ack(self.acks.wait_for_count(1, topic=ACK)[0].payload)
        self.assertEqual((again.dispatch, again.by), ("louvre-17-l2", OPERATOR))

        p.send("quit")
        self.assertEqual(p.wait_exit(10), 0)
        st = self.retained_state(pb().POST_OFFLINE, reason="shutdown")
        self.assertEqual(st.name, "Préfecture de police, salle 1")

    def test_quit_right_after_an_ack_is_not_announced_as_lwt(self):
        # Regression: the PUBACK of an Ack sent just before quitting was
        # still in flight or unread when libmosquitto closed the socket;
        # the broker got RST, dropped the OFFLINE "shutdown" and the
        # DISCONNECT it had not read yet, and published the will ("lwt").
        p = self.start_post(args=self.flags() + ["--by", OPERATOR])
        for i in range(8):
            if i:
                p.start()
                p.wait_line("status", connected=True)
            self.relay_sends(dispatch(f"louvre-{i}-l1"))
            p.wait_line("dispatch", id=f"louvre-{i}-l1")
            p.send(f"ack louvre-{i}-l1\nquit")
            self.assertEqual(p.wait_exit(10), 0)
            st = self.retained_state(pb().POST_OFFLINE, timeout=5)
            self.assertEqual(st.reason, "shutdown", f"round {i}")
        acks = [decode_ack(m.payload).dispatch for m in self.acks.received(ACK)]
        self.assertEqual(sorted(acks), [f"louvre-{i}-l1" for i in range(8)])

    def test_kill9_leaves_lwt(self):
        p = self.start_post(args=self.flags())
        self.retained_state(pb().POST_ONLINE)
        p.kill9()
        st = self.retained_state(pb().POST_OFFLINE, reason="lwt", timeout=20)
        self.assertEqual(st.post, POST)

    def test_bad_payloads_counted_post_keeps_running(self):
        p = self.start_post(args=self.flags() + ["--by", OPERATOR])
        self.relay_sends(b"\xff\xfe not protobuf at all")
        self.relay_sends(b"")  # decodes as an empty Dispatch: no id
        self.relay_sends(dispatch("x-l1", post="another-post"))
        self.relay_sends(dispatch("bad id\x1b[2J-l1"))
        self.relay_sends(bytes(range(256)) * 64)
        # Each is dropped with its reason, counted, and the post goes on.
        def bad_count():
            return p.ask("stats", "stats")["bad_payloads"] >= 5
        wait_for(bad_count, 10, "5 bad payloads counted")
        self.relay_sends(dispatch("louvre-1-l1"))
        self.assertEqual(p.wait_line("dispatch", id="louvre-1-l1")[0]["new"], True)
        stats = p.ask("stats", "stats")
        self.assertEqual((stats["bad_payloads"], stats["queue"]), (5, 1))
        self.assertTrue(p.alive())
        log = p.log_text()
        self.assertIn("not a Dispatch", log)
        self.assertIn("names another post", log)
        self.assertNotIn("\x1b[2J", log)
        self.assertEqual(p.bad_lines, [])

    def test_dispatches_while_away_arrive_on_return(self):
        p = self.start_post(args=self.flags())
        p.send("quit")
        self.assertEqual(p.wait_exit(10), 0)
        # The console is closed; the relay goes on sending.
        self.relay_sends(dispatch("louvre-5-l1"))
        p.start()
        p.wait_line("status", connected=True)
        line = p.wait_line("dispatch", id="louvre-5-l1")[0]
        self.assertTrue(line["new"])
        self.assertTrue(p.objects("status", connected=True)[0]["session_present"])
        # Also after a crash.
        p.kill9()
        self.relay_sends(dispatch("louvre-6-l1"))
        p.start()
        p.wait_line("dispatch", id="louvre-6-l1")

    def test_ack_command(self):
        def run(name, args, timeout=20):
            proc = self.h.spawn(name, [self.binary, "ack"] + args)
            return proc.wait_exit(timeout), proc

        # The incident is derived from "<incident>-l<level>".
        code, proc = run("ack-1", ["louvre-9-l2", "--by", "Capitaine Martin", "--json"]
                         + self.flags())
        self.assertEqual(code, 0, proc.log_tail())
        ack = decode_ack(self.acks.wait_for_count(1, topic=ACK)[0].payload)
        self.assertEqual((ack.dispatch, ack.incident, ack.post, ack.by, ack.source),
                         ("louvre-9-l2", "louvre-9", POST, "Capitaine Martin", "post"))
        out = [json.loads(l) for l in proc.log_text().splitlines() if l.startswith("{")]
        self.assertEqual(out[0]["type"], "ack")
        self.assertEqual(out[0]["incident"], "louvre-9")

        # --incident wins; the config file gives the operator name.
        code, proc = run("ack-2", ["custom-dispatch", "--incident", "inc-42", "-c",
                                   self.write_config()])
        self.assertEqual(code, 0, proc.log_tail())
        ack = decode_ack(self.acks.wait_for_count(2, topic=ACK)[1].payload)
        self.assertEqual((ack.dispatch, ack.incident, ack.by),
                         ("custom-dispatch", "inc-42", OPERATOR))

        # Bad usage: 2.
        self.assertEqual(run("ack-3", ["custom-dispatch", "--by", "X"] + self.flags())[0], 2)
        self.assertEqual(run("ack-4", ["louvre-9-l2"] + self.flags())[0], 2)
        self.assertEqual(run("ack-5", ["louvre-9-l2", "--by", "X", "--port", "0"])[0], 2)
        self.assertEqual(run("ack-6", [])[0], 2)
        # Failure: 1 (refused by the broker; nothing listening).
        bad = self.flags()
        bad[bad.index("--password") + 1] = "wrong"
        self.assertEqual(run("ack-7", ["louvre-9-l2", "--by", "X", "--timeout", "5"] + bad)[0], 1)
        self.assertEqual(run("ack-8", ["louvre-9-l2", "--by", "X", "--timeout", "1",
                                       "--post", POST, "--port", str(hh.free_port())])[0], 1)
        self.assertEqual(self.acks.count(ACK), 2)

    def test_check_config(self):
        proc = self.h.spawn("check", [self.binary, "check-config", self.write_config()])
        self.assertEqual(proc.wait_exit(10), 0)
        bad = self.h.path("bad.yaml")
        with open(bad, "w") as f:
            f.write("post: p1\nbroker:\n  host: x\n  prot: 5\n")
        proc = self.h.spawn("check-bad", [self.binary, "check-config", bad])
        self.assertEqual(proc.wait_exit(10), 2)
        self.assertIn("bad.yaml:4: broker.prot", proc.log_text())

    def test_terminal_console(self):
        p = PtyProc.spawn(self.h, "post-tty", [self.binary] + self.flags())
        self.addCleanup(p.close_pty)
        saved = p.lflag()
        self.assertTrue(saved & termios.ICANON)
        p.start()
        p.wait_screen(b"[ONLINE]")
        # Raw mode while running.
        self.assertFalse(p.lflag() & termios.ICANON)
        self.assertFalse(p.lflag() & termios.ECHO)
        self.retained_state(pb().POST_ONLINE)
        # A zone name carrying a terminal escape shows, defused.
        self.relay_sends(dispatch("louvre-17-l2", zone_name="Galerie \x1b]0;pwned\x07d'Apollon"))
        p.wait_screen("Galerie ?]0;pwned?d'Apollon".encode())
        self.assertNotIn(b"\x1b]0;pwned", p.screen)
        p.wait_screen(b"Close the Rotonde grille")
        p.wait_screen(b"cam-apollo-east, cam-quai-3")
        # Acknowledge: with no operator configured, the name is the only question.
        p.type(b"a")
        p.wait_screen(b"Operator name")
        p.type(b"Agent Pty\r")
        ack = decode_ack(self.acks.wait_for_count(1, topic=ACK)[0].payload)
        self.assertEqual((ack.dispatch, ack.by), ("louvre-17-l2", "Agent Pty"))
        p.wait_screen(b"acked by Agent Pty")
        # Nothing open: q quits at once, the terminal is given back.
        p.type(b"q")
        self.assertEqual(p.wait_exit(10), 0)
        p.pump(0.2)
        self.assertIn(b"\x1b[?1049l", p.screen)
        self.assertEqual(p.lflag(), saved)
        self.retained_state(pb().POST_OFFLINE, reason="shutdown")

    def test_terminal_restored_on_sigterm(self):
        p = PtyProc.spawn(self.h, "post-tty", [self.binary] + self.flags())
        self.addCleanup(p.close_pty)
        saved = p.lflag()
        p.start()
        p.wait_screen(b"[ONLINE]")
        self.relay_sends(dispatch("louvre-2-l1"))
        p.wait_screen(b"NOT ACKED")
        # Open dispatch: q asks first, and anything but y keeps running.
        p.type(b"q")
        p.wait_screen(b"Quit anyway?")
        p.type(b"n")
        time.sleep(0.3)
        self.assertTrue(p.alive())
        os.kill(p.pid, signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0)
        self.assertEqual(p.lflag(), saved)


if __name__ == "__main__":
    unittest.main()
