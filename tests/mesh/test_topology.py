"""The mesh itself: inventory/paris.yaml's topology starts, every node's
events reach the relay through its site broker and bridge, and an alarm of
each museum reaches the police post. Both address plans of tests/mesh/mesh.py
run: network namespaces (as root) and loopback ports (the same code path
with other addresses), so the fault tests' harness is checked either way."""

import time
import unittest

from mesh import IP, UPLINK, MeshTestCase, report, run
from vigie_harness import wait_for


class TopologyTest(MeshTestCase):

    def check_duress_at_each_museum(self):
        mesh = self.mesh
        t0 = time.monotonic()
        mesh.start()
        report(f"{'namespaces' if mesh.net.netns else 'loopback'}: "
               f"{len(mesh.museums)} museums, {len(mesh.nodes)} nodes, {len(mesh.posts)} posts "
               f"up and flowing in {time.monotonic() - t0:.1f} s")
        police_post = next(lv["post"] for lv in mesh.model["escalation"] if lv.get("post"))
        sent = {}
        for mus in mesh.model["museums"]:
            node = mus["nodes"][0]["id"]
            zone = mus["zones"][0]["id"]
            sent[mus["id"]] = (node, mesh.inject(mus["id"], node, [
                f"kind=duress state=alarm zone={zone} text=\"duress at {mus['id']}\""])[0])

        def dispatched():
            seen = {x["site"] for x in mesh.post_dispatches(police_post, new_only=True)
                    if x["kind"] == "duress"}
            return seen >= set(sent)
        wait_for(dispatched, 30, f"a duress dispatch of every museum at {police_post}",
                 interval=0.2)
        # Stored too: a dispatch leaves before its event's commit, which
        # follows within milliseconds.
        for site, (node, (boot, seq)) in sent.items():
            wait_for(lambda: mesh.has_event(site, node, boot, seq), 10,
                     f"{site}'s duress event stored")
        # The relay saw every bridge up (its log).
        log = mesh.relay.log_text()
        for site in mesh.museums:
            self.assertIn(f"site {site} bridge up", log)
        # Namespaces: only the mesh's own network, no way off the machine.
        for ns in mesh.net.created:
            routes = run([IP, "-n", ns, "route", "show"]).stdout
            self.assertNotIn("default", routes, f"{ns} has a default route")
            links = run([IP, "-n", ns, "-o", "link", "show"]).stdout
            names = {l.split(":")[1].strip().split("@")[0] for l in links.splitlines()}
            self.assertLessEqual(names, {"lo", "br0", UPLINK} | {f"p{i}" for i in range(300)},
                                 f"{ns}: unexpected interfaces")

    def test_namespaces_or_loopback(self):
        """Namespaces as root, loopback otherwise."""
        self.check_duress_at_each_museum()


class LoopbackTopologyTest(TopologyTest):
    def mesh_options(self):
        return {"netns": False}

    def test_namespaces_or_loopback(self):
        """Loopback ports, whoever runs it."""
        self.check_duress_at_each_museum()


if __name__ == "__main__":
    unittest.main()
