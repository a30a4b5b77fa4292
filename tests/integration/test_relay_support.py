"""Helpers for vigie-relay's integration tests, and the relay's command-line
tests (check-config, audit, incidents) which need no broker.

    relay = Relay(self.h, central, posts=[...], escalation=[...], sites=[...])
    relay.start()                       # waits until it is connected
    relay.rows("SELECT count(*) FROM events")
    relay.audit(incident_id)            # `vigie-relay audit --incident`
    relay.stats()                       # the last "stats:" line, parsed

The config is written as JSON, which is YAML too."""

import json
import os
import re
import socket
import sqlite3
import subprocess
import time
import unittest

from vigie_harness import (HarnessTestCase, bin_path, publish_sync, wait_for,
                           make_signed_event)


def pb():
    import vigie_pb2  # generated at build time
    return vigie_pb2


def event(site, node, boot, seq, kind=None, state=None, **fields):
    p = pb()
    return make_signed_event(site, node, boot, seq,
                             kind=p.KIND_TEST if kind is None else kind,
                             state=p.STATE_TEST if state is None else state, **fields)


def heartbeat(site, node, boot, reporting_ms=10000, hb_seq=1, receipted_seq=0):
    """A node's heartbeat; `receipted_seq`: it holds receipts of `boot` that far."""
    p = pb()
    body = p.HeartbeatBody(site=site, node=node, boot_id=boot, time_us=int(time.time() * 1e6),
                           period_ms=max(100, reporting_ms // 3), reporting_time_ms=reporting_ms,
                           path="primary", hb_seq=hb_seq,
                           receipted_boot=boot if receipted_seq else 0,
                           receipted_seq=receipted_seq)
    return p.Heartbeat(body=body.SerializeToString()).SerializeToString()


def post_state(post, online):
    p = pb()
    return p.PostState(post=post, status=p.POST_ONLINE if online else p.POST_OFFLINE,
                       time_us=int(time.time() * 1e6), name=post,
                       reason="" if online else "lwt").SerializeToString()


def ack(post, dispatch, by="dupont", incident=""):
    p = pb()
    return p.Ack(dispatch=dispatch, incident=incident, post=post, by=by,
                 time_us=int(time.time() * 1e6), source="post").SerializeToString()


def receipts(sub, node=None):
    """Receipts seen by a subscriber, as (node, boot_id, seq)."""
    p = pb()
    out = []
    for m in sub.received("vigie/v1/relay/+/receipt/+"):
        r = p.Receipt.FromString(m.payload)
        if node is None or r.node == node:
            out.append((r.node, r.boot_id, r.seq))
    return out


def highest_receipt(sub, node, boot):
    seqs = [s for n, b, s in receipts(sub, node) if b == boot]
    return max(seqs) if seqs else 0


def dispatches(sub, post=None):
    p = pb()
    return [p.Dispatch.FromString(m.payload)
            for m in sub.received(f"vigie/v1/post/{post or '+'}/dispatch")]


def incidents(sub):
    """Latest retained Incident per id."""
    p = pb()
    latest = {}
    for m in sub.received("vigie/v1/incident/+"):
        if m.payload:
            i = p.Incident.FromString(m.payload)
            latest[i.id] = i
    return latest


class Relay:
    """A vigie-relay process with its config and database in the harness
    directory."""

    def __init__(self, h, central, name="relay", posts=(), escalation=None, sites=(),
                 log_level="info", **options):
        self.h = h
        self.central = central
        self.name = name
        self.db = h.path(f"{name}.db")
        self.conf = h.path(f"{name}.yaml")
        cfg = {
            "id": name,
            "database": self.db,
            "broker": {"host": central.host, "port": central.port, "username": "relay",
                       "password": central.password("relay"), "client_id": f"vigie-{name}",
                       "session_expiry": "1h"},
            "posts": [p if isinstance(p, dict) else {"id": p} for p in posts],
            "sites": list(sites),
        }
        # TLS as the broker speaks it (the harness's brokers: always).
        tls = central.tls_conf() if hasattr(central, "tls_conf") else None
        if tls:
            cfg["broker"]["tls"] = tls
        if escalation is not None:
            cfg["escalation"] = escalation
        cfg.update(options)
        with open(self.conf, "w") as f:
            json.dump(cfg, f, indent=1)
        self.proc = h._new_proc(name, [bin_path("vigie-relay"), "-c", self.conf,
                                       "--log-level", log_level])

    def start(self, wait=True, timeout=10.0):
        connected = self.log().count("connected to the central broker (")
        self.proc.start()
        if wait:
            wait_for(lambda: self.proc.check_running()
                     or self.log().count("connected to the central broker (") > connected,
                     timeout, f"{self.name} to connect")
        return self

    def stop(self):
        return self.proc.stop()

    def kill9(self):
        return self.proc.kill9()

    def log(self):
        return self.proc.log_text()

    def rows(self, sql, *args):
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def count(self, sql, *args):
        return self.rows(sql, *args)[0][0]

    def audit(self, incident):
        return subprocess.run([bin_path("vigie-relay"), "audit", "--db", self.db,
                               "--incident", incident], capture_output=True, text=True,
                              timeout=30)

    def stats(self):
        """The last stats line as a dict of counters (after stop())."""
        lines = [l for l in self.log().splitlines() if " stats: " in l]
        if not lines:
            return {}
        line = lines[-1]
        out = {}
        for value, name in re.findall(r"(\d+) ([a-z ]+?)(?=[,)(]|$)", line.split("stats: ", 1)[1]):
            out[name.strip()] = int(value)
        return out


def site_conf(site, zones=(), nodes=(), **extra):
    s = {"id": site, "name": site.capitalize(), "zones": list(zones), "nodes": list(nodes)}
    s.update(extra)
    return s


class RelayCommandLineTest(HarnessTestCase):
    """vigie-relay's commands that need no broker."""

    def run_relay(self, *args):
        return subprocess.run([bin_path("vigie-relay")] + list(args), capture_output=True,
                              text=True, timeout=30)

    def test_check_config_reports_file_line_field(self):
        path = self.h.path("bad.yaml")
        with open(path, "w") as f:
            f.write("id: r\ndatabase: /tmp/x.db\nbroker: {host: h, port: 1}\n"
                    "posts: [{id: p1}]\n"
                    "escalation:\n  - {name: police, post: p2, ack_deadline: 1m}\n")
        r = self.run_relay("check-config", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"{path}:6: escalation[0].post: post \"p2\" is not in posts", r.stderr)
        example = os.path.join(os.environ.get("VIGIE_SOURCE", "../.."), "examples", "relay.yaml")
        with open(example) as f:
            text = f.read().replace("/etc/vigie/relay.password", path).replace(
                "rules: patterns.yaml", f"rules: {os.path.dirname(example)}/patterns.yaml")
        good = self.h.path("good.yaml")
        with open(good, "w") as f:
            f.write(text)
        r = self.run_relay("check-config", good)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("site louvre: ladder site-security", r.stdout)

    def test_audit_of_unknown_incident(self):
        r = self.run_relay("audit", "--db", self.h.path("none.db"), "--incident", "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot open", r.stderr)
        r = self.run_relay("audit", "--incident", "x")
        self.assertEqual(r.returncode, 2)
        r = self.run_relay("bogus")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()


class NodeSocket:
    """The node's event socket: one line in, `OK <boot> <seq>` out."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise AssertionError(f"the node closed its socket after {line!r}")
            self.buf += data
        reply, self.buf = self.buf.split(b"\n", 1)
        words = reply.decode().split()
        if words[:1] != ["OK"]:
            raise AssertionError(f"the node refused {line!r}: {reply!r}")
        return int(words[1]), int(words[2])

    def close(self):
        self.sock.close()
