"""The whole Vigie topology of an inventory, with real processes, for fault
tests on the network itself (issue 8, item 3).

    mesh = Mesh(inventory="inventory/paris.yaml")   # or MeshTestCase: self.mesh
    mesh.start()                 # brokers, relay, posts, nodes; waits until events flow
    ans = mesh.inject("louvre", "apollo-1", ["kind=motion zone=apollo-gallery"])
    mesh.cut("louvre")           # nftables drop inside the museum's namespace
    mesh.restore("louvre")
    mesh.relay_rows("SELECT count(*) FROM events")
    mesh.post_dispatches("pp-paris-1")
    mesh.close()                 # every process by PID, then the namespaces

What runs where (as root, the path CI takes):

    namespace <tag>-central          namespace <tag>-site-<museum>   (one per museum)
      br0 10.77.0.1/24 <--veth-->      uplink 10.77.0.<11+i>/24
      central broker (inventory port,   site broker on 127.0.0.1 (inventory site port)
        websockets too)                 vigie-node(s): primary = site broker,
      vigie-relay, vigie-post(s)          secondary = central broker (direct users)

A museum reaches the central only through its veth, so `cut()` is a real
network failure: an nftables drop rule in the museum's namespace (the
default, silent like a dead WAN) or its uplink set down. The namespaces have
no other interface and no default route: nothing leaves them. Nothing of the
test process connects to their addresses from the host's namespace (where
10.77.0.0/24 would follow the default route off the machine): the test's own
MQTT clients run in a thread that entered the namespace (`in_netns`), and
nodes take events on Unix sockets.

A standby central (`standby=True`, issue 8's hung-central scenario) gets its
own namespace on the same bridge, 10.77.0.2: generated with
`vigie-broker-config central --primary-secrets` (the central's users and
passwords), listed by every site bridge (`--standby-host/--standby-port`),
held by the relay and the posts (`standby:` in their configs), and the
nodes' secondary path. The central broker can then hang (SIGSTOP) while the
standby stays reachable.

Not root (or VIGIE_MESH_LOOPBACK=1): the same code path on 127.0.0.1 with
free ports and no namespaces; `cut()` then raises SkipTest.

Configs come from the inventory through the deployment's own tools:
vigie-broker-config for the brokers (the mesh's addresses as --bind and
--central-host), tools/vigie-inventory's writers for the node, relay and
post configs, of which only hosts, ports, password files, TLS files and
local paths are replaced. As deployed, every link uses TLS with client
certificates and every node signs its events: broker-config/vigie-keys
makes the CA, a server certificate per broker (the central's names the
mesh's central addresses), a client certificate per broker user, the
nodes' Ed25519 keys and the relay's trust store. Brokers run with
libvigie-nodelay preloaded. Namespace names carry the test process's pid
(`vgm-<pid>-<k>-...`); namespaces of a run whose process is gone are removed
(and what still ran in them killed, by PID) before a new mesh starts.
"""

import ctypes
import importlib.machinery
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import vigie_harness as vh  # noqa: E402  (after the path: tests/integration)
from vigie_harness import Harness, bin_path, read_secrets, wait_for  # noqa: E402

SOURCE = vh.SOURCE
DEFAULT_INVENTORY = os.path.join(SOURCE, "inventory", "paris.yaml")
IP = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin") or "/usr/sbin/ip"
NFT = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin") or "/usr/sbin/nft"

NS_PREFIX = "vgm-"          # namespaces: vgm-<pid>-<k>-central, vgm-<pid>-<k>-site-<museum>
SUBNET = "10.77.0"          # only inside the mesh's namespaces
CENTRAL_ADDR = f"{SUBNET}.1"
STANDBY_ADDR = f"{SUBNET}.2"
UPLINK = "uplink"           # the museum side of its veth, inside its namespace
CUT_TABLE = "vigie_mesh_cut"
CLONE_NEWNET = 0x40000000
KEYS = os.path.join(SOURCE, "broker-config", "vigie-keys")
TEST_CLIENT = "vigie-mesh-test"  # the client certificate of the test's own probes

_libc = ctypes.CDLL(None, use_errno=True)
_mesh_ids = itertools.count(1)


def netns_wanted():
    """Namespaces when root and `ip` exists, unless VIGIE_MESH_LOOPBACK=1."""
    if os.environ.get("VIGIE_MESH_LOOPBACK"):
        return False
    return os.geteuid() == 0 and os.access(IP, os.X_OK)


def load_inventory_tool():
    """tools/vigie-inventory as a module (it has no .py suffix)."""
    path = os.path.join(SOURCE, "tools", "vigie-inventory")
    loader = importlib.machinery.SourceFileLoader("vigie_inventory", path)
    spec = importlib.util.spec_from_loader("vigie_inventory", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def run(argv, check=True, timeout=30, input=None):
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def in_netns(ns, fn, *args, **kw):
    """Run fn(*args, **kw) in a thread that entered network namespace `ns`
    (None: here) and return its value. Sockets opened there, and by the
    threads it starts (a paho client's loop), live in that namespace."""
    if ns is None:
        return fn(*args, **kw)
    box = {}

    def body():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=body, name=f"netns {ns}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_namespaces():
    """Namespaces of earlier mesh runs whose test process is gone."""
    if not os.access(IP, os.X_OK):
        return []
    out = []
    r = run([IP, "netns", "list"], check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(re.escape(NS_PREFIX) + r"(\d+)-.+", name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            out.append(name)
    return out


def remove_namespace(name):
    """Kill what still runs in namespace `name` (by PID), then delete it;
    its veths go with it."""
    r = run([IP, "netns", "pids", name], check=False)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run([IP, "netns", "del", name], check=False)


class Net:
    """Addresses and, as root, namespaces of one mesh. `netns` False: all on
    127.0.0.1 (ns None everywhere)."""

    def __init__(self, museums, netns, standby=False):
        self.netns = netns
        # vgm-<pid>-<k>: the pid tells a later run whether these are stale;
        # k lets one process run meshes one after the other (or at once).
        self.tag = f"{NS_PREFIX}{os.getpid()}-{next(_mesh_ids)}"
        self.museums = list(museums)
        self.created = []
        self.cut_state = {}
        if netns:
            self.central_ns = f"{self.tag}-central"
            self.standby_ns = f"{self.tag}-standby" if standby else None
            self.museum_ns = {m: f"{self.tag}-site-{m}" for m in self.museums}
            self.central_addr = CENTRAL_ADDR
            self.standby_addr = STANDBY_ADDR
            self.museum_addr = {m: f"{SUBNET}.{11 + i}" for i, m in enumerate(self.museums)}
            too_long = [n for n in self.museum_ns.values() if len(n) > 64]
            if too_long or len(self.museums) > 200:
                raise ValueError(f"too many museums or ids too long for namespaces: {too_long}")
        else:
            self.central_ns = self.standby_ns = None
            self.museum_ns = {m: None for m in self.museums}
            self.central_addr = self.standby_addr = vh.HOST
            self.museum_addr = {m: vh.HOST for m in self.museums}

    # where a museum's own clients reach its site broker: its loopback
    def site_addr(self, museum):
        return vh.HOST

    def setup(self):
        if not self.netns:
            return
        for name in stale_namespaces():
            vh._emit(f"mesh: removing namespace {name} left by an earlier run")
            remove_namespace(name)
        c = self.central_ns
        self._add_ns(c)
        run([IP, "-n", c, "link", "add", "br0", "type", "bridge"])
        run([IP, "-n", c, "addr", "add", f"{self.central_addr}/24", "dev", "br0"])
        run([IP, "-n", c, "link", "set", "br0", "up"])
        hosts = [(m, self.museum_ns[m], self.museum_addr[m]) for m in self.museums]
        if self.standby_ns:
            hosts.append(("standby", self.standby_ns, self.standby_addr))
        for i, (_, ns, addr) in enumerate(hosts):
            self._add_ns(ns)
            port = f"p{i}"  # the central's end, on br0
            # Made directly in the two namespaces: nothing appears on the host.
            run([IP, "-n", c, "link", "add", port, "type", "veth", "peer", "name", UPLINK,
                 "netns", ns])
            run([IP, "-n", c, "link", "set", port, "master", "br0"])
            run([IP, "-n", c, "link", "set", port, "up"])
            run([IP, "-n", ns, "addr", "add", f"{addr}/24", "dev", UPLINK])
            run([IP, "-n", ns, "link", "set", UPLINK, "up"])

    def _add_ns(self, ns):
        run([IP, "netns", "add", ns])
        self.created.append(ns)
        run([IP, "-n", ns, "link", "set", "lo", "up"])

    def teardown(self):
        for ns in reversed(self.created):
            remove_namespace(ns)
        self.created = []

    def leftovers(self):
        """Namespaces of this mesh that still exist."""
        if not self.netns:
            return []
        names = {l.split()[0] for l in run([IP, "netns", "list"], check=False).stdout.splitlines()
                 if l.split()}
        return sorted(n for n in names if n.startswith(self.tag + "-"))

    def wrap(self, ns, argv):
        """argv run inside namespace `ns` (ip netns exec execs it: same pid)."""
        return list(argv) if ns is None else [IP, "netns", "exec", ns] + list(argv)

    # faults
    def cut(self, museum, how="nft"):
        """Cut a museum off the central: `nft` drops everything on its uplink
        inside its namespace (a silent WAN failure), `link` sets the uplink
        down."""
        if not self.netns:
            raise unittest.SkipTest("cutting a museum's link needs network namespaces (root)")
        ns = self.museum_ns[museum]
        if how == "nft":
            rules = (f"table inet {CUT_TABLE} {{\n"
                     f"  chain in {{ type filter hook input priority 0; policy accept;\n"
                     f"    iifname \"{UPLINK}\" drop\n  }}\n"
                     f"  chain out {{ type filter hook output priority 0; policy accept;\n"
                     f"    oifname \"{UPLINK}\" drop\n  }}\n}}\n")
            run([IP, "netns", "exec", ns, NFT, "-f", "-"], input=rules)
        elif how == "link":
            run([IP, "-n", ns, "link", "set", UPLINK, "down"])
        else:
            raise ValueError(f"cut: unknown method {how!r} (nft, link)")
        self.cut_state[museum] = how

    def restore(self, museum):
        how = self.cut_state.pop(museum)
        ns = self.museum_ns[museum]
        if how == "nft":
            run([IP, "netns", "exec", ns, NFT, "delete", "table", "inet", CUT_TABLE])
        else:
            run([IP, "-n", ns, "link", "set", UPLINK, "up"])


class Pki:
    """The mesh's CA, certificates and node signing keys, made with
    broker-config/vigie-keys as for a deployment: a server certificate per
    broker (the central's names the central and standby addresses), a client
    certificate per broker user (CN = the user) and an Ed25519 key per node."""

    def __init__(self, root):
        self.root = root
        self.ca = os.path.join(root, "ca", "ca.crt")
        self.trust = os.path.join(root, "trust")

    def make(self, central_hosts, museums, posts, clients, nodes):
        argv = [sys.executable, KEYS, "--out", self.root, "--quiet",
                "--vigie-node", bin_path("vigie-node")]
        for h in central_hosts:
            argv += ["--central-host", h]
        for m in museums:
            argv += ["--site", m]
        for p in posts:
            argv += ["--post", p]
        for c in clients:
            argv += ["--client", c]
        for site, node in nodes:
            argv += ["--node", f"{site}/{node}"]
        run(argv, timeout=120)
        return self

    def server(self, name):
        return (os.path.join(self.root, "brokers", f"{name}.crt"),
                os.path.join(self.root, "brokers", f"{name}.key"))

    def client(self, user):
        return (os.path.join(self.root, "clients", f"{user}.crt"),
                os.path.join(self.root, "clients", f"{user}.key"))

    def tls(self, user):
        """A daemon's `tls:` section for a connection as `user`."""
        cert, key = self.client(user)
        return {"ca": self.ca, "cert": cert, "key": key}

    def signing_key(self, site, node):
        return os.path.join(self.root, "nodes", f"{site}-{node}.key")


class MeshBroker(vh.ProcHolder):
    """A mosquitto broker of the mesh, in namespace `ns` (None: here),
    listening on `host:port`; the test's own clients of it (readiness probes,
    subscribers) run inside that namespace too."""

    def __init__(self, mesh, name, role, ns, host, port, ready_user):
        self.mesh = mesh
        self.name = name
        self.role = role
        self.ns = ns
        self.host = host
        self.port = port
        self.ready_user = ready_user
        self.config_dir = mesh.path("brokers", name)
        self.conf = os.path.join(self.config_dir, "mosquitto.conf")
        self.users = {}
        self.proc = None

    def generate(self, args):
        pki = self.mesh.pki
        cert = "central" if self.role == "central" else self.name
        argv = list(args) + ["--out", self.config_dir, "--port", str(self.port),
                             "--bind", self.host, "--quiet",
                             "--cafile", pki.ca, "--certfile", pki.server(cert)[0],
                             "--keyfile", pki.server(cert)[1], "--require-certificate"]
        if os.geteuid() == 0:
            argv.append("--run-as-root")
        self.mesh.run_generator(argv, check=True)
        self.users = read_secrets(os.path.join(self.config_dir, "secrets"))[0]
        preload = vh.broker_env() or {}
        env = [f"{k}={v}" for k, v in preload.items()]
        # LD_PRELOAD through env(1) so that only mosquitto gets it, not ip.
        argv = (["env"] + env if env else []) + [vh.MOSQUITTO, "-c", self.conf]
        self.proc = self.mesh._new_proc(self.name, self.mesh.net.wrap(self.ns, argv))

    def password(self, user):
        return self.users[user]

    def start(self, timeout=15.0):
        self.proc.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15.0):
        def ready():
            self.proc.check_running()
            return self.connect_rc(self.ready_user, timeout=1.0) == 0
        wait_for(ready, timeout, f"{self.name} to accept connections on {self.host}:{self.port}",
                 interval=0.1)

    def connect_rc(self, user, password=None, **kw):
        """CONNACK code for `user`, from inside the broker's namespace, over
        TLS with the mesh's test client certificate."""
        pw = self.password(user) if password is None else password
        pki = self.mesh.pki
        cert, key = pki.client(TEST_CLIENT)
        return in_netns(self.ns, vh.try_connect, self.host, self.port, user, pw, ca=pki.ca,
                        certfile=cert, keyfile=key, **kw)

    def subscriber(self, user, topics, **kw):
        """A vigie_harness.Subscriber on this broker, its socket in the
        broker's namespace; closed with the mesh."""
        pki = self.mesh.pki
        cert, key = pki.client(TEST_CLIENT)

        def make():
            return vh.Subscriber(self.host, self.port, user, self.password(user), topics,
                                 name=kw.pop("name", f"{user}@{self.name}"), ca=pki.ca,
                                 certfile=cert, keyfile=key, **kw)
        s = in_netns(self.ns, make)
        self.mesh.clients.append(s)
        return s


class Mesh(Harness):
    """A vigie_harness.Harness that starts a whole inventory's topology.
    close() stops every process by PID (reverse start order: nodes, posts,
    relay, site brokers, central) and then deletes the namespaces."""

    def __init__(self, inventory=DEFAULT_INVENTORY, name="mesh", netns=None, standby=False,
                 museums=None, edit=None, node_settings=None):
        """`museums`: only these of the inventory; `edit(model)`: change the
        validated inventory before anything is written; `node_settings`:
        node config keys the inventory does not hold (failover_time, ...)."""
        inv = load_inventory_tool()
        model = inv.validate(inventory)
        if museums is not None:  # a smaller topology of the same inventory
            model["museums"] = [m for m in model["museums"] if m["id"] in museums]
        if edit is not None:
            edit(model)
        super().__init__(name)  # from here on close() cleans up
        self.node_settings = dict(node_settings or {})
        self.inv = inv
        self.inventory = inventory
        self.model = model
        self.museums = [m["id"] for m in self.model["museums"]]
        self.posts = [p["id"] for p in self.model["posts"]]
        self.standby_wanted = standby
        self.net = Net(self.museums, netns_wanted() if netns is None else netns, standby)
        self.brokers = {}
        self.sites = {}
        self.central = self.standby = None
        self.relay = None
        self.post_procs = {}
        self.nodes = {}          # (museum, node) -> {"proc", "socket", "outbox", "conf"}
        self.relay_db = self.path("relay", "relay.db")
        self.pki = Pki(self.path("pki"))
        self.started = False

    # --- build --------------------------------------------------------------
    def _ports(self):
        c = self.model["central"]
        if self.net.netns:  # each namespace has its own ports: the inventory's
            return c["port"], c["ws_port"], self.inv.SITE_PORT
        return vh.free_port(), vh.free_port(), None

    def _pw_file(self, broker, user):
        """The password of `user` at `broker`, in a 0600 file (password_file:)."""
        d = self.path("secrets", broker.name)
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, f"{user}.pw")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(broker.password(user) + "\n")
        return path

    def _write_yaml(self, rel, text_or_doc, what):
        path = self.path(*rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        text = text_or_doc if isinstance(text_or_doc, str) else (
            f"# {what}: tools/vigie-inventory's config with the mesh's addresses and paths\n"
            + yaml.safe_dump(text_or_doc, sort_keys=False, allow_unicode=True))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def _check_config(self, binary, conf):
        r = subprocess.run([bin_path(binary), "check-config", conf], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError(f"{binary} check-config {conf} failed:\n{r.stderr}{r.stdout}")

    def _broker_section(self, broker, user, base=None, cert_user=None):
        sec = dict(base or {})
        sec.pop("password", None)
        sec.update(host=broker.host, port=broker.port, username=user,
                   password_file=self._pw_file(broker, user),
                   tls=self.pki.tls(cert_user or user))
        return sec

    def generate(self):
        """Every config, from the inventory, into the mesh's directory."""
        m = self.model
        cport, ws_port, site_port = self._ports()
        central_hosts = [self.net.central_addr]
        if self.standby_wanted:
            central_hosts.append(self.net.standby_addr)
        self.pki.make(central_hosts, self.museums, self.posts,
                      [TEST_CLIENT, "node"] + [f"node-{x}-direct" for x in self.museums],
                      [(mus["id"], n["id"]) for mus in m["museums"] for n in mus["nodes"]])
        cargs = ["central", "--ws-port", str(ws_port)]
        for mus in m["museums"]:
            cargs += ["--site", mus["id"]]
        for p in m["posts"]:
            cargs += ["--post", p["id"]]
        if m["central"]["direct_node_users"]:
            cargs.append("--direct-node-users")
        self.central = MeshBroker(self, "central", "central", self.net.central_ns,
                                  self.net.central_addr, cport, "relay")
        self.central.generate(cargs)
        self.brokers["central"] = self.central
        if self.standby_wanted:
            # The same users with the same passwords: any client may use either.
            sport = cport if self.net.netns else vh.free_port()
            sws = ws_port if self.net.netns else vh.free_port()
            sargs = (["central", "--ws-port", str(sws)] + cargs[3:]
                     + ["--primary-secrets", os.path.join(self.central.config_dir, "secrets")])
            self.standby = MeshBroker(self, "standby", "central", self.net.standby_ns,
                                      self.net.standby_addr, sport, "relay")
            self.standby.generate(sargs)
            self.brokers["standby"] = self.standby
        for mus in m["museums"]:
            mid = mus["id"]
            port = site_port or vh.free_port()
            b = MeshBroker(self, f"site-{mid}", "site", self.net.museum_ns[mid],
                           self.net.site_addr(mid), port, "monitor")
            bcert, bkey = self.pki.client(f"bridge-{mid}")
            b.generate(["site", "--site", mid, "--central-host", self.central.host,
                        "--central-port", str(self.central.port),
                        "--central-secrets", os.path.join(self.central.config_dir, "secrets"),
                        "--bridge-cafile", self.pki.ca, "--bridge-certfile", bcert,
                        "--bridge-keyfile", bkey]
                       + self.site_extra_args(mid))
            self.sites[mid] = b
            self.brokers[b.name] = b
        self._relay_config()
        for p in m["posts"]:
            self._post_config(p)
        for mus in m["museums"]:
            for i, n in enumerate(mus["nodes"]):
                self._node_config(mus, n, i == 0)

    def site_extra_args(self, museum):
        """More vigie-broker-config site options: with a standby central the
        bridge lists both centrals."""
        if self.standby:
            return ["--standby-host", self.standby.host, "--standby-port", str(self.standby.port)]
        return []

    def _relay_config(self):
        cfg = yaml.safe_load(self.inv.relay_config(self.model))
        cfg["database"] = self.relay_db
        cfg["trust"] = self.pki.trust  # signed events only, as deployed
        cfg["broker"] = self._broker_section(self.central, "relay", cfg.get("broker"))
        if self.standby:
            cfg["standby"] = self._broker_section(self.standby, "relay", cfg.get("broker"))
        os.makedirs(os.path.dirname(self.relay_db), exist_ok=True)
        conf = self._write_yaml("relay/relay.yaml", cfg, "vigie-relay")
        self._check_config("vigie-relay", conf)
        self.relay = self._new_proc("relay", self.net.wrap(
            self.net.central_ns, [bin_path("vigie-relay"), "-c", conf]))

    def _post_config(self, p):
        cfg = yaml.safe_load(self.inv.post_config(self.model, p))
        user = f"post-{p['id']}"
        cfg["broker"] = self._broker_section(self.central, user, cfg.get("broker"))
        if self.standby:
            cfg["standby"] = self._broker_section(self.standby, user, cfg.get("broker"))
        conf = self._write_yaml(f"posts/{p['id']}.yaml", cfg, f"vigie-post {p['id']}")
        self._check_config("vigie-post", conf)
        self.post_procs[p["id"]] = self._new_proc(f"post-{p['id']}", self.net.wrap(
            self.net.central_ns, [bin_path("vigie-post"), "-c", conf, "--json"]))

    def _node_config(self, mus, n, first):
        mid, nid = mus["id"], n["id"]
        cfg = yaml.safe_load(self.inv.node_config(self.model, mus, n, first))
        d = self.path("nodes", f"{mid}-{nid}")
        os.makedirs(d, exist_ok=True)
        cfg["outbox"] = os.path.join(d, "outbox.db")
        # Unix socket paths are short (108 bytes): not named by the ids.
        os.makedirs(self.path("sock"), exist_ok=True)
        sock = self.path("sock", f"{len(self.nodes)}.sock")
        cfg["socket"] = sock
        cfg["signing_key"] = self.pki.signing_key(mid, nid)
        cfg.update(self.node_settings)
        site = self.sites[mid]
        brokers = cfg["brokers"]
        brokers["primary"] = self._broker_section(site, brokers["primary"]["username"],
                                                  brokers["primary"])
        if "secondary" in brokers:
            # The secondary path: straight to the central, or to the standby
            # central when there is one (it is what survives a hung central).
            target = self.standby or self.central
            brokers["secondary"] = self._broker_section(target, brokers["secondary"]["username"],
                                                        brokers["secondary"])
        conf = self._write_yaml(f"nodes/{mid}-{nid}/node.yaml", cfg, f"vigie-node {mid}/{nid}")
        self._check_config("vigie-node", conf)
        proc = self._new_proc(f"node-{mid}-{nid}", self.net.wrap(
            self.net.museum_ns[mid], [bin_path("vigie-node"), "-c", conf]))
        self.nodes[(mid, nid)] = {"proc": proc, "socket": sock, "outbox": cfg["outbox"],
                                  "conf": conf}

    # --- run ----------------------------------------------------------------
    def start(self, timeout=60.0):
        """Namespaces, configs, then every process in dependency order; returns
        once an event of every node has reached the relay's database."""
        for b in ("vigie-node", "vigie-relay", "vigie-post"):
            bin_path(b)  # SkipTest early when not built
        self.net.setup()
        self.generate()
        self.central.start()
        if self.standby:
            self.standby.start()
        for b in self.sites.values():
            b.start()
        self._start_relay()
        for pid, proc in self.post_procs.items():
            proc.start()
        for pid, proc in self.post_procs.items():
            wait_for(lambda: proc.check_running() or self.post_connected(pid), 20,
                     f"post {pid} to connect", interval=0.1)
            if self.standby:  # it holds both centrals
                wait_for(lambda: proc.check_running() or self.post_connections(pid) >= 2, 20,
                         f"post {pid} to connect to both centrals", interval=0.1)
        for node in self.nodes.values():
            node["proc"].start()
        self.started = True
        self.wait_flowing(timeout)
        return self

    def _start_relay(self):
        """Start the relay and wait until it holds its central(s)."""
        marks = (["connected to the central broker primary",
                  "connected to the central broker standby"] if self.standby
                 else ["connected to the central broker ("])
        before = [self.relay.log_text().count(m) for m in marks]
        self.relay.start()
        wait_for(lambda: self.relay.check_running() or all(
            self.relay.log_text().count(m) > b for m, b in zip(marks, before)),
            20, "the relay to connect to the central broker(s)", interval=0.1)

    def post_lines(self, post):
        """The post's JSON lines so far (its log holds stderr lines too)."""
        out = []
        for line in self.post_procs[post].log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def post_connected(self, post):
        st = [x for x in self.post_lines(post) if x.get("type") == "status"]
        return bool(st) and st[-1].get("connected")

    def post_connections(self, post):
        """How many times the post logged a connection to a central."""
        return len(re.findall(r"mqtt \S+: connected to ", self.post_procs[post].log_text()))

    def post_dispatches(self, post, new_only=False):
        return [x for x in self.post_lines(post) if x.get("type") == "dispatch"
                and (x.get("new") or not new_only)]

    def wait_flowing(self, timeout=60.0):
        """A test event from every node reaches the relay's database: node,
        site broker, bridge, central and relay all work."""
        marks = {}
        for (mid, nid) in self.nodes:
            text = f"mesh probe {mid}/{nid} {time.time():.6f}"
            boot, seq = self.inject(mid, nid, [f'kind=test state=test text="{text}"'])[0]
            marks[(mid, nid)] = (boot, seq)

        def arrived():
            for (mid, nid), (boot, seq) in marks.items():
                if not self.has_event(mid, nid, boot, seq):
                    return False
            return True
        wait_for(arrived, timeout, "a probe event of every node at the relay", interval=0.2)
        return marks

    # --- nodes --------------------------------------------------------------
    def inject(self, museum, node, lines, timeout=60.0):
        """Write event lines to a node's socket (a Unix socket: no network);
        returns (boot_id, seq) per line, in order, once each is durable in the
        node's outbox. Raises on an ERR answer."""
        path = self.nodes[(museum, node)]["socket"]
        proc = self.nodes[(museum, node)]["proc"]
        box = {}

        def connected():
            proc.check_running()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                return False
            box["s"] = s
            return True
        wait_for(connected, 15, f"the socket of node {museum}/{node}", interval=0.05)
        s = box["s"]
        s.settimeout(timeout)
        answers, buf = [], b""
        try:
            s.sendall("".join(l + "\n" for l in lines).encode())
            deadline = time.monotonic() + timeout
            while len(answers) < len(lines):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{museum}/{node}: {len(answers)} of {len(lines)} "
                                         f"lines answered within {timeout} s")
                data = s.recv(65536)
                if not data:
                    raise AssertionError(f"{museum}/{node} closed its socket after "
                                         f"{len(answers)} answers")
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    answers.append(line.decode())
        finally:
            s.close()
        out = []
        for line, a in zip(lines, answers):
            if not a.startswith("OK "):
                raise AssertionError(f"{museum}/{node} refused {line!r}: {a}")
            _, boot, seq = a.split()
            out.append((int(boot), int(seq)))
        return out

    # --- the relay's database -----------------------------------------------
    def relay_rows(self, sql, *args):
        if not os.path.exists(self.relay_db):
            return []
        db = sqlite3.connect(f"file:{self.relay_db}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # the relay is still creating it
                return []
            raise
        finally:
            db.close()

    def outbox_pending(self, museum, node):
        """Events the node holds unreceipted (its outbox, read-only)."""
        path = self.nodes[(museum, node)]["outbox"]
        if not os.path.exists(path):
            return 0
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0
        finally:
            db.close()

    def has_event(self, site, node, boot, seq):
        return bool(self.relay_rows("SELECT 1 FROM events WHERE site=? AND node=? AND "
                                    "boot_id=? AND seq=?", site, node, boot, seq))

    def incidents(self, where="1", *args):
        """Incidents of the relay's database as dicts (the Incident message's
        fields, from its data column, plus the row's own)."""
        pb = vh._pb()
        out = []
        for row in self.relay_rows(
                "SELECT id, site, zone, subject, state, trouble, opened_us, closed_us, data "
                f"FROM incidents WHERE {where} ORDER BY opened_us", *args):
            d = dict(zip(("id", "site", "zone", "subject", "state", "trouble", "opened_us",
                          "closed_us"), row[:8]))
            try:
                inc = pb.Incident.FromString(row[8])
                d["event_count"] = inc.event_count
                d["confirmed"] = inc.confirmed
                d["kind"] = inc.kind
                d["level"] = inc.level
            except Exception:  # noqa: BLE001  (a format of the store we do not read)
                pass
            out.append(d)
        return out

    def dispatch_shown(self):
        """Each dispatch the relay's database says it sent to a post (site
        alerts excluded) against that post's console: None while one is not
        shown yet, (dispatch, post, n) when one is shown as new n > 1 times,
        True when each is shown as new exactly once."""
        for did, post in self.relay_rows("SELECT id, post FROM dispatches WHERE alert=0"):
            if post not in self.post_procs:
                continue
            n = sum(1 for x in self.post_dispatches(post, new_only=True) if x["id"] == did)
            if n != 1:
                return None if n == 0 else (did, post, n)
        return True

    # --- faults -------------------------------------------------------------
    def cut(self, museum, how="nft"):
        self.net.cut(museum, how)

    def restore(self, museum):
        self.net.restore(museum)

    # --- end ----------------------------------------------------------------
    def close(self):
        """Every process by PID (the harness), then the namespaces, also when
        a test failed or the runner got SIGTERM."""
        try:
            super().close()
        finally:
            self.net.teardown()

    def assert_no_leftover(self):
        super().assert_no_leftover()
        left = self.net.leftovers()
        if left:
            raise AssertionError(f"namespaces still present: {', '.join(left)}")


class MeshTestCase(unittest.TestCase):
    """unittest base: self.mesh = Mesh(**self.mesh_options()), not started.
    On failure the process logs' tails are printed; whatever happens every
    process is stopped and the namespaces are deleted."""

    def mesh_options(self):
        return {}

    def setUp(self):
        super().setUp()
        self.mesh = Mesh(name=f"mesh-{type(self).__name__}"[:40], **self.mesh_options())
        self.addCleanup(self._close_mesh)

    def assert_each_dispatch_shown_once(self, timeout=30):
        """Every dispatch of the relay's database reaches its post and is
        shown there as new exactly once (re-sends and second copies only
        update it)."""
        res = wait_for(self.mesh.dispatch_shown, timeout,
                       "every dispatch of the relay's database at its post", interval=0.5)
        self.assertIs(res, True, f"a dispatch shown as new more than once: {res}")
        return len(self.mesh.relay_rows("SELECT id FROM dispatches WHERE alert=0"))

    def _close_mesh(self):
        failed = vh.HarnessTestCase._test_failed(self)
        if failed or os.environ.get("VIGIE_SHOW_LOGS"):
            vh._emit(f"\n{self.mesh.log_tails(40)}")
        try:
            self.mesh.close()
            self.mesh.assert_no_leftover()
        finally:
            self.mesh.remove_tmp(failed)


def report(text):
    print(f"\n    [mesh] {text}", file=sys.stderr, flush=True)


def main(argv=None):
    """Start an inventory's topology and keep it up until Ctrl-C."""
    import argparse
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("inventory", nargs="?", default=DEFAULT_INVENTORY)
    p.add_argument("--seconds", type=float, default=0, help="stop after this (0: Ctrl-C)")
    p.add_argument("--loopback", action="store_true", help="no namespaces, 127.0.0.1")
    a = p.parse_args(argv)
    mesh = Mesh(a.inventory, netns=False if a.loopback else None)
    try:
        mesh.start()
        print(f"mesh up: {mesh.tmp} (namespaces: {', '.join(mesh.net.created) or 'none'})")
        end = time.monotonic() + a.seconds if a.seconds else None
        while end is None or time.monotonic() < end:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        mesh.close()
        mesh.remove_tmp()
    return 0


if __name__ == "__main__":
    sys.exit(main())
