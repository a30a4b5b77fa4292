"""Every link on TLS, with certificates from broker-config/vigie-keys:
node -> site broker, the bridge, relay -> central broker; signed events.
Plaintext is refused on those listeners."""

import json
import os
import stat
import subprocess
import unittest

from test_node import Injector, oks, pending_in_outbox
from test_relay_support import Relay, site_conf
from vigie_harness import SOURCE, HarnessTestCase, bin_path, try_connect, wait_for

KEYS = os.path.join(SOURCE, "broker-config", "vigie-keys")


class TlsTest(HarnessTestCase):
    def pki(self):
        out = self.h.path("pki")
        r = subprocess.run(["/usr/bin/python3", KEYS, "--out", out, "--site", "louvre",
                            "--post", "pp-1", "--node", "louvre/n1",
                            "--vigie-node", bin_path("vigie-node")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out

    def test_vigie_keys_is_idempotent_and_keeps_keys_private(self):
        out = self.pki()
        before = {}
        for root, _, files in os.walk(out):
            for f in files:
                p = os.path.join(root, f)
                with open(p, "rb") as fh:
                    before[p] = fh.read()
                if f.endswith(".key"):
                    self.assertEqual(stat.S_IMODE(os.stat(p).st_mode), 0o600, p)
        r = subprocess.run(["/usr/bin/python3", KEYS, "--out", out, "--site", "louvre",
                            "--post", "pp-1", "--node", "louvre/n1",
                            "--vigie-node", bin_path("vigie-node")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nothing to do", r.stdout)
        for p, data in before.items():
            with open(p, "rb") as fh:
                self.assertEqual(fh.read(), data, p)
        v = subprocess.run(["openssl", "verify", "-CAfile", f"{out}/ca/ca.crt",
                            f"{out}/brokers/central.crt", f"{out}/brokers/site-louvre.crt",
                            f"{out}/clients/bridge-louvre.crt", f"{out}/clients/relay.crt",
                            f"{out}/clients/post-pp-1.crt"], capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        bad = subprocess.run(["/usr/bin/python3", KEYS, "--out", out, "--site", "Louvre"],
                             capture_output=True, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--site \"Louvre\"", bad.stderr)

    def test_every_link_on_tls_end_to_end(self):
        pki = self.pki()
        ca = f"{pki}/ca/ca.crt"
        central = self.h.start_central(
            sites=["louvre"], tls_ca=ca,
            extra_args=["--cafile", ca, "--certfile", f"{pki}/brokers/central.crt",
                        "--keyfile", f"{pki}/brokers/central.key"])
        site = self.h.start_site(
            "louvre", central, tls_ca=ca,
            extra_args=["--cafile", ca, "--certfile", f"{pki}/brokers/site-louvre.crt",
                        "--keyfile", f"{pki}/brokers/site-louvre.key",
                        "--bridge-cafile", ca,
                        "--bridge-certfile", f"{pki}/clients/bridge-louvre.crt",
                        "--bridge-keyfile", f"{pki}/clients/bridge-louvre.key"])
        # The listeners speak TLS only: a plaintext client gets no CONNACK.
        self.assertIsNone(try_connect(central.host, central.port, "relay",
                                      central.password("relay"), timeout=1.0))
        self.assertIsNone(try_connect(site.host, site.port, "node",
                                      site.password("node"), timeout=1.0))
        self.assertEqual(central.connect_rc("relay"), 0)

        relay = Relay(self.h, central, sites=[site_conf("louvre")],
                      trust=f"{pki}/trust")
        with open(relay.conf) as f:
            cfg = json.load(f)
        cfg["broker"]["tls"] = {"ca": ca, "cert": f"{pki}/clients/relay.crt",
                                "key": f"{pki}/clients/relay.key"}
        with open(relay.conf, "w") as f:
            json.dump(cfg, f, indent=1)
        relay.start()

        d = self.h.path("n1")
        os.makedirs(d)
        sock, outbox = os.path.join(d, "node.sock"), os.path.join(d, "outbox.db")
        conf = os.path.join(d, "node.yaml")
        with open(conf, "w") as f:
            f.write("\n".join([
                "site: louvre", "node: n1", f"outbox: {outbox}", f"socket: {sock}",
                f"signing_key: {pki}/nodes/louvre-n1.key",
                "heartbeat_period: 1s", "reporting_time: 3s", "resend_timeout: 1s",
                "brokers:",
                f"  primary: {{host: 127.0.0.1, port: {site.port}, username: node, "
                f"password: \"{site.password('node')}\", tls: {{ca: {ca}}}}}",
            ]) + "\n")
        node = self.h.spawn("n1", [bin_path("vigie-node"), "-c", conf])
        inj = Injector(sock)
        for i in range(20):
            inj.send(f"kind=motion text=\"tls {i}\"")
        self.assertEqual(len(oks(inj.read_answers(20))), 20)
        inj.close()
        # Stored once by the relay (signature verified) and receipted back
        # through the TLS bridge: the node's outbox empties.
        wait_for(lambda: relay.count("SELECT count(*) FROM events") == 20, 20,
                 "20 events stored by the relay")
        wait_for(lambda: pending_in_outbox(outbox) == 0, 20, "receipts back over TLS")
        node.stop()
        self.assertEqual(node.returncode, 0)
        relay.stop()
        self.assertEqual(relay.stats().get("forged", 0), 0)


if __name__ == "__main__":
    unittest.main()
