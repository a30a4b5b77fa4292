"""The inventory is the single source of a deployment (issue 8).

tools/vigie-inventory writes docker/config/ and docker/docker-compose.yml
from inventory/paris.yaml; these tests fail when the committed files differ
from what it writes, check that its errors carry FILE:LINE, that every
generated daemon config passes the daemon's own check-config, that Debian's
docker-compose accepts the compose file, that the Dockerfiles pass
tools/vigie-dockerfile-lint, and (as root) that the broker image's
entrypoint turns a generated config into a broker that authenticates users.

TLS everywhere (issue 5): every generated broker and daemon config has its
TLS settings and no listener is plaintext off loopback; `vigie-inventory
keys` writes keys 0600 owned by the containers' user, certificates that
verify against the CA with the compose service names as SANs, and is
idempotent; the generated central and a site broker run on those files,
bridged with hostname verification, and refuse plaintext and clients
without a certificate.
"""

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import yaml

SOURCE = os.path.abspath(os.environ.get("VIGIE_SOURCE")
                         or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("VIGIE_BUILD")
INVENTORY = os.path.join(SOURCE, "tools", "vigie-inventory")
LINT = os.path.join(SOURCE, "tools", "vigie-dockerfile-lint")
PY = sys.executable
TLS_DIR = "/etc/vigie/tls/"
CONTAINER_UID = 10001


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, **kw)


def service_of(config_path):
    """The compose service whose /etc/vigie/tls a generated config reads."""
    rel = config_path.replace(os.sep, "/")
    name = os.path.splitext(os.path.basename(rel))[0]
    if "/brokers/" in rel:
        return "broker-" + os.path.basename(os.path.dirname(rel))
    if "/nodes/" in rel:
        return "node-" + name
    if "/posts/" in rel:
        return "post-" + name
    return name  # relay.yaml


def is_loopback(addr):
    return addr in ("localhost", "::1") or addr.startswith("127.")


def vigie_node():
    if BUILD and os.path.exists(os.path.join(BUILD, "bin", "vigie-node")):
        return os.path.join(BUILD, "bin", "vigie-node")
    return None


# Services with no MQTT link: no certificate, no key.
NO_TLS = ("dashboard", "secrets-init", "relay-backup")


class InventoryTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="vigie-inv-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def make_keys(self, out=None, expect_rc=0):
        """`vigie-inventory keys` into OUT (default TMP/secrets); returns OUT."""
        out = out or os.path.join(self.tmp, "secrets")
        argv = [PY, INVENTORY, "keys", "--out", out, "--vigie-node", vigie_node()]
        if os.geteuid() != 0:
            argv += ["--owner", f"{os.geteuid()}:{os.getegid()}"]
        r = run(argv)
        self.assertEqual(r.returncode, expect_rc, r.stdout + r.stderr)
        self.last_keys_output = r.stdout
        return out

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
        # The container paths, moved under a temporary directory; the
        # certificates and keys from `vigie-inventory keys`, each config
        # seeing its own service's folder as the container does.
        root = self.copy_tree()
        base = os.path.join(self.tmp, "var")
        services = os.path.join(self.make_keys(), "services")
        cfg = os.path.join(root, "docker", "config")
        users = []
        for dirpath, _, names in os.walk(cfg):
            for n in names:
                p = os.path.join(dirpath, n)
                with open(p) as f:
                    text = f.read()
                users += re.findall(r"/var/lib/vigie/secrets/([a-z0-9_-]+/[a-z0-9_-]+)\.pw", text)
                text = text.replace(TLS_DIR, os.path.join(services, service_of(p)) + "/")
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

    def test_every_link_uses_tls(self):
        cfg = os.path.join(SOURCE, "docker", "config")
        confs = sorted(os.path.join(cfg, "brokers", b, "mosquitto.conf")
                       for b in os.listdir(os.path.join(cfg, "brokers")))
        self.assertGreaterEqual(len(confs), 4)
        for path in confs:
            with open(path) as f:
                text = f.read()
            lines = [ln.strip() for ln in text.splitlines()
                     if ln.strip() and not ln.lstrip().startswith("#")]
            # Listener blocks: from "listener" to the next listener or section.
            blocks, cur = [], None
            for ln in lines:
                word = ln.split()[0]
                if word == "listener":
                    cur = [ln]
                    blocks.append(cur)
                elif word == "connection":
                    cur = None
                elif cur is not None:
                    cur.append(ln)
            self.assertTrue(blocks, path)
            for b in blocks:
                addr = b[0].split()[2] if len(b[0].split()) > 2 else "0.0.0.0"
                keys = {ln.split()[0]: ln.split(None, 1)[1] for ln in b[1:] if " " in ln}
                if is_loopback(addr):
                    continue
                self.assertEqual(keys.get("certfile"), TLS_DIR + "server.crt", f"{path}: {b[0]}")
                self.assertEqual(keys.get("keyfile"), TLS_DIR + "server.key", f"{path}: {b[0]}")
                self.assertEqual(keys.get("cafile"), TLS_DIR + "ca.crt", f"{path}: {b[0]}")
                if keys.get("protocol") == "mqtt":
                    self.assertEqual(keys.get("require_certificate"), "true", f"{path}: {b[0]}")
            if "/brokers/central/" not in path:
                for want in ("bridge_cafile " + TLS_DIR + "ca.crt",
                             "bridge_certfile " + TLS_DIR + "bridge.crt",
                             "bridge_keyfile " + TLS_DIR + "bridge.key", "bridge_insecure false"):
                    self.assertIn(want, lines, path)
        daemon_confs = [os.path.join(cfg, "relay.yaml")]
        for d in ("nodes", "posts"):
            daemon_confs += [os.path.join(cfg, d, n) for n in sorted(os.listdir(os.path.join(cfg, d)))]
        for path in daemon_confs:
            with open(path) as f:
                doc = yaml.safe_load(f)
            brokers = ([doc["broker"]] + ([doc["standby"]] if "standby" in doc else [])
                       if "broker" in doc else list(doc["brokers"].values()))
            self.assertTrue(brokers, path)
            for b in brokers:
                tls = b.get("tls") or {}
                self.assertEqual(tls.get("ca"), TLS_DIR + "ca.crt", path)
                self.assertTrue(tls.get("cert", "").startswith(TLS_DIR), path)
                self.assertTrue(tls.get("key", "").startswith(TLS_DIR), path)
            if "/nodes/" in path:
                self.assertEqual(doc.get("signing_key"), TLS_DIR + "signing.key", path)
        with open(os.path.join(cfg, "relay.yaml")) as f:
            relay = yaml.safe_load(f)
        self.assertEqual(relay.get("trust"), TLS_DIR + "trust")
        self.assertIs(relay.get("require_signatures"), True)
        # Each container mounts its own folder of docker/secrets/services only.
        with open(os.path.join(SOURCE, "docker", "docker-compose.yml")) as f:
            services = yaml.safe_load(f)["services"]
        for name, svc in services.items():
            mounts = [v for v in svc.get("volumes", []) if ":" + TLS_DIR.rstrip("/") + ":" in v]
            if name in NO_TLS:
                self.assertEqual(mounts, [], name)
                continue
            own = "broker-central" if name == "broker-central-standby" else name
            self.assertEqual(mounts, [f"./secrets/services/{own}:{TLS_DIR.rstrip('/')}:ro"], name)
        dash = services["dashboard"]["command"]
        self.assertTrue(dash[dash.index("--broker") + 1].startswith("wss://"), dash)
        # The generator's plaintext escape hatch is gone.
        r = run([PY, os.path.join(SOURCE, "broker-config", "vigie-broker-config"), "central",
                 "--out", os.path.join(self.tmp, "c"), "--port", "8883", "--bind", "0.0.0.0",
                 "--insecure-plaintext"])
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("unrecognized arguments: --insecure-plaintext", r.stderr)

    @unittest.skipUnless(BUILD and os.path.exists(os.path.join(BUILD or "", "bin", "vigie-node")),
                         "VIGIE_BUILD with vigie-node needed (the nodes' Ed25519 keys)")
    def test_keys_step_modes_certificates_and_sans(self):
        out = os.path.join(self.tmp, "secrets")
        pki = os.path.join(out, "pki")
        # A PKI made earlier without the compose names: the server
        # certificates are remade with them, their keys kept.
        r = run([PY, os.path.join(SOURCE, "broker-config", "vigie-keys"), "--out", pki,
                 "--site", "louvre", "--quiet"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(pki, "brokers", "central.key")) as f:
            central_key = f.read()
        self.make_keys(out)
        self.assertIn("brokers/central.crt lacks SAN broker-central", self.last_keys_output)
        with open(os.path.join(pki, "brokers", "central.key")) as f:
            self.assertEqual(f.read(), central_key)
        owner = CONTAINER_UID if os.geteuid() == 0 else os.geteuid()
        ca = os.path.join(pki, "ca", "ca.crt")
        self.assertEqual(os.stat(out).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(pki).st_mode & 0o777, 0o700)
        with open(os.path.join(SOURCE, "docker", "docker-compose.yml")) as f:
            compose = yaml.safe_load(f)["services"]
        services = os.path.join(out, "services")
        want = sorted(n for n in compose if n not in NO_TLS)
        self.assertEqual(sorted(os.listdir(services)), want)
        seen_keys = 0
        for svc in want:
            d = os.path.join(services, svc)
            st = os.stat(d)
            self.assertEqual((st.st_mode & 0o777, st.st_uid), (0o750, owner), d)
            for dirpath, _, names in os.walk(d):
                for n in names:
                    p = os.path.join(dirpath, n)
                    st = os.stat(p)
                    self.assertEqual(st.st_uid, owner, p)
                    if n.endswith(".key"):
                        # 0600: vigie-node refuses a signing key others can read.
                        self.assertEqual(st.st_mode & 0o777, 0o600, p)
                        seen_keys += 1
                    else:
                        self.assertEqual(st.st_mode & 0o777, 0o644, p)
                    self.assertNotEqual(n, "ca.key", p)
                    if n.endswith(".crt") and n != "ca.crt":
                        r = run(["openssl", "verify", "-CAfile", ca, p])
                        self.assertEqual(r.returncode, 0, f"{p}: {r.stdout}{r.stderr}")
                        r = run(["openssl", "x509", "-noout", "-ext",
                                 "subjectAltName,extendedKeyUsage", "-in", p])
                        self.assertEqual(r.returncode, 0, r.stderr)
                        if n == "server.crt":
                            self.assertIn("TLS Web Server Authentication", r.stdout, p)
                            names_ = [svc] + (["broker-central-standby"]
                                              if "broker-central-standby" in compose
                                              and svc == "broker-central" else [])
                            for host in names_:
                                self.assertRegex(r.stdout, rf"DNS:{re.escape(host)}(,|\s|$)", p)
                        else:
                            self.assertIn("TLS Web Client Authentication", r.stdout, p)
        self.assertGreaterEqual(seen_keys, 10)
        # Every /etc/vigie/tls path of a generated config exists in its
        # service's folder.
        cfg = os.path.join(SOURCE, "docker", "config")
        for dirpath, _, names in os.walk(cfg):
            for n in names:
                p = os.path.join(dirpath, n)
                with open(p) as f:
                    refs = re.findall(re.escape(TLS_DIR) + r"([A-Za-z0-9._/-]+)", f.read())
                for ref in refs:
                    self.assertTrue(os.path.exists(os.path.join(services, service_of(p), ref)),
                                    f"{p}: {TLS_DIR}{ref} not in services/{service_of(p)}")
        # Idempotent: nothing rewritten; a loosened mode is put back.
        r = run([PY, os.path.join(SOURCE, "broker-config", "vigie-keys"), "--out", pki, "--quiet"])
        relay_key = os.path.join(services, "relay", "client.key")
        before = os.stat(relay_key).st_mtime_ns
        os.chmod(relay_key, 0o644)
        self.make_keys(out)
        self.assertIn("vigie-keys: " + pki + ": nothing to do", self.last_keys_output)
        self.assertIn(" 0 file(s) written, 1 mode/owner fixed", self.last_keys_output)
        self.assertEqual(os.stat(relay_key).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(relay_key).st_mtime_ns, before)
        if os.geteuid() != 0:
            r = run([PY, INVENTORY, "keys", "--out", out])
            self.assertEqual(r.returncode, 2)
            self.assertIn("run as root", r.stderr)

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
        # All the passwords in one volume, mounted by secrets-init alone;
        # every other container mounts its own secrets volume (if it has
        # grants), nothing more.
        with open(os.path.join(SOURCE, "docker", "config", "secrets-grants")) as f:
            granted = {l.split()[0] for l in f if l.strip() and not l.startswith("#")}
        self.assertIn("relay", granted)
        self.assertNotIn("relay-backup", granted)
        for name, svc in s.items():
            secret_mounts = [v for v in svc.get("volumes", []) if v.startswith("secrets")]
            if name == "secrets-init":
                self.assertIn("secrets:/var/lib/vigie/secrets", secret_mounts)
                self.assertEqual(len(secret_mounts), 1 + len(granted))
            elif name in granted:
                self.assertEqual(secret_mounts, [f"secrets-{name}:/var/lib/vigie/secrets:ro"], name)
            else:
                self.assertEqual(secret_mounts, [], name)
        # Copies of the relay's database, in their own volume.
        self.assertEqual(s["relay-backup"]["volumes"],
                         ["relay-db:/var/lib/vigie/relay", "relay-backup:/var/lib/vigie/backup"])
        self.assertIn("relay-backup", doc["volumes"])
        for name, svc in s.items():
            if name != "secrets-init":
                self.assertIn("healthcheck", svc, name)

    @unittest.skipUnless(BUILD and os.path.exists(os.path.join(BUILD or "", "bin", "vigie-relay")),
                         "VIGIE_BUILD with vigie-relay needed")
    def test_relay_backups_keep_the_newest_copies(self):
        # What the relay-backup service runs: a copy at start, the KEEP
        # newest kept, a clean exit on SIGTERM; bad arguments refused.
        script = os.path.join(SOURCE, "docker", "bin", "vigie-relay-backups")
        env = dict(os.environ, PATH=os.path.join(BUILD, "bin") + os.pathsep + os.environ["PATH"])
        db = os.path.join(self.tmp, "relay.db")
        con = sqlite3.connect(db)
        for t in ("events", "streams", "incidents", "audit"):
            con.execute(f"CREATE TABLE {t} (x)")
        con.execute("INSERT INTO events VALUES (1)")
        con.commit()
        con.close()
        out = os.path.join(self.tmp, "backups")
        os.makedirs(out)
        old = [f"relay-2020010{i}T000000Z.db" for i in (1, 2, 3)]
        for name in old:
            with open(os.path.join(out, name), "w") as f:
                f.write("old")
        proc = subprocess.Popen([script, db, out, "60", "2"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                names = sorted(os.listdir(out))
                if any(n not in old for n in names) and len(names) == 2:
                    break
                time.sleep(0.1)
            new = [n for n in names if n not in old]
            self.assertEqual(len(new), 1, names)
            self.assertEqual(names, sorted([old[2]] + new))
            con = sqlite3.connect(os.path.join(out, new[0]))
            self.assertEqual(con.execute("SELECT count(*) FROM events").fetchone()[0], 1)
            con.close()
            proc.terminate()
            text, _ = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 0, text)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        self.assertIn("backup of", text)
        r = run([script, db, out, "10", "2"], env=env)
        self.assertEqual(r.returncode, 2)
        self.assertIn("EVERY_S: seconds, at least 60", r.stderr)

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

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare") and shutil.which("setpriv")
                         and vigie_node(),
                         "needs root, unshare, setpriv (private mount and network namespaces) "
                         "and VIGIE_BUILD's vigie-node (the keys)")
    def test_broker_entrypoint_runs_the_generated_configs(self):
        # What the broker containers do, in a private mount + network
        # namespace (gone when the script exits) as the images' user (uid
        # 10001): secrets-init, `vigie-inventory keys`, then
        # vigie-broker-start for the central and the Louvre's site broker,
        # each reading its own docker/secrets/services/<service>/ as its
        # /etc/vigie/tls. /etc/hosts names them as compose does, so the
        # bridge and the clients verify the compose service names. The
        # site's listener moves to 18883 (one network namespace for two
        # brokers); everything else is the generated config.
        out = self.make_keys()
        work = os.path.join(self.tmp, "work")
        os.makedirs(work)
        os.chmod(self.tmp, 0o755)
        os.chmod(work, 0o755)
        with open(os.path.join(work, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost broker-central broker-louvre wrong-name\n")
        nodelay = os.path.join(BUILD or "", "lib", "libvigie-nodelay.so")
        preload = f"LD_PRELOAD={nodelay}" if os.path.exists(nodelay) else "VIGIE_NO_PRELOAD=1"
        script = textwrap.dedent(f"""\
            set -eu
            ip link set lo up
            mount --bind {work}/hosts /etc/hosts
            mkdir -p /run/vigie /var/lib/vigie
            mount -t tmpfs tmpfs /run/vigie
            mount -t tmpfs tmpfs /var/lib/vigie
            chmod 1777 /run/vigie
            mkdir -p /run/vigie/services /var/lib/vigie/secrets /var/lib/vigie/grants
            # As compose's bind mount: the container sees only its folder.
            mount --bind {out}/services /run/vigie/services
            chown -R {CONTAINER_UID}:{CONTAINER_UID} /var/lib/vigie
            as() {{ setpriv --reuid={CONTAINER_UID} --regid={CONTAINER_UID} --clear-groups "$@"; }}
            d={SOURCE}/docker
            svc=/run/vigie/services
            all=/var/lib/vigie/secrets
            g=/var/lib/vigie/grants
            as $d/bin/vigie-secrets-init $d/config/brokers $all $d/config/secrets-grants $g
            # Each container reads its own grants only (its secrets volume).
            [ "$(cd $g/relay && find . -type f | sort)" = "./central/relay.pw" ]
            [ "$(cd $g/node-louvre-apollo-1 && find . -type f | sort | tr '\n' ' ')" = \
              "./central/node-louvre-direct.pw ./louvre/node.pw " ]
            [ ! -e $g/broker-louvre/central/relay.pw ] && [ -s $g/broker-louvre/central/bridge-louvre.pw ]
            [ ! -e $g/broker-louvre/orsay ] && [ -s $g/broker-central/central/relay.pw ]
            echo "grants ok"
            pids=""
            trap 'kill $pids 2>/dev/null || true; wait' EXIT
            for b in central louvre; do
              mkdir -p /var/lib/vigie/$b-data /run/vigie/conf-$b
              sed -e "s|/etc/vigie/tls/|$svc/broker-$b/|g" \\
                  -e "s|/run/vigie/broker/|/run/vigie/broker-$b/|g" \\
                  -e "s|/var/lib/vigie/mosquitto/|/var/lib/vigie/$b-data/|g" \\
                  -e "s|^listener 8883 |listener $([ $b = central ] && echo 8883 || echo 18883) |" \\
                  $d/config/brokers/$b/mosquitto.conf >/run/vigie/conf-$b/mosquitto.conf
              cp $d/config/brokers/$b/acl /run/vigie/conf-$b/acl
              chown -R {CONTAINER_UID}:{CONTAINER_UID} /var/lib/vigie /run/vigie/conf-$b
              # Not through as(): $! must be the broker's own pid chain.
              setpriv --reuid={CONTAINER_UID} --regid={CONTAINER_UID} --clear-groups \\
                env {preload} VIGIE_BROKER_RUN=/run/vigie/broker-$b timeout 60 \\
                $d/bin/vigie-broker-start /run/vigie/conf-$b $g/broker-$b >/run/vigie/$b.log 2>&1 &
              pids="$pids $!"
            done
            relay_pw=$(cat $g/relay/central/relay.pw)
            node_pw=$(cat $g/node-louvre-apollo-1/louvre/node.pw)
            ok=0
            for _ in $(seq 100); do
              if as timeout 5 mosquitto_pub --cafile $svc/relay/ca.crt --cert $svc/relay/client.crt \\
                   --key $svc/relay/client.key -h broker-central -p 8883 -u relay -P "$relay_pw" \\
                   -t vigie/v1/status/x -m x -q 1 2>/dev/null; then ok=1; break; fi
              sleep 0.1
            done
            [ $ok = 1 ] || {{ echo "broker central: relay could not log in"; cat /run/vigie/central.log; exit 1; }}
            echo "broker central ok"
            # What must fail: a wrong password, no client certificate,
            # plaintext, a host name the certificate does not carry.
            if as timeout 5 mosquitto_pub --cafile $svc/relay/ca.crt --cert $svc/relay/client.crt \\
                 --key $svc/relay/client.key -h broker-central -p 8883 -u relay -P wrong \\
                 -t vigie/v1/status/x -m x 2>/dev/null; then echo "a wrong password was accepted"; exit 1; fi
            if as timeout 5 mosquitto_pub --cafile $svc/relay/ca.crt -h broker-central -p 8883 \\
                 -u relay -P "$relay_pw" -t vigie/v1/status/x -m x 2>/dev/null; then
              echo "a client without a certificate was accepted"; exit 1; fi
            if as timeout 5 mosquitto_pub -h broker-central -p 8883 -u relay -P "$relay_pw" \\
                 -t vigie/v1/status/x -m x 2>/dev/null; then echo "plaintext was accepted"; exit 1; fi
            if as timeout 5 mosquitto_pub --cafile $svc/relay/ca.crt --cert $svc/relay/client.crt \\
                 --key $svc/relay/client.key -h wrong-name -p 8883 -u relay -P "$relay_pw" \\
                 -t vigie/v1/status/x -m x 2>/dev/null; then
              echo "a certificate without the host name was accepted"; exit 1; fi
            echo "refusals ok"
            # A node's event crosses the Louvre broker and the TLS bridge to
            # the central, where the relay reads it.
            as timeout 30 mosquitto_sub --cafile $svc/relay/ca.crt --cert $svc/relay/client.crt \\
              --key $svc/relay/client.key -h broker-central -p 8883 -u relay -P "$relay_pw" \\
              -t 'vigie/v1/site/louvre/#' -C 1 -q 1 >/run/vigie/got &
            sub=$!
            pids="$pids $sub"
            n=$svc/node-louvre-apollo-1
            for _ in $(seq 200); do
              [ -s /run/vigie/got ] && break
              as timeout 5 mosquitto_pub --cafile $n/ca.crt --cert $n/site.crt --key $n/site.key \\
                -h broker-louvre -p 18883 -u node -P "$node_pw" \\
                -t vigie/v1/site/louvre/node/apollo-1/event -m over-tls -q 1 2>/dev/null || true
              sleep 0.1
            done
            grep -qx over-tls /run/vigie/got || {{ echo "nothing crossed the bridge";
              cat /run/vigie/louvre.log /run/vigie/central.log; exit 1; }}
            grep -q "^remote_password $(cat $all/central/bridge-louvre.pw)\$" /run/vigie/broker-louvre/mosquitto.conf
            ! grep -q '@SECRET' /run/vigie/broker-louvre/mosquitto.conf
            echo "bridge over TLS ok"
            """)
        r = run(["unshare", "-m", "-n", "--propagation", "private", "bash", "-c", script])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for what in ("grants ok", "broker central ok", "refusals ok", "bridge over TLS ok"):
            self.assertIn(what, r.stdout)


if __name__ == "__main__":
    unittest.main()
