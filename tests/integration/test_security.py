"""Signed events and heartbeats (issue 5, item 4). Real mosquitto on
127.0.0.1, the real relay with a trust store of node keys made by
`vigie-node keygen`; forgers are MQTT clients with a site bridge's rights
(what a compromised machine inside a museum has).

- genuine signed events are stored and receipted; forged ones (unknown key,
  bad signature, another node's key, an event replayed onto another node's
  topic, other content under a stored identity, an old boot beyond the
  replay window, unsigned) are rejected, raise ONE security incident for the
  site, and genuine events keep flowing;
- an identical repeat is a harmless re-send: re-receipted, no incident;
- an older boot's unreceipted events, re-sent after a node restart, are
  accepted;
- forged or replayed heartbeats do not keep a silent node alive;
- a real vigie-node with `signing_key` is receipted end to end."""

import hashlib
import os
import subprocess
import time
import unittest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigie_harness import HarnessTestCase, bin_path, publish_many, publish_sync, wait_for
from test_relay_support import Relay, highest_receipt, incidents, pb, receipts, site_conf

EV = "vigie/v1/site/{}/node/{}/event"
HB = "vigie/v1/site/{}/node/{}/heartbeat"


class Key:
    """A node key made by `vigie-node keygen`, usable from Python."""

    def __init__(self, h, site, node, trust_dir=None):
        self.site, self.node = site, node
        self.path = h.path(f"{site}-{node}.key")
        subprocess.run([bin_path("vigie-node"), "keygen", "--site", site, "--node", node,
                        "--out", self.path], check=True, capture_output=True, timeout=30)
        with open(self.path) as f:
            seed = bytes.fromhex(f.read().split()[1])
        self.sk = Ed25519PrivateKey.from_private_bytes(seed)
        with open(self.path + ".pub") as f:
            self.line = f.read()
        self.key_id = self.line.split()[0]
        pk = bytes.fromhex(self.line.split()[3])
        # The key id is BLAKE2b-256 of the public key, first 8 bytes in hex.
        assert hashlib.blake2b(pk, digest_size=32).digest()[:8].hex() == self.key_id
        if trust_dir:
            with open(os.path.join(trust_dir, f"{site}-{node}.pub"), "w") as f:
                f.write(self.line)

    def sign(self, data):
        return self.sk.sign(data)


def ev_bytes(site, node, boot, seq, time_us=None, **fields):
    p = pb()
    return p.Event(site=site, node=node, boot_id=boot, seq=seq,
                   time_us=time_us or int(time.time() * 1e6),
                   kind=fields.pop("kind", p.KIND_TEST), state=fields.pop("state", p.STATE_TEST),
                   **fields).SerializeToString()


def signed(key, inner, key_id=None, tamper=False):
    p = pb()
    sig = key.sign(inner) if key else b""
    if tamper:
        sig = bytes([sig[0] ^ 1]) + sig[1:]
    return p.SignedEvent(event=inner, signature=sig,
                         key_id=key_id if key_id is not None else (key.key_id if key else "")
                         ).SerializeToString()


def signed_hb(key, site, node, boot, hb_seq, reporting_ms=1000, tamper=False, receipted_seq=0):
    p = pb()
    body = p.HeartbeatBody(site=site, node=node, boot_id=boot, time_us=int(time.time() * 1e6),
                           period_ms=max(100, reporting_ms // 4), reporting_time_ms=reporting_ms,
                           path="primary", hb_seq=hb_seq,
                           receipted_boot=boot if receipted_seq else 0,
                           receipted_seq=receipted_seq).SerializeToString()
    sig = key.sign(body) if key else b""
    if tamper:
        sig = bytes([sig[0] ^ 1]) + sig[1:]
    return p.Heartbeat(body=body, signature=sig, key_id=key.key_id if key else "").SerializeToString()


def security_incidents(sub, site):
    p = pb()
    return [i for i in incidents(sub).values() if i.kind == p.KIND_SECURITY and i.site == site]


class SignedTest(HarnessTestCase):

    def setUp(self):
        super().setUp()
        self.central = self.h.start_central(sites=["louvre", "orsay"], posts=["p1"])
        self.trust = self.h.path("trust.d")
        os.makedirs(self.trust)
        self.n1 = Key(self.h, "louvre", "n1", self.trust)
        self.n2 = Key(self.h, "louvre", "n2", self.trust)
        self.o1 = Key(self.h, "orsay", "n1", self.trust)
        # Made like the others but never put in the trust store.
        self.stranger = Key(self.h, "louvre", "intruder")
        self.watch = self.h.subscriber(self.central, "dashboard",
                                       ["vigie/v1/incident/#", "vigie/v1/relay/#"])

    def relay(self, **kw):
        return Relay(self.h, self.central, trust=self.trust, **kw).start()

    def test_forgeries_rejected_one_incident_genuine_flow(self):
        relay = self.relay()
        self.assertIn("signatures checked against 3 key(s)", relay.log())
        louvre = self.h.client(self.central, "bridge-louvre")
        sub = self.h.subscriber(self.central, "bridge-louvre", ["vigie/v1/relay/louvre/#"])
        genuine = {s: signed(self.n1, ev_bytes("louvre", "n1", 5, s)) for s in range(1, 11)}
        publish_many(louvre, [(EV.format("louvre", "n1"), genuine[s]) for s in range(1, 6)])
        wait_for(lambda: highest_receipt(sub, "n1", 5) == 5, 10, "genuine events receipted")

        # An identical repeat is a re-send: receipted again, no incident.
        before = len(receipts(sub, "n1"))
        publish_sync(louvre, EV.format("louvre", "n1"), genuine[3])
        wait_for(lambda: len(receipts(sub, "n1")) > before, 10, "the repeat re-receipted")

        old_us = int((time.time() - 8 * 86400) * 1e6)
        forgeries = [
            # unknown key
            signed(self.stranger, ev_bytes("louvre", "n1", 5, 6, text="stranger")),
            # bad signature
            signed(self.n1, ev_bytes("louvre", "n1", 5, 6, text="bad sig"), tamper=True),
            # right key id, content changed after signing
            pb().SignedEvent(event=ev_bytes("louvre", "n1", 5, 6, text="edited"),
                             signature=self.n1.sign(ev_bytes("louvre", "n1", 5, 6)),
                             key_id=self.n1.key_id).SerializeToString(),
            # another node's key claiming n1
            signed(self.n2, ev_bytes("louvre", "n1", 5, 6, text="n2 as n1")),
            # a key id that exists, with the event of its owner, on n1's topic
            signed(self.n2, ev_bytes("louvre", "n2", 5, 1, text="n2 on n1's topic")),
            # other content under an identity already stored (seq 3)
            signed(self.n1, ev_bytes("louvre", "n1", 5, 3, text="disarm", kind=pb().KIND_BYPASS)),
            # unsigned
            signed(None, ev_bytes("louvre", "n1", 5, 6, text="unsigned")),
        ]
        publish_many(louvre, [(EV.format("louvre", "n1"), f) for f in forgeries])
        # Orsay's genuine event, replayed into louvre's tree.
        publish_sync(louvre, EV.format("louvre", "n1"),
                     signed(self.o1, ev_bytes("orsay", "n1", 1, 1)))
        # A newer boot, then an old boot never seen, captured 8 days ago.
        publish_sync(louvre, EV.format("louvre", "n1"), signed(self.n1, ev_bytes("louvre", "n1", 7, 1)))
        wait_for(lambda: highest_receipt(sub, "n1", 7) == 1, 10, "boot 7 receipted")
        publish_sync(louvre, EV.format("louvre", "n1"),
                     signed(self.n1, ev_bytes("louvre", "n1", 2, 1, time_us=old_us)))
        # But an older boot's unreceipted events, re-sent after a restart,
        # are accepted: boot 6 was never seen, its events are recent.
        publish_sync(louvre, EV.format("louvre", "n1"), signed(self.n1, ev_bytes("louvre", "n1", 6, 1)))
        wait_for(lambda: highest_receipt(sub, "n1", 6) == 1, 10, "older boot's re-send receipted")

        # Genuine events keep flowing.
        publish_many(louvre, [(EV.format("louvre", "n1"), genuine[s]) for s in range(6, 11)])
        wait_for(lambda: highest_receipt(sub, "n1", 5) == 10, 10, "genuine events after the attack")

        sec = wait_for(lambda: security_incidents(self.watch, "louvre"), 10, "a security incident")
        time.sleep(0.5)
        self.assertEqual(len(security_incidents(self.watch, "louvre")), 1,
                         "one incident for the whole attack")
        self.assertTrue(sec[0].trouble)
        self.assertEqual(security_incidents(self.watch, "orsay"), [])
        relay.stop()
        st = relay.stats()
        self.assertEqual(st["forged"], 5, st)   # stranger, bad sig, edited, n2 as n1, unsigned
        self.assertEqual(st["replayed"], 4, st)  # n2's topic, seq 3 edited, orsay's, old boot
        self.assertEqual(relay.count("SELECT count(*) FROM events"), 12)
        self.assertEqual(relay.count("SELECT count(*) FROM events WHERE boot_id = 2"), 0)
        self.assertEqual(relay.count("SELECT count(*) FROM events WHERE site = 'orsay'"), 0)
        log = relay.log()
        for why in ("unknown key id", "signature does not verify", "signed with the key of louvre/n2",
                    "published as louvre/n1", "stored already with other content",
                    "older than the replay window", "unsigned event"):
            self.assertIn(why, log)

    def test_forged_heartbeats_do_not_keep_a_silent_node_alive(self):
        relay = self.relay(sites=[site_conf("louvre", nodes=[{"id": "n1", "reporting_time": "1s"}])])
        louvre = self.h.client(self.central, "bridge-louvre")
        genuine = []
        for i in range(1, 6):
            b = signed_hb(self.n1, "louvre", "n1", 5, i)
            genuine.append(b)
            louvre.publish(HB.format("louvre", "n1"), b, qos=0)
            time.sleep(0.2)
        wait_for(lambda: "node louvre/n1" in relay.log() or relay.count(
            "SELECT count(*) FROM nodes") >= 1, 5, "the node seen")
        # The node goes silent (its link is cut); a forger keeps beating:
        # unknown key, bad signature, and the genuine heartbeats replayed.
        t0 = time.monotonic()
        forged = [signed_hb(self.stranger, "louvre", "n1", 5, 100),
                  signed_hb(self.n1, "louvre", "n1", 5, 101, tamper=True),
                  signed_hb(self.n2, "louvre", "n1", 5, 102)] + genuine
        i = 0
        while time.monotonic() - t0 < 3.0:
            louvre.publish(HB.format("louvre", "n1"), forged[i % len(forged)], qos=0)
            i += 1
            time.sleep(0.1)
        p = pb()
        lost = [x for x in incidents(self.watch).values()
                if x.kind == p.KIND_COMM_LOSS and x.subject == "node:n1"]
        self.assertTrue(lost, "comm loss raised despite the forged heartbeats")
        self.assertTrue(security_incidents(self.watch, "louvre"))
        relay.stop()
        st = relay.stats()
        self.assertGreater(st["forged"], 0, st)
        self.assertGreater(st["replayed"], 0, st)

    def test_only_a_signed_heartbeat_moves_receipts_past_a_gap(self):
        """A heartbeat's "receipted up to" makes a relay that lost its
        records skip a gap (test_relay_ingest): with a trust store, an
        unsigned one, accepted while signatures are not required, must not,
        or a forger could have events never stored receipted away."""
        relay = self.relay(require_signatures=False)
        louvre = self.h.client(self.central, "bridge-louvre")
        rsub = self.h.subscriber(self.central, "bridge-louvre", ["vigie/v1/relay/louvre/#"])
        publish_many(louvre, [(EV.format("louvre", "n1"),
                               signed(self.n1, ev_bytes("louvre", "n1", 7, s))) for s in (1, 2)])
        wait_for(lambda: highest_receipt(rsub, "n1", 7) >= 2, 10, "receipts up to 2")
        # Event 5 comes above a gap (3 and 4 never came).
        publish_many(louvre, [(EV.format("louvre", "n1"),
                               signed(self.n1, ev_bytes("louvre", "n1", 7, 5)))])
        unsigned_claim = signed_hb(None, "louvre", "n1", 7, 1, receipted_seq=4)
        for _ in range(3):
            publish_sync(louvre, HB.format("louvre", "n1"), unsigned_claim, qos=0)
        # The relay handles what it verifies in arrival order: by the
        # receipt of the genuine event 3, the claims were judged. Receipts
        # move one step: nothing skipped.
        publish_many(louvre, [(EV.format("louvre", "n1"),
                               signed(self.n1, ev_bytes("louvre", "n1", 7, 3)))])
        wait_for(lambda: highest_receipt(rsub, "n1", 7) >= 3, 10, "receipt of 3")
        self.assertEqual(highest_receipt(rsub, "n1", 7), 3)
        self.assertNotIn("the node holds receipts up to", relay.log())
        # Signed, the same claim is believed: 4 counts as stored, 5 joins.
        publish_sync(louvre, HB.format("louvre", "n1"),
                     signed_hb(self.n1, "louvre", "n1", 7, 2, receipted_seq=4), qos=0)
        wait_for(lambda: highest_receipt(rsub, "n1", 7) >= 5, 10, "receipts past the gap")
        self.assertIn("louvre/n1 boot 7: the node holds receipts up to #4", relay.log())

    def test_real_signed_node_end_to_end(self):
        site = self.h.start_site("louvre", self.central)
        relay = self.relay()
        scenario = os.path.join(os.environ.get("VIGIE_SOURCE", "../.."), "examples",
                                "scenarios", "routine.scn")
        conf = self.h.path("node.yaml")
        with open(conf, "w") as f:
            f.write(f"""site: louvre
node: n1
outbox: {self.h.path('n1.db')}
signing_key: {self.n1.path}
key_id: {self.n1.key_id}
heartbeat_period: 300ms
reporting_time: 2s
brokers:
  primary: {{host: 127.0.0.1, port: {site.port}, username: {site.node_user()}, password: "{site.password(site.node_user())}"{site.tls_yaml()}}}
""")
        node = self.h.spawn("node", [bin_path("vigie-node"), "-c", conf, "--scenario", scenario,
                                     "--speed", "100", "--exit-after-scenario"])
        self.assertEqual(node.wait_exit(30), 0, node.log_tail())
        self.assertIn(f"signing events and heartbeats with key {self.n1.key_id}", node.log_text())
        with open(scenario) as f:
            lines = [l for l in f if l.strip() and not l.startswith("#")]
        self.assertEqual(relay.count("SELECT count(*) FROM events WHERE node='n1'"), len(lines))
        relay.stop()
        st = relay.stats()
        self.assertEqual(st["forged"], 0, st)
        self.assertEqual(st["replayed"], 0, st)
        self.assertGreater(st["heartbeats"], 0, st)

    def test_node_refuses_a_key_readable_by_others(self):
        os.chmod(self.n1.path, 0o644)
        conf = self.h.path("node.yaml")
        with open(conf, "w") as f:
            f.write(f"site: louvre\nnode: n1\noutbox: {self.h.path('x.db')}\n"
                    f"signing_key: {self.n1.path}\n"
                    "brokers:\n  primary: {host: 127.0.0.1, port: 1}\n")
        r = subprocess.run([bin_path("vigie-node"), "check-config", conf], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("chmod 600", r.stderr)


if __name__ == "__main__":
    unittest.main()
