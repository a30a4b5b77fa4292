"""The inventory is the single source of a deployment (issue 8).

tools/vigie-inventory writes docker/config/ and docker/docker-compose.yml
from inventory/paris.yaml; these tests fail when the committed files differ
from what it writes, check that its errors carry FILE:LINE, that every
generated daemon config passes the daemon's own check-config, that Debian's
docker-compose accepts the compose file, that the Dockerfiles pass
tools/vigie-dockerfile-lint, and (as root) that the broker image's
entrypoint turns a generated config into a broker that authenticates users.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

import yaml

SOURCE = os.path.abspath(os.environ.get("VIGIE_SOURCE")
                         or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("VIGIE_BUILD")
INVENTORY = os.path.join(SOURCE, "tools", "vigie-inventory")
LINT = os.path.join(SOURCE, "tools", "vigie-dockerfile-lint")
PY = sys.executable


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, **kw)


class InventoryTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="vigie-inv-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def copy_tree(self):
        root = os.path.join(self.tmp, "root")
        shutil.copytree(os.path.join(SOURCE, "docker"), os.path.join(root, "docker"))
        return root

    def test_committed_files_match_the_generator(self):
        r = run([PY, INVENTORY, "check"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_check_reports_changed_missing_and_stale_files(self):
        root = self.copy_tree()
        with open(os.path.join(root, "docker/config/relay.yaml"), "a") as f:
            f.write("# hand edit\n")
        os.unlink(os.path.join(root, "docker/config/posts/pp-paris-4.yaml"))
        with open(os.path.join(root, "docker/config/nodes/old-node.yaml"), "w") as f:
            f.write("site: old\n")
        r = run([PY, INVENTORY, "check", "--root", root])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("docker/config/relay.yaml: differs", r.stderr)
        self.assertIn("+# hand edit", r.stderr.replace("-# hand edit", "+# hand edit"))
        self.assertIn("docker/config/posts/pp-paris-4.yaml: missing", r.stderr)
        self.assertIn("docker/config/nodes/old-node.yaml: not generated", r.stderr)
        # generate repairs it all, and a second run writes nothing.
        r = run([PY, INVENTORY, "generate", "--root", root])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(run([PY, INVENTORY, "check", "--root", root]).returncode, 0)
        r = run([PY, INVENTORY, "generate", "--root", root])
        self.assertEqual(r.stdout, "")

    def test_validation_errors_name_file_and_line(self):
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write(textwrap.dedent("""\
                deployment: test
                relay: {id: relay-1, reporting_time: 10 seconds}
                posts:
                  - {id: pp-1, name: One, backup: pp-9}
                escalation:
                  - {name: police, post: pp-2, ack_deadline: 60s}
                museums:
                  - id: Louvre
                    name: Louvre
                    region: paris
                    location: {lat: 148.0, lon: 2.3}
                    nodes: [{id: n1}]
                    zones:
                      - {id: hall, name: Hall, floor: 1}
                    sensors:
                      - {id: pir, kind: motion, zones: [hal]}
                      - {id: pir, kind: motion, zones: [hall], colour: red}
                """))
        r = run([PY, INVENTORY, "validate", bad])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        errs = r.stderr.strip().splitlines()
        want = {
            2: "reporting_time",        # not a duration
            4: "backup 'pp-9'",         # no such post
            6: "post 'pp-2'",           # no such post
            8: "'Louvre'",              # not an id
            11: "lat",                  # out of range
            14: "floor",                # not a string
            16: "no zone 'hal'",
            17: "unknown key 'colour'",
        }
        for line, text in want.items():
            self.assertTrue(any(e.startswith(f"{bad}:{line}: ") and text in e for e in errs),
                            f"no error at line {line} about {text!r} in:\n{r.stderr}")
        self.assertTrue(any("sensor 'pir' given twice" in e for e in errs), r.stderr)
        for e in errs:
            self.assertRegex(e, r"^.+:\d+: ")

        with open(bad, "w") as f:
            f.write("museums: [\n")
        r = run([PY, INVENTORY, "validate", bad])
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, re.escape(bad) + r":\d+: not valid YAML")

    @unittest.skipUnless(BUILD and os.path.exists(os.path.join(BUILD or "", "bin", "vigie-node")),
                         "VIGIE_BUILD with vigie-node, vigie-relay, vigie-post needed")
    def test_generated_daemon_configs_pass_check_config(self):
        # The container paths, moved under a temporary directory.
        root = self.copy_tree()
        base = os.path.join(self.tmp, "var")
        cfg = os.path.join(root, "docker", "config")
        users = []
        for dirpath, _, names in os.walk(cfg):
            for n in names:
                p = os.path.join(dirpath, n)
                with open(p) as f:
                    text = f.read()
                users += re.findall(r"/var/lib/vigie/secrets/([a-z0-9_-]+/[a-z0-9_-]+)\.pw", text)
                with open(p, "w") as f:
                    f.write(text.replace("/var/lib/vigie/", base + "/"))
        self.assertTrue(users)
        for u in set(users):
            os.makedirs(os.path.join(base, "secrets", os.path.dirname(u)), exist_ok=True)
            with open(os.path.join(base, "secrets", u + ".pw"), "w") as f:
                f.write("test-password-123\n")
        checks = [("vigie-relay", os.path.join(cfg, "relay.yaml"))]
        checks += [("vigie-node", os.path.join(cfg, "nodes", n))
                   for n in sorted(os.listdir(os.path.join(cfg, "nodes")))]
        checks += [("vigie-post", os.path.join(cfg, "posts", n))
                   for n in sorted(os.listdir(os.path.join(cfg, "posts")))]
        self.assertGreaterEqual(len(checks), 6)
        for prog, path in checks:
            r = run([os.path.join(BUILD, "bin", prog), "check-config", path])
            self.assertEqual(r.returncode, 0, f"{prog} check-config {path}:\n{r.stdout}{r.stderr}")

    def test_compose_file_shape(self):
        with open(os.path.join(SOURCE, "docker", "docker-compose.yml")) as f:
            doc = yaml.safe_load(f)
        s = doc["services"]
        for name in ("broker-central", "relay", "post-pp-paris-1", "post-pp-paris-4",
                     "dashboard", "secrets-init"):
            self.assertIn(name, s)
        museums = [n[len("broker-"):] for n in s if n.startswith("broker-") and n != "broker-central"]
        self.assertEqual(len(museums), 3, museums)
        for m in museums:
            self.assertTrue(any(n.startswith(f"node-{m}-") for n in s), m)
            self.assertIn(f"outbox-{m}", doc["volumes"])
            self.assertIn(f"broker-{m}-data", doc["volumes"])
        for v in ("relay-db", "broker-central-data", "secrets"):
            self.assertIn(v, doc["volumes"])
        for name, svc in s.items():
            if name != "secrets-init":
                self.assertIn("healthcheck", svc, name)

    def test_compose_file_validates_with_docker_compose(self):
        dc = shutil.which("docker-compose")
        if not dc:
            self.skipTest("docker-compose is not installed: add docker-compose to the "
                          "packages of scripts/deps.sh (Debian's 1.29 client; no engine needed)")
        r = run([dc, "-f", os.path.join(SOURCE, "docker", "docker-compose.yml"), "config", "-q"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_dockerfiles_pass_the_lint(self):
        files = sorted(os.path.join(SOURCE, "docker", f)
                       for f in os.listdir(os.path.join(SOURCE, "docker"))
                       if f.startswith("Dockerfile"))
        self.assertEqual([os.path.basename(f) for f in files],
                         ["Dockerfile.broker", "Dockerfile.dashboard", "Dockerfile.node",
                          "Dockerfile.post", "Dockerfile.relay"])
        r = run([PY, LINT, "--context", SOURCE] + files)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        bad = os.path.join(self.tmp, "Dockerfile")
        with open(bad, "w") as f:
            f.write("FROM debian:latest\nRUN apt-get update && apt-get install -y x\n")
        r = run([PY, LINT, bad])
        self.assertEqual(r.returncode, 1)
        for rule in ("pinned", "stages", "user", "health", "apt"):
            self.assertIn(f" {rule} ", r.stdout)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare") and shutil.which("setpriv"),
                         "needs root, unshare and setpriv (private mount and network namespaces)")
    def test_broker_entrypoint_runs_the_generated_configs(self):
        # What the broker container does, in a private mount + network
        # namespace (gone when the script exits) as an unprivileged user:
        # secrets-init, then vigie-broker-start for the central and for a
        # site broker, each checked by logging in with a generated password.
        nodelay = os.path.join(BUILD or "", "lib", "libvigie-nodelay.so")
        preload = f"LD_PRELOAD={nodelay}" if os.path.exists(nodelay) else "VIGIE_NO_PRELOAD=1"
        script = textwrap.dedent(f"""\
            set -eu
            ip link set lo up
            mkdir -p /run/vigie /var/lib/vigie
            mount -t tmpfs tmpfs /run/vigie
            mount -t tmpfs tmpfs /var/lib/vigie
            chmod 1777 /run/vigie
            mkdir -p /var/lib/vigie/mosquitto /var/lib/vigie/secrets
            chown -R nobody /var/lib/vigie
            as() {{ setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }}
            d={SOURCE}/docker
            as $d/bin/vigie-secrets-init $d/config/brokers /var/lib/vigie/secrets
            sec=/var/lib/vigie/secrets
            for b in central louvre; do
              user=relay; [ $b = central ] || user=node
              # Not through as(): $! must be the broker's own pid chain.
              setpriv --reuid=nobody --regid=nogroup --clear-groups \\
                env {preload} timeout 20 $d/bin/vigie-broker-start $d/config/brokers/$b $sec &
              pid=$!
              ok=0
              for _ in $(seq 100); do
                if as mosquitto_pub -h 127.0.0.1 -p 1883 -u $user -P "$(cat $sec/$b/$user.pw)" \\
                     -t vigie/v1/site/louvre/node/t/heartbeat -m x -q 1 2>/dev/null; then ok=1; break; fi
                sleep 0.1
              done
              [ $ok = 1 ] || {{ echo "broker $b: $user could not log in"; exit 1; }}
              if as mosquitto_pub -h 127.0.0.1 -p 1883 -u $user -P wrong-password -t x -m x 2>/dev/null; then
                echo "broker $b: a wrong password was accepted"; exit 1
              fi
              if [ $b = louvre ]; then
                grep -q "^remote_password $(cat $sec/central/bridge-louvre.pw)\\$" /run/vigie/broker/mosquitto.conf
                ! grep -q '@SECRET' /run/vigie/broker/mosquitto.conf
              fi
              echo "broker $b ok"
              kill $pid; wait $pid || true
              for _ in $(seq 100); do
                (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null || break
                sleep 0.1
              done
            done
            """)
        r = run(["unshare", "-m", "-n", "--propagation", "private", "bash", "-c", script])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("broker central ok", r.stdout)
        self.assertIn("broker louvre ok", r.stdout)


if __name__ == "__main__":
    unittest.main()
