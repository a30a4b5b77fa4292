"""The central broker hung (SIGSTOP, not dead) for 30 s (issue 8).

inventory/paris.yaml's topology with a standby central broker (tests/mesh/
mesh.py, standby=True): the standby runs in its own namespace on the central
network (10.77.0.2 beside the central's 10.77.0.1); the site bridges list
both centrals, each node's secondary path goes to the standby, and the relay
and the police posts hold both centrals at once. The central broker is
SIGSTOPped: its kernel still accepts TCP, nothing answers.

While it hangs, every museum raises a duress alarm and then a burst of
intrusion alarms in the same zone. Expected, as outcomes with generous
deadlines:
- the nodes fail over to their secondary path (the standby central) and the
  police post gets the dispatch of every museum's duress while the central
  is still stopped;
- after SIGCONT, a new alarm of every museum is dispatched too;
- every event a node confirmed is stored by the relay exactly once, every
  node's stream has no gap, and every outbox drains (all receipted);
- the post shows each dispatch the relay made exactly once, although the
  relay sent it through both centrals;
- supervision ends up with no museum and no post reported lost.

failover_time 3 s on the nodes (not an inventory key; the default is 10 s):
shorter than the bridge can notice a hung central (1.5 keepalives of 5 s),
so the nodes, not only the bridges, take the secondary path.
"""

import time
import unittest

from mesh import MeshTestCase, report
from vigie_harness import _pb, wait_for

HANG_S = 30
BURST = 20  # alarms per museum during the hang, the duress included
SETTLE_S = 10  # how long supervision must stay quiet once the central is back


class CentralHangTest(MeshTestCase):

    def mesh_options(self):
        return {"standby": True, "node_settings": {"failover_time": "3s"}}

    def dispatched_zones(self, post, site, kind=None):
        return {x["zone"] for x in self.mesh.post_dispatches(post, new_only=True)
                if x["site"] == site and (kind is None or x["kind"] == kind)}

    def test_central_hung_30s_nodes_fail_over_post_gets_every_dispatch(self):
        mesh = self.mesh
        pb = _pb()
        t_start = time.monotonic()
        mesh.start()
        police_post = next(lv["post"] for lv in mesh.model["escalation"] if lv.get("post"))
        museums = {m["id"]: m for m in mesh.model["museums"]}
        nodes = {m: museums[m]["nodes"][0]["id"] for m in mesh.museums}
        confirmed = {m: [] for m in mesh.museums}   # (boot, seq) the nodes confirmed

        # --- the hang ---------------------------------------------------------
        mesh.central.sigstop()
        self.addCleanup(mesh.central.sigcont)  # before the mesh stops it, whatever happens
        hung_at = time.monotonic()
        for m in mesh.museums:
            zone = museums[m]["zones"][0]["id"]
            lines = [f"kind=duress state=alarm zone={zone} text=\"duress at {m}, central hung\""]
            lines += [f"kind=intrusion state=alarm zone={zone} "
                      f"text=\"intrusion {i} at {m}, central hung\"" for i in range(1, BURST)]
            confirmed[m] += mesh.inject(m, nodes[m], lines)
        report(f"central hung; {BURST} alarms confirmed by each of {', '.join(mesh.museums)}")

        def during():
            return all(museums[m]["zones"][0]["id"] in
                       self.dispatched_zones(police_post, m, "duress") for m in mesh.museums)
        wait_for(during, 120, "every museum's duress at the police post during the hang",
                 interval=0.5)
        self.assertTrue(mesh.central.alive())
        self.assertIn("T", self.proc_state(mesh.central.proc.pid), "the central is still hung")
        report(f"every duress dispatched at {police_post} "
               f"{time.monotonic() - hung_at:.1f} s into the hang, through the standby")
        for m in mesh.museums:
            log = mesh.nodes[(m, nodes[m])]["proc"].log_text()
            self.assertIn("switching to the secondary path", log, f"{m}'s node did not fail over")
        # The site bridges leave the hung central for the standby too.
        wait_for(lambda: all(f"site {m} bridge up on central standby" in mesh.relay.log_text()
                             for m in mesh.museums), 90,
                 "every site bridge on the standby central (the relay's log)", interval=0.5)
        self.assertIn("T", self.proc_state(mesh.central.proc.pid), "the central is still hung")
        report(f"nodes on their secondary path, bridges on the standby "
               f"{time.monotonic() - hung_at:.1f} s into the hang")

        time.sleep(max(0.0, HANG_S - (time.monotonic() - hung_at)))  # the hang's length
        mesh.central.sigcont()
        report(f"central continued after {time.monotonic() - hung_at:.0f} s")

        # --- after ------------------------------------------------------------
        for m in mesh.museums:
            zone = museums[m]["zones"][1]["id"]
            confirmed[m] += mesh.inject(m, nodes[m], [
                f"kind=duress state=alarm zone={zone} text=\"duress at {m}, after the hang\""])

        def after():
            return all(museums[m]["zones"][1]["id"] in
                       self.dispatched_zones(police_post, m, "duress") for m in mesh.museums)
        wait_for(after, 60, "every museum's alarm after SIGCONT at the police post",
                 interval=0.5)

        # Every confirmed event receipted (outboxes drain) and stored once.
        wait_for(lambda: all(mesh.outbox_pending(m, nodes[m]) == 0 for m in mesh.museums),
                 120, "every node's outbox to drain (all receipted)", interval=0.5)
        for m in mesh.museums:
            rows = mesh.relay_rows("SELECT boot_id, seq FROM events WHERE site=? AND node=?",
                                   m, nodes[m])
            self.assertEqual(len(rows), len(set(rows)))
            self.assertLessEqual(set(confirmed[m]), set(rows), f"{m}: confirmed, not stored")
            for boot in {b for b, _ in rows}:
                seqs = sorted(s for b, s in rows if b == boot)
                self.assertEqual(seqs, list(range(1, seqs[-1] + 1)), f"{m}: a gap in {boot}")
        report(f"every outbox drained; {sum(len(c) for c in confirmed.values())} confirmed "
               f"alarms stored once each")

        # The relay and the posts take the central back, and what it held
        # queued arrives: copies of what went through the standby.
        wait_for(lambda: mesh.relay.log_text().count("connected to the central broker primary")
                 >= 2, 90, "the relay back on the central", interval=0.5)
        for p in mesh.posts:
            wait_for(lambda: mesh.post_connections(p) >= 3, 90,
                     f"post {p} back on the central", interval=0.5)

        # Supervision settles: nothing reported lost (no museum, bridge,
        # node or post silent, no node off its primary path), and it stays
        # so for a while with the central back (its LWTs, late copies).
        def settled():
            open_ = [i for i in mesh.incidents("trouble=1 AND state!=?", pb.INCIDENT_CLOSED)
                     if i.get("kind") in (pb.KIND_COMM_LOSS, pb.KIND_PATH_LOSS)]
            return not open_
        try:
            self.wait_steady(settled, SETTLE_S, 120, "no comm_loss or path_loss trouble open")
        except AssertionError:
            open_ = [(i["id"], i["subject"]) for i in mesh.incidents(
                "trouble=1 AND state!=?", pb.INCIDENT_CLOSED)]
            raise AssertionError(f"troubles still open: {open_}") from None
        shown = self.assert_each_dispatch_shown_once()
        report(f"{shown} dispatch(es), each shown once at its post")
        report(f"test took {time.monotonic() - t_start:.0f} s")

    @staticmethod
    def wait_steady(cond, steady, timeout, what):
        """Wait until cond() has held for `steady` seconds in a row."""
        since = [None]

        def held():
            if not cond():
                since[0] = None
                return False
            if since[0] is None:
                since[0] = time.monotonic()
            return time.monotonic() - since[0] >= steady
        wait_for(held, timeout, f"{what} for {steady} s in a row", interval=0.5)

    @staticmethod
    def proc_state(pid):
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return data[data.rfind(")") + 2:].split()[0]


if __name__ == "__main__":
    unittest.main()
