"""Intrusion panels over SIA DC-09: vigie-panel-sim -> vigie-node (TCP and
UDP, cleartext and AES) -> site broker -> bridge -> central, where
ReceiptPlayer (harness, test only) plays the relay's receipt role.

Every answer a panel gets is checked by the simulator (exit status 0 when
all are as the step expects); what reached the central is checked here.
"""

import os
import sqlite3
import subprocess
import time
import unittest

from vigie_harness import (HarnessTestCase, ReceiptPlayer, bin_path, free_port,
                           wait_for)
import vigie_pb2 as pb

KEY128 = "000102030405060708090A0B0C0D0E0F"
KEY256 = "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"


def panels_config(h, name, site, broker, tcp_port, udp_port, supervision=None,
                  extra_accounts=()):
    """A node config with a `panels:` section; returns (path, outbox)."""
    d = h.path(name)
    os.makedirs(d, exist_ok=True)
    outbox = os.path.join(d, "outbox.db")
    sup = f", supervision: {supervision}" if supervision else ""
    lines = [
        f"site: {site}", f"node: {name}", f"outbox: {outbox}",
        "heartbeat_period: 1s", "reporting_time: 3s", "resend_timeout: 1s",
        "failover_time: 30s",
        "brokers:",
        f"  primary: {{host: 127.0.0.1, port: {broker.port}, username: node, "
        f"password: \"{broker.password('node')}\", keepalive: 5{broker.tls_yaml()}}}",
        "zones:",
        "  - {id: gallery, name: Gallery}",
        "  - {id: balcony, name: Balcony}",
        "sensors:",
        "  - {id: gb-1, kind: glass_break, zones: [gallery, balcony]}",
        "  - {id: pir-1, kind: motion, zones: [gallery]}",
        "panels:",
        "  listen:",
        f"    - {{protocol: tcp, host: 127.0.0.1, port: {tcp_port}}}",
        f"    - {{protocol: udp, host: 127.0.0.1, port: {udp_port}}}",
        "  time_window: {past: 40s, future: 20s}",
        "  accounts:",
        f"    - {{id: 1234, name: apollo-panel, zone: gallery{sup}, map: "
        "[{panel_zone: 3, zone: balcony, sensor: gb-1}, {area: 2, sensor: pir-1}]}",
        f"    - {{id: ABC123, key: {KEY128}, zone: gallery}}",
        f"    - {{id: 5678, key: {KEY256}}}",
    ]
    lines += [f"    - {a}" for a in extra_accounts]
    path = os.path.join(d, "node.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, outbox


def outbox_rows(path):
    db = sqlite3.connect(path, timeout=5)
    try:
        return db.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def attrs(ev):
    return {a.key: a.value for a in ev.attributes}


class PanelsTest(HarnessTestCase):
    def setUp(self):
        super().setUp()
        self.tcp = free_port()
        self.udp = free_port()

    def mesh(self, site="louvre"):
        central = self.h.start_central(sites=[site])
        return central, self.h.start_site(site, central)

    def start_node(self, site_broker, player=None, **kw):
        cfg, outbox = panels_config(self.h, "n1", "louvre", site_broker, self.tcp,
                                    self.udp, **kw)
        node = self.h.spawn("n1", [bin_path("vigie-node"), "-c", cfg])
        wait_for(lambda: "panels: listening on udp" in node.log_text(), 10,
                 "the panel listeners")
        return node, outbox

    def sim(self, steps, udp=False, account=None, key=None, none_wait=500,
            check=True):
        """Run vigie-panel-sim with -e steps; returns its output."""
        argv = [bin_path("vigie-panel-sim"), "-p", str(self.udp if udp else self.tcp),
                "-n", str(none_wait)]
        if udp:
            argv.append("-u")
        if account:
            argv += ["-a", account]
        if key:
            argv += ["-k", key]
        for s in steps:
            argv += ["-e", s]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"vigie-panel-sim exited {r.returncode}:\n"
                                 f"{r.stdout}{r.stderr}")
        return r.stdout

    def events(self, player, source=None):
        return [e for e in player.events.values()
                if source is None or e.source == source]

    def test_cleartext_and_encrypted_frames_over_tcp_and_udp_reach_the_central(self):
        central, site = self.mesh()
        player = ReceiptPlayer(self.h, central)
        node, outbox = self.start_node(site)
        # Cleartext SIA DCS over TCP: panel zone 3 is the balcony's glass
        # break detector; area 2 is the gallery PIR; a restore; Contact ID.
        self.sim(['event data="#1234|Nri1/BA03^west window^"',
                  'event data="Nri2/BA07"',
                  'event data="Nri1/BH03"',
                  'cid data="1137 01 004"',
                  'event data="Nri1/OP012"',
                  'null'])
        # Encrypted: AES-128 over TCP, AES-256 over UDP; Contact ID over UDP
        # in clear.
        self.sim(['event data="Nri1/PA001"', 'cid data="1130 01 015"'],
                 account="ABC123", key=KEY128)
        self.sim(['event data="Nri1/YC"', 'null'], udp=True, account="5678", key=KEY256)
        self.sim(['cid data="1602 00 000"'], udp=True)
        wait_for(lambda: len(player.events) >= 9, 15, "9 panel events at the central")
        evs = sorted(self.events(player), key=lambda e: e.seq)
        self.assertEqual(len(evs), 9, [(e.source, e.source_code) for e in evs])
        ba = evs[0]
        self.assertEqual((ba.source, ba.source_code), ("sia-dcs", "BA"))
        self.assertEqual(ba.kind, pb.KIND_GLASS_BREAK)   # the mapped sensor's kind
        self.assertEqual(ba.state, pb.STATE_ALARM)
        self.assertEqual((ba.zone, ba.sensor), ("balcony", "gb-1"))
        self.assertIn("west window", ba.text)
        self.assertEqual(attrs(ba)["panel"], "apollo-panel")
        self.assertEqual(attrs(ba)["panel_zone"], "3")
        self.assertEqual(attrs(ba)["dc09_seq"], "0001")
        self.assertIn("panel_time", attrs(ba))
        pir = evs[1]
        self.assertEqual((pir.kind, pir.zone, pir.sensor),
                         (pb.KIND_MOTION, "gallery", "pir-1"))
        self.assertEqual(evs[2].state, pb.STATE_RESTORE)
        tamper = evs[3]
        self.assertEqual((tamper.source, tamper.source_code, tamper.kind),
                         ("contact-id", "E137", pb.KIND_NODE_TAMPER))
        self.assertEqual(tamper.zone, "gallery")          # the account's default
        opening = evs[4]
        self.assertEqual((opening.kind, attrs(opening)["action"], attrs(opening)["user"]),
                         (pb.KIND_OPEN_CLOSE, "open", "12"))
        panic = evs[5]
        self.assertEqual((panic.kind, panic.source_code, attrs(panic)["account"]),
                         (pb.KIND_DURESS, "PA", "ABC123"))
        self.assertEqual(evs[6].source_code, "E130")
        comm = evs[7]
        self.assertEqual((comm.kind, comm.state, comm.source_code),
                         (pb.KIND_COMM_LOSS, pb.STATE_TROUBLE, "YC"))
        test = evs[8]
        self.assertEqual((test.kind, test.state, test.source_code),
                         (pb.KIND_TEST, pb.STATE_TEST, "E602"))
        wait_for(lambda: outbox_rows(outbox) == 0, 15, "outbox drained by receipts")
        node.stop()
        self.assertEqual(node.returncode, 0)
        self.assertIn("panels: 11 frame(s): 11 ACK, 0 NAK, 0 DUH", node.log_text())

    def test_every_rejection_path(self):
        central, site = self.mesh()
        player = ReceiptPlayer(self.h, central)
        node, _ = self.start_node(site)
        self.sim([
            'event data="Nri1/BA01" account=9999 expect=NAK',      # unknown account
            'event data="Nri1/BA01" account=ABC123 expect=NAK',    # keyed account in clear
            f'event data="Nri1/BA01" account=5678 key={KEY128} expect=NAK',  # wrong key
            f'event data="Nri1/BA01" account=1234 key={KEY128} expect=NAK',  # keyless account
            'event data="Nri1/BA01" time=-100 expect=NAK',         # too old
            'event data="Nri1/BA01" time=+60 expect=NAK',          # from the future
            f'event data="Nri1/BA01" account=ABC123 key={KEY128} time=-45 expect=NAK',
            'event data="Nri1/BA01" crc=bad expect=none',          # damaged: no answer
            'event data="Nri1/BA01" length=bad expect=none',
            'event data="Nri1/ZX01" expect=DUH',                   # unknown code
            'cid data="1999 01 001" expect=DUH',
            'event data="no event here" expect=DUH',               # malformed data
            'event data="Nri1/BA01" token=SIA-XYZ expect=DUH',     # unknown id token
            'event data="#9999|Nri1/BA01" expect=DUH',             # data names another account
            # ... and the connection still works: lower-case hex too.
            'event data="Nri1/BA05" case=lower',
        ])
        self.sim(['event data="Nri1/BA01" account=9999 expect=NAK',
                  'event data="Nri1/BA01" crc=bad expect=none'], udp=True)
        wait_for(lambda: len(player.events) >= 1, 10, "the one good event")
        time.sleep(1.0)  # observe that nothing else arrives
        self.assertEqual([e.source_code for e in player.events.values()], ["BA"])
        self.assertEqual(attrs(next(iter(player.events.values())))["panel_zone"], "5")
        log = node.log_text()
        for reason in ['unknown account "9999": NAK',
                       "account ABC123 has a key but sent in clear: NAK",
                       "account 5678 seq 0003: ",
                       'encrypted message from keyless account "1234": NAK',
                       "outside -40/+20 s: NAK",
                       "frame dropped, not answered: CRC field",
                       "frame dropped, not answered: length field",
                       'unknown SIA DCS code "ZX": DUH',
                       "unknown Contact ID event 999",
                       'id token "SIA-XYZ" not handled: DUH',
                       "account 9999 in the data, 1234 in the header"]:
            self.assertIn(reason, log)
        node.check_running()

    def test_retry_of_the_same_seq_is_acked_again_and_published_once(self):
        central, site = self.mesh()
        node, outbox = self.start_node(site)
        # No receipts yet: an ACK means the event is in the outbox file.
        out = self.sim(['event data="Nri1/BA03" seq=42 repeat=3'])
        self.assertEqual(out.count("expected ACK, got ACK"), 3, out)
        self.assertEqual(outbox_rows(outbox), 1)
        # The panel's retry after a reconnect, and one over UDP.
        self.sim(['event data="Nri1/BA03" seq=42'])
        self.sim(['event data="Nri1/BA03" seq=42'], udp=True)
        # Encrypted retries carry a new pad and maybe a new timestamp:
        # still the same message.
        self.sim(['event data="Nri1/TA1" seq=7 repeat=2'], account="ABC123", key=KEY128)
        self.sim(['event data="Nri1/TA1" seq=7'], udp=True, account="ABC123", key=KEY128)
        self.assertEqual(outbox_rows(outbox), 2)
        # Same seq, other data: the panel restarted its numbering.
        self.sim(['event data="Nri1/BA04" seq=42'])
        self.assertEqual(outbox_rows(outbox), 3)
        player = ReceiptPlayer(self.h, central)
        # Published before anyone played the relay: they come with the
        # node's re-sends, whose interval has grown meanwhile.
        wait_for(lambda: len(player.events) >= 3, 30, "the events at the central")
        wait_for(lambda: outbox_rows(outbox) == 0, 15, "outbox drained")
        time.sleep(1.0)  # no further copies arrive
        codes = sorted(e.source_code for e in player.events.values())
        self.assertEqual(codes, ["BA", "BA", "TA"])
        self.assertEqual(len(player.events), 3)

    def test_null_supervision_raises_comm_loss_and_restore(self):
        central, site = self.mesh()
        player = ReceiptPlayer(self.h, central)
        node, _ = self.start_node(site, supervision="2s")
        self.sim(['null', 'sleep ms=800', 'null', 'sleep ms=800', 'null'])

        def link(state):
            return [e for e in player.events.values()
                    if e.kind == pb.KIND_COMM_LOSS and e.state == state
                    and attrs(e).get("account") == "1234"]
        # NULLs every 0.8 s keep it quiet; then silence.
        self.assertEqual(link(pb.STATE_TROUBLE), [])
        wait_for(lambda: link(pb.STATE_TROUBLE), 10, "comm loss after 2 s of silence")
        lost = link(pb.STATE_TROUBLE)[0]
        self.assertEqual(lost.zone, "gallery")
        self.assertEqual(lost.source, "node")
        self.assertEqual(attrs(lost)["panel"], "apollo-panel")
        self.assertIn("no message for", lost.text)
        self.sim(['null'], udp=True)
        wait_for(lambda: link(pb.STATE_RESTORE), 10, "restore when the panel reports")
        self.assertEqual(len(link(pb.STATE_TROUBLE)), 1)

    def test_garbage_and_oversized_frames_close_the_connection_and_the_node_goes_on(self):
        central, site = self.mesh()
        player = ReceiptPlayer(self.h, central)
        node, _ = self.start_node(site)
        big = "x" * 3000
        self.sim(['event data="Nri1/BA01"',
                  'raw text="GET / HTTP/1.1\\r\\n\\r\\n" expect=close',
                  'event data="Nri1/BA02"',            # a new connection
                  'raw text="\\n00000FFF\\"SIA-DCS\\"" expect=close',
                  'event data="Nri1/BA03"',
                  f'raw text="\\n00000010{big}" expect=close',
                  'event data="Nri1/BA04"',
                  'raw text="\\nCE11\\x01\\x02" expect=close',
                  'event data="Nri1/BA05"'])
        # UDP: garbage and oversized datagrams are dropped.
        self.sim(['raw text="junk"', f'raw text="\\n00000010{big}\\r"',
                  'event data="Nri1/BA06"'], udp=True)
        wait_for(lambda: len(player.events) >= 6, 10, "the six good events")
        self.assertEqual(sorted(attrs(e)["panel_zone"] for e in player.events.values()),
                         ["1", "2", "3", "4", "5", "6"])
        node.check_running()
        log = node.log_text()
        self.assertIn("expected LF at the start of a frame", log)
        self.assertIn("more than 1024: closing the connection", log)
        self.assertIn("no CR within", log)
        node.stop()
        self.assertEqual(node.returncode, 0)
        self.assertIn("6 garbage frame(s) (4 TCP connections closed)", node.log_text())


if __name__ == "__main__":
    unittest.main()
