"""A RabbitMQ cluster with its MQTT plugin as Vigie's central broker, for
integration tests (tests/integration/test_rabbitmq.py).

Debian's rabbitmq-server (3.10.8, scripts/deps.sh installs it) is run as
plain processes of the test, never as the system service:

    cluster = RabbitCluster(self.h, sites=["louvre"], posts=["p1"])
    cluster.start()            # epmd, node 1, node 2 joined to it; users
    n1, n2 = cluster.nodes     # broker-like: host, port, name, password(user)
    self.h.start_site("louvre", n1)   # a Mosquitto site broker bridged to node 1

Each node runs from /usr/lib/rabbitmq/bin/rabbitmq-server (the /usr/sbin
wrapper switches to the rabbitmq user and drops the environment) with its own
node name, Mnesia and log directories, AMQP, MQTT and distribution ports on
127.0.0.1, all under the harness's temporary directory, and HOME there with a
shared .erlang.cookie (0400). Our own epmd runs in the foreground on a free
port (ERL_EPMD_PORT) bound to loopback, so no node starts a detached one;
the VM is exec'd, not forked, by the start script (see env()), so the PID the
harness holds and stops is beam.smp's. `sweep()` still looks for any epmd on
our port and any beam.smp whose command line or environment names our
directory, and kills them by PID.

Users and permissions come from a definitions file loaded at boot (no
rabbitmqctl round trips): the central broker's users as broker-config/
writes them for Mosquitto (relay, dashboard, post-<post>, bridge-<site>), with
topic permissions that mirror its acl (RabbitMQ checks them on routing keys:
MQTT '/' is AMQP '.', '+' is '*'). Node 2 joins node 1 by classic peer
discovery at its first boot; the cluster counts as formed when a message
published on node 1 reaches a subscriber on node 2.
"""

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time

from vigie_harness import (HOST, Broker, Subscriber, free_port, harness_pki, try_connect,
                           unique_id, wait_for)

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
RABBITMQ_SERVER = os.path.join(RABBIT_BIN, "rabbitmq-server")
RABBITMQCTL = os.path.join(RABBIT_BIN, "rabbitmqctl")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"


def rabbitmq_available():
    """(True, None) if Debian's rabbitmq-server can be run from here, else
    (False, why)."""
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        return False, (f"{RABBITMQ_SERVER} is missing: RabbitMQ is not installed "
                       f"(scripts/deps.sh installs Debian's rabbitmq-server)")
    if not os.access(EPMD, os.X_OK):
        return False, f"{EPMD} is missing (Debian's erlang-base)"
    return True, None


def password_hash(password):
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt +
    password)) with a 4-byte salt."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _rk(mqtt_topic_prefix):
    """Regex source for an AMQP routing key prefix from an MQTT topic prefix."""
    return "^" + mqtt_topic_prefix.replace("/", r"\.").replace("$", r"\$")


def topic_rules(sites, posts):
    """{user: (write regex, read regex)}: broker-config's central acl
    (acl-central.in) in RabbitMQ's terms."""
    def any_of(prefixes):
        return "|".join(_rk(p) for p in prefixes)

    state = "$SYS/broker/connection/"
    rules = {
        "relay": (any_of(["vigie/"]), any_of(["vigie/", state])),
        "dashboard": (r"^vigie\.v1\.post\.[^.]+\.ack$", any_of(["vigie/", state])),
    }
    for p in posts:
        rules[f"post-{p}"] = (
            rf"^vigie\.v1\.post\.{p}\.(ack|state)$",
            any_of([f"vigie/v1/post/{p}/dispatch", "vigie/v1/pattern/", "vigie/v1/incident/",
                    "vigie/v1/status/"]))
    for s in sites:
        rules[f"bridge-{s}"] = (
            any_of([f"vigie/v1/site/{s}/"]) + "|" + _rk(f"{state}vigie-bridge-{s}/state") + "$",
            any_of([f"vigie/v1/relay/{s}/"]))
    return rules


def pids_named(comm):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm", encoding="ascii", errors="replace") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
            with open(f"/proc/{d}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        out.append((int(d), [a.decode(errors="replace") for a in cmdline],
                    [e.decode(errors="replace") for e in environ]))
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_and_wait(pid, timeout=5.0):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


class RabbitNode:
    """One RabbitMQ node: a harness Proc (beam.smp after the scripts exec)
    and the attributes the harness expects of a broker (host, port, name,
    password(user), proc, alive(), ready_user, tls_ca, secrets_path,
    add_site()), so that h.start_site(), h.subscriber() and h.client() work
    with it."""

    ready_user = "relay"
    # MQTT over TLS only, with the harness PKI and client certificates
    # required, as the harness's Mosquitto brokers: the same answers to TLS
    # questions as theirs.
    harness_tls = True
    tls_conf = Broker.tls_conf
    tls_yaml = Broker.tls_yaml
    tls_yaml_block = Broker.tls_yaml_block
    tls_args = Broker.tls_args
    tls_files = Broker.tls_files
    tls_paho = Broker.tls_paho

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        h = cluster.h
        self.name = f"rabbit{index}"
        self.nodename = f"{self.name}-{os.getpid()}@localhost"
        self.host = HOST
        self.port = free_port()          # MQTT
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.dir = h.path(self.name)
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "rabbitmq.conf")
        pki = harness_pki()
        self.tls_ca, self.tls_cert, self.tls_key = pki.ca, pki.client_cert, pki.client_key
        self.proc = h._new_proc(self.name, [RABBITMQ_SERVER], env=self.env(), cwd=self.dir)

    @property
    def secrets_path(self):
        return self.cluster.secrets_path

    @property
    def users(self):
        return self.cluster.users

    def password(self, user):
        return self.cluster.password(user)

    def add_site(self, site, timeout=10.0):
        if site not in self.cluster.sites:
            raise AssertionError(f"site {site} was not declared when the cluster started")

    def env(self):
        c = self.cluster
        return {
            "HOME": c.home,
            "ERL_EPMD_PORT": str(c.epmd_port),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_LOGS": "-",                       # stdout: the harness log
            "RABBITMQ_CONFIG_FILE": self.conf,
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.dir, "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": c.plugins_file,
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "rabbit.pid"),
            # rabbitmq-server forks the VM and waits for it unless it runs
            # under systemd, when it execs it: the PID the harness holds is
            # then beam.smp's own (stopped by PID, SIGKILLed with the test
            # through setpriv's parent-death signal). Only the script reads
            # this variable.
            "RUNNING_UNDER_SYSTEMD": "true",
            # The Erlang distribution listens on loopback only.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
            # rabbitmqctl (diagnostics only) takes its own dist ports.
            "RABBITMQ_CTL_DIST_PORT_MIN": str(c.ctl_port),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(c.ctl_port),
        }

    def write_config(self):
        c = self.cluster
        pki = harness_pki()
        lines = [
            f"listeners.tcp.default = {HOST}:{self.amqp_port}",
            "mqtt.listeners.tcp = none",
            f"mqtt.listeners.ssl.default = {HOST}:{self.port}",
            f"ssl_options.cacertfile = {pki.ca}",
            f"ssl_options.certfile = {pki.server_cert}",
            f"ssl_options.keyfile = {pki.server_key}",
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = true",
            "mqtt.allow_anonymous = false",
            "mqtt.vhost = /",
            "mqtt.exchange = amq.topic",
            "loopback_users = none",
            "log.console = true",
            "log.console.level = info",
            "log.file = false",
            "cluster_formation.peer_discovery_backend = classic_config",
        ]
        # The first node boots alone (listing the others would make it try
        # each for ~5 s); the others list it and join it at their first boot.
        for i, n in enumerate(c.nodes[:max(1, self.index)], 1):
            lines.append(f"cluster_formation.classic_config.nodes.{i} = {n.nodename}")
        if self.index == 1:
            lines.append(f"load_definitions = {c.definitions_path}")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    # lifecycle
    def start(self, wait=True, timeout=90.0):
        self.proc.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def stop(self, timeout=30.0):
        return self.proc.stop(timeout)

    def kill9(self):
        return self.proc.kill9()

    def alive(self):
        return self.proc.alive()

    def wait_ready(self, timeout=90.0):
        def ready():
            self.proc.check_running()
            return self.connect_rc(self.ready_user, timeout=1.0) == 0
        wait_for(ready, timeout, f"{self.name} ({self.nodename}) to accept MQTT on "
                                 f"port {self.port}", interval=0.25)

    def connect_rc(self, user, password=None, **kw):
        if password is None and user is not None:
            password = self.password(user)
        kw.setdefault("ca", self.tls_ca)
        kw.setdefault("certfile", self.tls_cert)
        kw.setdefault("keyfile", self.tls_key)
        return try_connect(self.host, self.port, user, password, **kw)

    def ctl(self, *args, timeout=60):
        """rabbitmqctl against this node (diagnostics; slow: a whole VM)."""
        env = dict(os.environ)
        env.update(self.env())
        return subprocess.run([RABBITMQCTL, "-n", self.nodename] + list(args), env=env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def __repr__(self):
        return f"<RabbitNode {self.nodename} mqtt {self.host}:{self.port} pid={self.proc.pid}>"


class RabbitCluster:
    """Two (or more) RabbitMQ nodes with the MQTT plugin, clustered."""

    def __init__(self, h, sites=(), posts=(), size=2):
        ok, why = rabbitmq_available()
        if not ok:
            raise AssertionError(why)
        self.h = h
        self.sites = list(sites)
        self.posts = list(posts)
        self.dir = h.path("rabbitmq")
        os.makedirs(self.dir)
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        cookie = os.path.join(self.home, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write(secrets.token_hex(16).upper())
        os.chmod(cookie, 0o400)
        self.epmd_port = free_port()
        self.ctl_port = free_port()
        self.plugins_file = os.path.join(self.dir, "enabled_plugins")
        with open(self.plugins_file, "w") as f:
            f.write("[rabbitmq_mqtt].\n")
        self.users = {u: secrets.token_urlsafe(18)
                      for u in ["relay", "dashboard"] + [f"post-{p}" for p in self.posts]
                      + [f"bridge-{s}" for s in self.sites]}
        self.definitions_path = os.path.join(self.dir, "definitions.json")
        self.secrets_path = os.path.join(self.dir, "secrets")
        self._write_definitions()
        self._write_secrets()
        self.epmd = h._new_proc("epmd", [EPMD, "-port", str(self.epmd_port), "-address", HOST])
        self.nodes = []
        for i in range(1, size + 1):
            self.nodes.append(RabbitNode(self, i))
        for n in self.nodes:
            n.write_config()
        h.rabbit_cluster = self

    def password(self, user):
        try:
            return self.users[user]
        except KeyError:
            raise KeyError(f"the RabbitMQ cluster has no user {user!r}") from None

    def _write_definitions(self):
        rules = topic_rules(self.sites, self.posts)
        defs = {
            "rabbit_version": "3.10.8",
            "vhosts": [{"name": "/"}],
            "users": [{"name": u, "password_hash": password_hash(p),
                       "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}
                      for u, p in sorted(self.users.items())],
            # The MQTT plugin declares a queue per subscriber
            # (mqtt-subscription-<client id>qos<n>), binds it to amq.topic,
            # publishes to amq.topic and consumes from its queue.
            "permissions": [{"user": u, "vhost": "/", "configure": "^mqtt-subscription-",
                             "write": "^(mqtt-subscription-.*|amq\\.topic)$",
                             "read": "^(mqtt-subscription-.*|amq\\.topic)$"}
                            for u in sorted(self.users)],
            "topic_permissions": [{"user": u, "vhost": "/", "exchange": "amq.topic",
                                   "write": w, "read": r}
                                  for u, (w, r) in sorted(rules.items())],
        }
        with open(self.definitions_path, "w") as f:
            json.dump(defs, f, indent=1)

    def _write_secrets(self):
        """The central's secrets file in vigie-broker-config's format, so that
        `vigie-broker-config site --central-secrets` takes bridge passwords
        from it."""
        lines = ["[users]"] + [f"{u} = {p}" for u, p in sorted(self.users.items())]
        with open(self.secrets_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.secrets_path, 0o600)

    def _wait_epmd(self, timeout=10.0):
        def up():
            self.epmd.check_running()
            try:
                with socket.create_connection((HOST, self.epmd_port), timeout=0.5):
                    return True
            except OSError:
                return False
        wait_for(up, timeout, f"epmd on port {self.epmd_port}")

    def start(self, timeout=150.0):
        """Start epmd and the nodes one after the other (a node joins by
        discovery at its first boot, so the first must be up), then wait
        until a message crosses from node 1 to each other node."""
        deadline = time.monotonic() + timeout
        self.epmd.start()
        self._wait_epmd()
        for n in self.nodes:
            n.start(timeout=max(1.0, deadline - time.monotonic()))
        for n in self.nodes[1:]:
            self.wait_crossing(self.nodes[0], n, max(1.0, deadline - time.monotonic()))
        return self

    def wait_crossing(self, src, dst, timeout=60.0):
        """Wait until a message published on `src` reaches a subscriber on
        `dst`: the nodes route for each other (they form one cluster)."""
        topic = f"vigie/v1/harness-probe/{unique_id('x')}"
        sub = Subscriber(dst.host, dst.port, "relay", self.password("relay"), [topic],
                         name=f"cluster probe at {dst.name}", connect_timeout=timeout,
                         ca=dst.tls_ca, certfile=dst.tls_cert, keyfile=dst.tls_key)
        pub = None
        try:
            pub = self.h.client(src, "relay", track=False, timeout=timeout)
            deadline = time.monotonic() + timeout
            n = 0
            while True:
                n += 1
                pub.publish(topic, b"%d" % n, qos=1)
                try:
                    sub.wait_for(lambda ms: ms, timeout=0.5)
                    return
                except AssertionError:
                    if time.monotonic() >= deadline:
                        raise AssertionError(f"timed out after {timeout:.0f} s waiting for "
                                             f"{src.name} and {dst.name} to form a cluster "
                                             f"(a message on {src.name} never reached "
                                             f"{dst.name})") from None
        finally:
            sub.close()
            if pub is not None:
                pub.disconnect()
                pub.loop_stop()

    def sweep(self):
        """Kill, by PID, whatever of ours survived: an epmd on our port (a
        node started before ours was up would have started one detached)
        and any beam.smp whose command line names our directory. Returns
        what was killed, as (pid, what)."""
        killed = []
        for pid, argv, environ in pids_named("epmd"):
            port_arg = any(argv[i] == "-port" and i + 1 < len(argv)
                           and argv[i + 1] == str(self.epmd_port) for i in range(len(argv)))
            if port_arg or f"ERL_EPMD_PORT={self.epmd_port}" in environ:
                _kill_and_wait(pid)
                killed.append((pid, "epmd"))
        for pid, argv, environ in pids_named("beam.smp"):
            if any(self.dir in a for a in argv + environ) or \
                    any(n.nodename in a for n in self.nodes for a in argv):
                _kill_and_wait(pid)
                killed.append((pid, "beam.smp"))
        return killed
