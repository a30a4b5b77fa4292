"""Harness for Vigie's integration tests: real processes on 127.0.0.1.

Every test gets a `Harness`: a temporary directory, the processes it starts
(mosquitto brokers now, vigie-node / vigie-relay / vigie-post later) and the
MQTT clients it opens. Ports are chosen at run time, readiness is polled with
a deadline (never a bare sleep) and every process is stopped by PID at the
end, also when the test fails, when the runner gets SIGTERM, or at exit.

Quick reference
---------------
    class MyTest(HarnessTestCase):          # self.h is a fresh Harness
        def test_x(self):
            central = self.h.start_central(sites=["louvre"], posts=["p1"])
            site = self.h.start_site("louvre", central)   # waits for the bridge
            sub = self.h.subscriber(central, "relay", ["vigie/v1/site/+/node/+/event"])
            pub = self.h.client(site, "node")
            publish_sync(pub, "vigie/v1/site/louvre/node/n1/event", b"...")
            sub.wait_for_count(1, timeout=5)
            central.kill9(); central.start()   # same port, same persistence
            site.sigstop(); site.sigcont()
            proc = self.h.spawn("vigie-node", [bin_path("vigie-node"), ...])

    Harness:     spawn(name, argv) -> Proc, start_central(), start_site(),
                 subscriber(), client(), run_generator(), log_tails(),
                 close(), assert_no_leftover(); also a context manager.
    Broker:      host, port, ws_port, config_dir, conf, data_dir, users,
                 password(user), start(), stop(), kill9(), sigstop(), sigcont(),
                 wait_ready(), reload(); SiteBroker also wait_bridge().
    Proc:        pid, alive(), stop(), kill9(), sigstop(), sigcont(),
                 restart(), wait_exit(), log_path, log_tail().
    Subscriber:  messages, count(), payloads(), wait_for_count(),
                 wait_for(), wait_quiet(), clear(), close().
    MqttClient (paho's, TLS-safe), wait_for(cond, timeout, what),
    free_port(), try_connect(), publish_sync(), decode_event(),
    make_signed_event(), ReceiptPlayer, harness_pki(), tls_set().

TLS by default
--------------
Every broker the harness starts listens with TLS only, and requires a
client certificate: a CA and certificates are made once per process with
broker-config/vigie-keys (harness_pki()); one server certificate (127.0.0.1)
serves every broker, one client certificate (CN vigie-test) every client,
the site bridges included. The harness's own clients use it on their own.
A test that writes a daemon's config takes the broker's TLS settings from:

    broker.tls_yaml()       ", tls: {ca: ..., cert: ..., key: ...}" for a
                            YAML flow map (node, panels), "" when plaintext
    broker.tls_yaml_block() "  tls: {...}" and a newline: a line of a
                            YAML block map (relay, post)
    broker.tls_conf()       {"ca":, "cert":, "key":} or None (relay JSON)
    broker.tls_args()       ["--cafile", ca, "--cert", crt, "--key", key]
                            (vigie-post, vigie-watch; [] when plaintext)
    broker.tls_files()      [ca, cert, key]: a test's own script
    broker.tls_paho(client) tls_set() on a paho client of the test's own

Opt-outs: start_central(tls=False) / start_site(tls=False) give plaintext
listeners on loopback (vigie-broker-config --plaintext-loopback): for a
plaintext baseline and tests that need it; today none of the harness's
own brokers (a site bridged to a plaintext central - the RabbitMQ cluster
of test_rabbitmq.py - bridges in plaintext on loopback).
start_central(ws=True) adds a plaintext websockets listener on loopback
(--ws-plaintext-loopback) for the dashboard in Chromium, which does not
trust the test CA. tls_ca=CA: the test configures TLS itself
(extra_args) with its own CA, and the harness adds nothing (test_tls.py).

Environment: VIGIE_SOURCE (repository), VIGIE_BUILD (build directory, for
binaries), VIGIE_KEEP_TMP=1 keeps the temporary directories, VIGIE_SHOW_LOGS=1
prints the process logs even when the test passes.
"""

import atexit
import collections
import configparser
import itertools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as mqtt

HOST = "127.0.0.1"
SOURCE = os.path.abspath(os.environ.get("VIGIE_SOURCE")
                         or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("VIGIE_BUILD")
GENERATOR = os.path.join(SOURCE, "broker-config", "vigie-broker-config")
MOSQUITTO = (shutil.which("mosquitto")
             or shutil.which("mosquitto", path="/usr/sbin:/sbin:/usr/local/sbin")
             or "/usr/sbin/mosquitto")
# Children get SIGKILL if the test runner dies without cleaning up (e.g. a
# ctest timeout's SIGKILL). The parent is the thread that forked: start
# processes from the main thread.
SETPRIV = shutil.which("setpriv")
KEYS = os.path.join(SOURCE, "broker-config", "vigie-keys")
TLS_CLIENT = "vigie-test"

_ids = itertools.count(1)
_ports_given = set()


def unique_id(prefix):
    """A client id no other client of this test run uses."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def broker_env():
    """Environment for a mosquitto process: libvigie-nodelay preloaded when it
    is built, as in production (broker-config/nodelay.c: Mosquitto 2.0 leaves
    Nagle on for the bridge connections it makes)."""
    lib = os.path.join(BUILD or "", "lib", "libvigie-nodelay.so")
    return {"LD_PRELOAD": lib} if BUILD and os.path.exists(lib) else None


def bin_path(name):
    """Path of a Vigie binary in the build directory ($VIGIE_BUILD/bin)."""
    if not BUILD:
        raise unittest.SkipTest("VIGIE_BUILD is not set")
    path = os.path.join(BUILD, "bin", name)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"{path} is not built")
    return path


# --- waiting -------------------------------------------------------------

def wait_for(cond, timeout=10.0, what="condition", interval=0.02):
    """Poll `cond()` until it returns a true value, which is returned.

    Raises AssertionError naming `what` after `timeout` seconds, so a test
    reports a failure rather than an error."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def free_port():
    """A TCP port of 127.0.0.1 that was free a moment ago (bind to port 0).

    Never returns the same port twice in one process, so two brokers of one
    test cannot be handed the same one."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no free port found")


# --- TLS -----------------------------------------------------------------

class HarnessPki:
    """The CA and certificates of one test process (see "TLS by default")."""

    def __init__(self, root):
        self.root = root
        self.ca = os.path.join(root, "ca", "ca.crt")
        self.server_cert = os.path.join(root, "brokers", "central.crt")
        self.server_key = os.path.join(root, "brokers", "central.key")
        self.client_cert = os.path.join(root, "clients", f"{TLS_CLIENT}.crt")
        self.client_key = os.path.join(root, "clients", f"{TLS_CLIENT}.key")


_pki = None
_pki_lock = threading.Lock()


def harness_pki():
    """The HarnessPki of this process, made at the first call with vigie-keys
    (a CA, a server certificate for 127.0.0.1/localhost, a client
    certificate) in a temporary directory removed at exit."""
    global _pki
    with _pki_lock:
        if _pki is None:
            root = tempfile.mkdtemp(prefix="vigie-pki-")
            r = subprocess.run([sys.executable, KEYS, "--out", root, "--client", TLS_CLIENT,
                                "--quiet"], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=60)
            if r.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise AssertionError(f"vigie-keys failed ({r.returncode}): {r.stderr}{r.stdout}")
            if not os.environ.get("VIGIE_KEEP_TMP"):
                atexit.register(shutil.rmtree, root, True)
            _pki = HarnessPki(root)
        return _pki


class MqttClient(mqtt.Client):
    """paho's Client, but a TLS connection the broker closed (it stopped,
    was killed, restarts) counts as a lost connection, as in plaintext.
    paho 1.6 turns only ConnectionError into "connection lost"; the
    ssl.SSLEOFError of a TLS socket escapes, and a loop_start() thread dies
    for good: its client never reconnects."""

    def _sock_send(self, buf):
        try:
            return super()._sock_send(buf)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except ssl.SSLError as e:
            raise ConnectionError(f"TLS: {e}") from e

    def _sock_recv(self, bufsize):
        try:
            return super()._sock_recv(bufsize)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        except ssl.SSLError as e:
            raise ConnectionError(f"TLS: {e}") from e


def tls_set(client, ca, certfile=None, keyfile=None):
    """TLS on a paho client: verify the broker against `ca` (host name
    included: the harness certificate names 127.0.0.1)."""
    client.tls_set(ca_certs=ca, certfile=certfile, keyfile=keyfile,
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def _client_cert_for(ca, certfile, keyfile):
    """A client trusting the harness CA presents the harness client
    certificate unless told otherwise (the harness brokers require one)."""
    if ca and certfile is None and _pki is not None and ca == _pki.ca:
        return _pki.client_cert, _pki.client_key
    return certfile or None, keyfile or None  # "": no certificate at all


# --- MQTT helpers --------------------------------------------------------

def try_connect(host, port, user, password, timeout=2.0, transport="tcp", client_id=None,
                ca=None, certfile=None, keyfile=None):
    """Connect once and disconnect. Returns the CONNACK code (0 accepted,
    5 not authorised, ...) or None when no CONNACK came (nothing listening,
    timeout, TLS refused). `ca`: TLS, trusting that CA file; with the
    harness CA the harness client certificate is presented unless
    `certfile`/`keyfile` name another ("": none)."""
    got = {}
    c = MqttClient(client_id=client_id or unique_id("probe"), clean_session=True,
                   transport=transport)
    if ca:
        certfile, keyfile = _client_cert_for(ca, certfile, keyfile)
        tls_set(c, ca, certfile, keyfile)
    if user is not None:
        c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, rc):
        got["rc"] = rc

    c.on_connect = on_connect
    try:
        c.connect(host, port, keepalive=10)
    except OSError:  # ssl.SSLError included: a handshake refused
        return None
    try:
        deadline = time.monotonic() + timeout
        while "rc" not in got and time.monotonic() < deadline:
            if c.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        if got.get("rc") == 0:
            c.disconnect()
            c.loop(timeout=0.01)
    except OSError:  # ssl.SSLError: e.g. TLS 1.3's "certificate required" alert
        pass
    finally:
        sock = c.socket()
        if sock is not None:
            sock.close()
    return got.get("rc")


def publish_sync(client, topic, payload, qos=1, retain=False, timeout=10.0):
    """Publish and wait for the broker's PUBACK (QoS 1) or the write (QoS 0).
    A broker acknowledges an unauthorised publish too and drops it."""
    info = client.publish(topic, payload, qos=qos, retain=retain)
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        raise AssertionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
    info.wait_for_publish(timeout)
    if not info.is_published():
        raise AssertionError(f"no PUBACK for {topic} within {timeout} s")
    return info


def publish_many(client, items, qos=1, timeout=30.0):
    """Publish (topic, payload) pairs and wait until all are acknowledged."""
    infos = [client.publish(t, p, qos=qos) for t, p in items]
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        if not info.is_published():
            raise AssertionError(f"only some of {len(infos)} publications were acknowledged "
                                 f"within {timeout} s")
    return infos


Message = collections.namedtuple("Message", "topic payload time qos retain dup")


class Subscriber:
    """A paho client that subscribes to `topics` and records every message.

    Runs its own network thread (loop_start) and reconnects on its own, so it
    survives broker restarts; with clean_session=False and a fixed client_id
    the broker keeps its subscriptions and queue meanwhile. `messages` is a
    list of Message(topic, payload, time, qos, retain, dup), in arrival order;
    read it through the methods, which lock."""

    def __init__(self, host, port, user, password, topics, qos=1, client_id=None,
                 clean_session=True, name=None, transport="tcp", connect_timeout=10.0,
                 ca=None, certfile=None, keyfile=None):
        self.name = name or client_id or "subscriber"
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.qos = qos
        self.messages = []
        self.connects = 0
        self.last_connack = None
        self._cond = threading.Condition()
        self._suback_pending = None
        self.client_id = client_id or unique_id("sub")
        c = MqttClient(client_id=self.client_id, clean_session=clean_session,
                       transport=transport)
        if ca:
            certfile, keyfile = _client_cert_for(ca, certfile, keyfile)
            tls_set(c, ca, certfile, keyfile)
        c.username_pw_set(user, password)
        c.reconnect_delay_set(0.1, 1)
        c.max_inflight_messages_set(100)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c
        c.connect_async(host, port, keepalive=10)
        c.loop_start()
        try:
            self.wait_subscribed(connect_timeout)
        except BaseException:
            self.close()
            raise

    def _on_connect(self, client, userdata, flags, rc):
        with self._cond:
            self.last_connack = rc
            if rc != 0:
                self._cond.notify_all()
                return
            self.connects += 1
            result, mid = client.subscribe([(t, self.qos) for t in self.topics])
            self._suback_pending = mid
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted_qos):
        with self._cond:
            if mid == self._suback_pending:
                self._suback_pending = None
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        m = Message(msg.topic, bytes(msg.payload), time.monotonic(), msg.qos,
                    bool(msg.retain), bool(msg.dup))
        with self._cond:
            self.messages.append(m)
            self._cond.notify_all()

    def wait_subscribed(self, timeout=10.0):
        """Wait until connected and the SUBACK of the subscriptions came."""
        def ok():
            if self.last_connack not in (None, 0):
                raise AssertionError(f"{self.name}: connection refused, CONNACK code "
                                     f"{self.last_connack} ({mqtt.connack_string(self.last_connack)})")
            return self.connects > 0 and self._suback_pending is None
        self._wait(ok, timeout, f"{self.name} to connect and subscribe to {self.topics}")

    def _wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = pred()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
                self._cond.wait(min(left, 0.1))

    def _select(self, topic):
        if topic is None:
            return list(self.messages)
        return [m for m in self.messages if mqtt.topic_matches_sub(topic, m.topic)]

    def received(self, topic=None):
        """Messages so far, optionally only those matching the filter `topic`."""
        with self._cond:
            return self._select(topic)

    def count(self, topic=None):
        return len(self.received(topic))

    def payloads(self, topic=None):
        return [m.payload for m in self.received(topic)]

    def wait_for_count(self, n, timeout=10.0, topic=None):
        """Wait until at least `n` messages (matching `topic`) arrived;
        returns them."""
        def enough():
            sel = self._select(topic)
            return sel if len(sel) >= n else None
        try:
            return self._wait(enough, timeout, f"{n} messages on {topic or self.topics} at {self.name}")
        except AssertionError as e:
            raise AssertionError(f"{e} (got {self.count(topic)})") from None

    def wait_for(self, pred, timeout=10.0, what="a matching message"):
        """Wait until pred(messages) is true; returns its value."""
        return self._wait(lambda: pred(list(self.messages)), timeout, f"{what} at {self.name}")

    def wait_quiet(self, quiet=1.0, timeout=30.0, topic=None):
        """Wait until no new message (matching `topic`) came for `quiet`
        seconds; returns the count then. For measuring what arrived when the
        exact number is not known."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.count(topic)
            time.sleep(min(quiet, max(0.0, deadline - time.monotonic())))
            if self.count(topic) == n or time.monotonic() >= deadline:
                return self.count(topic)

    def clear(self):
        with self._cond:
            self.messages.clear()

    def close(self):
        c, self.client = self.client, None
        if c is None:
            return
        try:
            c.disconnect()
        finally:
            c.loop_stop()


# --- processes -----------------------------------------------------------

def _proc_start_time(pid):
    """(start time, state) of a process from /proc, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return fields[19], fields[0]  # starttime (field 22), state (field 3)


class Proc:
    """A process started by the harness in its own process group. Its stdout
    and stderr go to `log_path` (appended across restarts)."""

    def __init__(self, harness, name, argv, env=None, cwd=None):
        self.harness = harness
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log_path = os.path.join(harness.log_dir, f"{name}.log")
        self.popen = None
        self.starts = 0

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def start(self):
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        argv = self.argv
        if SETPRIV:
            argv = [SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.starts += 1
            log.write(f"==== harness: start #{self.starts} of {self.name}: "
                      f"{' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=self.cwd, env=env,
                                          start_new_session=True)
        self.harness._record_pid(self)
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll() if self.popen else None

    def _signal(self, sig):
        if self.alive():
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.popen is None:
            return None
        if self.alive():
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._log(f"did not exit {timeout} s after SIGTERM: SIGKILL")
                self.kill9()
        return self.popen.returncode

    def kill9(self):
        if self.popen is None:
            return None
        self._signal(signal.SIGKILL)
        self.popen.wait()
        return self.popen.returncode

    def sigstop(self):
        self._signal(signal.SIGSTOP)

    def sigcont(self):
        self._signal(signal.SIGCONT)

    def restart(self):
        self.stop()
        return self.start()

    def wait_exit(self, timeout=10.0):
        """Wait for the process to exit on its own; returns its exit code."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s") from None

    def _log(self, text):
        with open(self.log_path, "ab") as log:
            log.write(f"==== harness: {text}\n".encode())

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def check_running(self):
        """Raise AssertionError with the log tail if the process has exited."""
        if self.popen is not None and not self.alive():
            raise AssertionError(f"{self.name} exited with status {self.popen.returncode}:\n"
                                 f"{self.log_tail(20)}")


# --- brokers -------------------------------------------------------------

class ProcHolder:
    """What an object that runs one Proc (self.proc) answers for it."""

    def stop(self, timeout=10.0):
        return self.proc.stop(timeout)

    def kill9(self):
        return self.proc.kill9()

    def sigstop(self):
        self.proc.sigstop()

    def sigcont(self):
        self.proc.sigcont()

    def alive(self):
        return self.proc.alive()


class Broker(ProcHolder):
    """A mosquitto broker configured by broker-config/vigie-broker-config.
    stop()/kill9() keep the configuration and the persistence directory;
    start() brings it back on the same port with the same database."""

    role = None
    ready_user = None

    def __init__(self, harness, name, config_dir, port, ws_port=None, extra_args=()):
        self.harness = harness
        self.name = name
        self.host = HOST
        self.port = port
        self.ws_port = ws_port
        self.config_dir = config_dir
        self.conf = os.path.join(config_dir, "mosquitto.conf")
        self.data_dir = os.path.join(config_dir, "data")
        self.extra_args = list(extra_args)
        self.tls_ca = None  # set: the listener speaks TLS only, signed by this CA
        self.tls_cert = None  # the client certificate clients present
        self.tls_key = None
        self.harness_tls = False  # TLS configured by the harness (harness_pki())
        self.users = {}
        self.proc = harness._new_proc(name, [MOSQUITTO, "-c", self.conf], env=broker_env())

    # configuration
    def generator_args(self):
        raise NotImplementedError

    def use_harness_tls(self):
        """TLS listeners with the harness PKI, client certificates required."""
        pki = harness_pki()
        self.harness_tls = True
        self.tls_ca = pki.ca
        self.tls_cert, self.tls_key = pki.client_cert, pki.client_key

    def tls_generator_args(self):
        if self.harness_tls:
            pki = harness_pki()
            args = ["--cafile", pki.ca, "--certfile", pki.server_cert,
                    "--keyfile", pki.server_key, "--require-certificate"]
            if self.ws_port:
                # The dashboard test's Chromium does not trust the test CA.
                args.append("--ws-plaintext-loopback")
            return args
        if self.tls_ca:
            return []  # the test gives the TLS options itself (extra_args)
        return ["--plaintext-loopback"]

    def generate(self):
        args = self.generator_args() + ["--out", self.config_dir, "--port", str(self.port)]
        if self.ws_port:
            args += ["--ws-port", str(self.ws_port)]
        args += self.tls_generator_args()
        if os.geteuid() == 0:
            args.append("--run-as-root")
        self.harness.run_generator(args + self.extra_args + ["--quiet"], check=True)
        self.users = read_secrets(os.path.join(self.config_dir, "secrets"))[0]

    def password(self, user):
        try:
            return self.users[user]
        except KeyError:
            raise KeyError(f"{self.name} has no user {user!r} (users: {sorted(self.users)})") from None

    # lifecycle
    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait=True, timeout=10.0):
        self.proc.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def stop(self, timeout=10.0):
        """SIGTERM: mosquitto saves its database and exits."""
        return self.proc.stop(timeout)

    def reload(self):
        """SIGHUP: mosquitto rereads passwd and acl."""
        self.proc._signal(signal.SIGHUP)

    def wait_ready(self, timeout=10.0):
        """Poll until `ready_user` gets a successful CONNACK."""
        def ready():
            self.proc.check_running()
            return try_connect(self.host, self.port, self.ready_user,
                               self.password(self.ready_user), timeout=1.0,
                               ca=self.tls_ca) == 0
        wait_for(ready, timeout, f"{self.name} to accept connections on port {self.port}")

    def connect_rc(self, user, password=None, **kw):
        """CONNACK code for `user` (its own password unless given)."""
        if password is None and user is not None:
            password = self.password(user)
        kw.setdefault("ca", self.tls_ca)
        return try_connect(self.host, self.port, user, password, **kw)

    # what clients of this broker need for TLS (None / "" / []: plaintext)
    def tls_conf(self):
        """{"ca", "cert", "key"} for a daemon's broker section, or None."""
        if not self.tls_ca:
            return None
        out = {"ca": self.tls_ca}
        if self.tls_cert:
            out.update(cert=self.tls_cert, key=self.tls_key)
        return out

    def tls_yaml(self):
        """', tls: {...}' to append inside a YAML flow map of a broker."""
        t = self.tls_conf()
        if not t:
            return ""
        return ", tls: {" + ", ".join(f'{k}: "{v}"' for k, v in t.items()) + "}"

    def tls_yaml_block(self, indent=2):
        """'tls: {...}' as a line of a YAML block map at `indent`, or ""."""
        t = self.tls_yaml()
        return f"{' ' * indent}{t[2:]}\n" if t else ""

    def tls_args(self, ca="--cafile", cert="--cert", key="--key"):
        """Command-line TLS options (vigie-post, vigie-watch)."""
        t = self.tls_conf()
        if not t:
            return []
        out = [ca, t["ca"]]
        if "cert" in t:
            out += [cert, t["cert"], key, t["key"]]
        return out

    def tls_files(self):
        """[ca, cert, key] (cert and key "" without a client certificate),
        or [] when plaintext: positional arguments of a test's own script."""
        t = self.tls_conf()
        return [t["ca"], t.get("cert", ""), t.get("key", "")] if t else []

    def tls_paho(self, client):
        """TLS on a paho client of the test's own."""
        if self.tls_ca:
            tls_set(client, self.tls_ca, self.tls_cert, self.tls_key)
        return client

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {self.host}:{self.port} pid={self.pid}>"


class CentralBroker(Broker):
    role = "central"
    ready_user = "relay"

    def __init__(self, harness, name, config_dir, port, ws_port=None, sites=(), posts=(),
                 direct_node_users=False, extra_args=()):
        super().__init__(harness, name, config_dir, port, ws_port, extra_args)
        self.sites = list(sites)
        self.posts = list(posts)
        self.direct_node_users = direct_node_users

    def generator_args(self):
        args = ["central"]
        for s in self.sites:
            args += ["--site", s]
        for p in self.posts:
            args += ["--post", p]
        if self.direct_node_users:
            args.append("--direct-node-users")
        return args

    @property
    def secrets_path(self):
        return os.path.join(self.config_dir, "secrets")

    def add_site(self, site, timeout=10.0):
        """Add bridge-<site> (regenerate, SIGHUP) and wait until it may log in."""
        if site in self.sites:
            return
        self.sites.append(site)
        self.generate()
        if self.alive():
            self.reload()
            wait_for(lambda: self.connect_rc(f"bridge-{site}") == 0, timeout,
                     f"{self.name} to accept bridge-{site} after SIGHUP")

    def add_post(self, post, timeout=10.0):
        if post in self.posts:
            return
        self.posts.append(post)
        self.generate()
        if self.alive():
            self.reload()
            wait_for(lambda: self.connect_rc(f"post-{post}") == 0, timeout,
                     f"{self.name} to accept post-{post} after SIGHUP")


class SiteBroker(Broker):
    role = "site"
    ready_user = "monitor"

    def __init__(self, harness, name, config_dir, port, site, central, nodes=(),
                 ws_port=None, extra_args=()):
        super().__init__(harness, name, config_dir, port, ws_port, extra_args)
        self.site = site
        self.central = central
        self.nodes = list(nodes)

    def generator_args(self):
        args = ["site", "--site", self.site, "--central-host", self.central.host,
                "--central-port", str(self.central.port),
                "--central-secrets", self.central.secrets_path]
        for n in self.nodes:
            args += ["--node", n]
        if self.harness_tls or not self.tls_ca:
            if getattr(self.central, "harness_tls", False):
                pki = harness_pki()
                args += ["--bridge-cafile", pki.ca, "--bridge-certfile", pki.client_cert,
                         "--bridge-keyfile", pki.client_key]
            elif not getattr(self.central, "tls_ca", None) and self.harness_tls:
                args.append("--plaintext-loopback")  # a plaintext central (tls=False)
        return args

    @property
    def bridge_user(self):
        return f"bridge-{self.site}"

    @property
    def notification_topic(self):
        return f"$SYS/broker/connection/vigie-bridge-{self.site}/state"

    def node_user(self, node=None):
        """The user a node logs in with: node-<node> if per-node users were
        generated, else the shared user 'node'."""
        if self.nodes:
            return f"node-{node or self.nodes[0]}"
        return "node"

    def wait_bridge(self, timeout=20.0):
        """Wait until the bridge carries a fresh probe from this site to the
        central. A probe is published at QoS 1 every 0.25 s on
        vigie/v1/site/<site>/[node/<node>/]harness-probe with a payload unique
        to this call, so a probe queued by an earlier outage does not count.
        Because the bridge subscribes before forwarding anything, a probe's
        arrival also means vigie/v1/relay/<site>/# flows down."""
        if self.nodes:
            topic = f"vigie/v1/site/{self.site}/node/{self.nodes[0]}/harness-probe"
        else:
            topic = f"vigie/v1/site/{self.site}/harness-probe"
        nonce = unique_id("probe").encode()
        central = self.central
        sub = Subscriber(central.host, central.port, central.ready_user,
                         central.password(central.ready_user), [topic],
                         name=f"bridge probe {self.site}", ca=getattr(central, "tls_ca", None),
                         certfile=getattr(central, "tls_cert", None),
                         keyfile=getattr(central, "tls_key", None))
        pub = None
        try:
            pub = self.harness.client(self, self.node_user(), track=False)
            deadline = time.monotonic() + timeout
            n = 0
            while True:
                self.proc.check_running()
                central.proc.check_running()
                n += 1
                pub.publish(topic, nonce + b" %d" % n, qos=1)
                try:
                    sub.wait_for(lambda ms: any(m.payload.startswith(nonce) for m in ms),
                                 timeout=min(0.25, max(0.0, deadline - time.monotonic())))
                    return
                except AssertionError:
                    if time.monotonic() >= deadline:
                        raise AssertionError(
                            f"timed out after {timeout:.1f} s waiting for the bridge "
                            f"{self.site} -> {central.name} to carry a probe") from None
        finally:
            sub.close()
            if pub is not None:
                pub.disconnect()
                pub.loop_stop()


def read_secrets(path):
    """(users, bridge) dicts from a generator's secrets file."""
    cp = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    cp.optionxform = str
    with open(path, encoding="utf-8") as f:
        cp.read_file(f)
    users = dict(cp.items("users")) if cp.has_section("users") else {}
    bridge = dict(cp.items("bridge")) if cp.has_section("bridge") else {}
    return users, bridge


# --- the harness ---------------------------------------------------------

_live = []
_live_lock = threading.Lock()
_handlers_installed = False


def _emit(text):
    """Print to stderr; never let a closed pipe stop the cleanup."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _cleanup_all():
    """SIGTERM or exit with harnesses still open: the test was interrupted
    (a runner's timeout), so show what the processes were doing, then stop
    them."""
    with _live_lock:
        harnesses = list(_live)
    for h in harnesses:
        try:
            _emit(f"\nvigie_harness: interrupted, stopping everything\n{h.log_tails()}")
            h.close()
            h.remove_tmp()
        except Exception as e:  # at exit: report, go on with the others
            _emit(f"vigie_harness: cleanup of {h.tmp} failed: {e}")


def _on_sigterm(signum, frame):
    _cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)


class Harness:
    """Owns a temporary directory, the processes and the MQTT clients of one
    test. close() stops every client and every process (SIGTERM, deadline,
    SIGKILL), by PID; it runs from HarnessTestCase's cleanup, from __exit__,
    at interpreter exit and on SIGTERM."""

    def __init__(self, name="vigie", keep_tmp=None):
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[-60:]
        self.tmp = tempfile.mkdtemp(prefix=f"vigie-{safe}-")
        self.log_dir = os.path.join(self.tmp, "logs")
        os.makedirs(self.log_dir)
        self.keep_tmp = bool(os.environ.get("VIGIE_KEEP_TMP")) if keep_tmp is None else keep_tmp
        self.procs = {}
        self.pids = []           # every (pid, start time, name) ever started
        self.clients = []        # paho clients and Subscribers to close
        self.closed = False
        _install_handlers()
        with _live_lock:
            _live.append(self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or os.environ.get("VIGIE_SHOW_LOGS"):
            _emit(self.log_tails())
        self.close()
        self.assert_no_leftover()
        self.remove_tmp(failed=exc_type is not None)
        return False

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    # processes
    def _new_proc(self, name, argv, env=None, cwd=None):
        if name in self.procs:
            raise ValueError(f"a process named {name!r} exists already")
        p = Proc(self, name, argv, env=env, cwd=cwd)
        self.procs[name] = p
        return p

    def _record_pid(self, proc):
        st = _proc_start_time(proc.pid)
        self.pids.append((proc.pid, st[0] if st else None, proc.name))

    def spawn(self, name, argv, env=None, cwd=None):
        """Start `argv` as process `name` (unique in this harness); its output
        goes to logs/<name>.log. Returns the Proc."""
        return self._new_proc(name, argv, env=env, cwd=cwd).start()

    def run_generator(self, args, check=False):
        """Run broker-config/vigie-broker-config; returns CompletedProcess."""
        r = subprocess.run([GENERATOR] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"vigie-broker-config {' '.join(args)} failed "
                                 f"({r.returncode}):\n{r.stderr}{r.stdout}")
        return r

    # brokers
    def start_central(self, name="central", sites=(), posts=(), ws=False,
                      direct_node_users=False, extra_args=(), start=True, tls_ca=None,
                      tls=True):
        """Generate and start a central broker (users: relay, dashboard,
        post-<post>, bridge-<site>). Returns a CentralBroker, ready.
        TLS with the harness PKI unless tls=False (plaintext on loopback)
        or tls_ca (the test's own TLS options in extra_args)."""
        b = CentralBroker(self, name, self.path(name), free_port(),
                          ws_port=free_port() if ws else None, sites=sites, posts=posts,
                          direct_node_users=direct_node_users, extra_args=extra_args)
        if tls_ca:
            b.tls_ca = tls_ca
        elif tls:
            b.use_harness_tls()
        b.generate()
        if start:
            b.start()
        return b

    def start_site(self, site, central, name=None, nodes=(), extra_args=(), start=True, tls_ca=None,
                   wait_bridge=True, timeout=20.0, tls=True):
        """Generate and start the site broker of `site`, bridged to `central`
        (adds bridge-<site> to the central if needed). Waits until it accepts
        connections and, if the central runs and wait_bridge, until the bridge
        carries messages. Users: node (or node-<node> per `nodes`), monitor.
        TLS as start_central(); the bridge uses TLS when the central does."""
        central.add_site(site)
        b = SiteBroker(self, name or f"site-{site}", self.path(name or f"site-{site}"),
                       free_port(), site, central, nodes=nodes, extra_args=extra_args)
        if tls_ca:
            b.tls_ca = tls_ca
        elif tls:
            b.use_harness_tls()
        b.generate()
        if start:
            b.start()
            if wait_bridge and central.alive():
                b.wait_bridge(timeout)
        return b

    # MQTT clients
    def subscriber(self, broker, user, topics, password=None, **kw):
        """A Subscriber on `broker` as `user`, closed by close()."""
        kw.setdefault("ca", getattr(broker, "tls_ca", None))
        kw.setdefault("certfile", getattr(broker, "tls_cert", None))
        kw.setdefault("keyfile", getattr(broker, "tls_key", None))
        s = Subscriber(broker.host, broker.port, user,
                       broker.password(user) if password is None else password,
                       topics, name=kw.pop("name", f"{user}@{broker.name}"), **kw)
        self.clients.append(s)
        return s

    def client(self, broker, user, password=None, client_id=None, clean_session=True,
               timeout=10.0, track=True):
        """A connected paho client (network thread running) on `broker`."""
        connected = threading.Event()
        result = {}
        c = MqttClient(client_id=client_id or unique_id(user), clean_session=clean_session)
        if getattr(broker, "tls_ca", None):
            tls_set(c, broker.tls_ca, getattr(broker, "tls_cert", None),
                    getattr(broker, "tls_key", None))
        c.username_pw_set(user, broker.password(user) if password is None else password)
        c.reconnect_delay_set(0.1, 1)
        c.max_inflight_messages_set(100)

        def on_connect(client, userdata, flags, rc):
            result["rc"] = rc
            connected.set()

        c.on_connect = on_connect
        c.connect_async(broker.host, broker.port, keepalive=10)
        c.loop_start()
        if track:
            self.clients.append(c)
        if not connected.wait(timeout) or result.get("rc") != 0:
            c.disconnect()
            c.loop_stop()
            raise AssertionError(f"{user} could not connect to {broker.name}: "
                                 f"CONNACK {result.get('rc')}")
        return c

    # end of test
    def close(self):
        """Close every client, stop every process (reverse start order)."""
        if self.closed:
            return
        self.closed = True
        for c in reversed(self.clients):
            try:
                if isinstance(c, mqtt.Client):
                    c.disconnect()
                    c.loop_stop()
                else:
                    c.close()
            except Exception as e:  # go on stopping the rest
                _emit(f"vigie_harness: closing a client failed: {e}")
        self.clients.clear()
        for p in reversed(list(self.procs.values())):
            p.stop(timeout=5.0)
        with _live_lock:
            if self in _live:
                _live.remove(self)

    def leftovers(self):
        """Recorded processes that are still alive (PID and start time match)."""
        out = []
        for pid, start, name in self.pids:
            st = _proc_start_time(pid)
            if st is not None and st[0] == start and st[1] != "Z":
                out.append((pid, name))
        return out

    def assert_no_leftover(self):
        left = self.leftovers()
        if left:
            raise AssertionError("processes still running: "
                                 + ", ".join(f"{n} (pid {p})" for p, n in left))

    def log_tails(self, lines=30):
        parts = [f"==== harness directory: {self.tmp}"]
        for p in self.procs.values():
            parts.append(f"---- {p.name} (pid {p.pid}, exit {p.returncode}) "
                         f"{p.log_path}, last {lines} lines:")
            parts.append(p.log_tail(lines))
        return "\n".join(parts)

    def remove_tmp(self, failed=False):
        if self.keep_tmp:
            _emit(f"vigie_harness: kept {self.tmp}")
            return
        shutil.rmtree(self.tmp, ignore_errors=True)


class HarnessTestCase(unittest.TestCase):
    """unittest base (or mixin) giving each test a fresh Harness as self.h.
    On failure the tails of the process logs are printed; whatever happens
    every process is stopped and the test fails if one survives."""

    harness_name = None

    def setUp(self):
        super().setUp()
        self.h = Harness(self.harness_name or self.id().rsplit(".", 1)[-1])
        self.addCleanup(self._close_harness)

    def _test_failed(self):
        # The result already holds this test's failures when cleanups run
        # (outcome.success does not: each cleanup resets it). Unknown -> failed.
        result = getattr(getattr(self, "_outcome", None), "result", None)
        try:
            bad = list(result.failures) + list(result.errors)
        except AttributeError:
            return True
        return any(getattr(test, "test_case", test) is self for test, _ in bad)

    def _close_harness(self):
        failed = self._test_failed()
        if failed or os.environ.get("VIGIE_SHOW_LOGS"):
            _emit(f"\n{self.h.log_tails()}")
        try:
            self.h.close()
            self.h.assert_no_leftover()
        finally:
            self.h.remove_tmp(failed)


# --- protobuf helpers ----------------------------------------------------

def _pb():
    import vigie_pb2  # generated at build time into $VIGIE_BUILD/generated/python
    return vigie_pb2


def decode_event(payload):
    """Parse an event topic's payload: returns (SignedEvent, Event)."""
    pb = _pb()
    signed = pb.SignedEvent()
    signed.ParseFromString(payload)
    event = pb.Event()
    event.ParseFromString(signed.event)
    return signed, event


def make_signed_event(site, node, boot_id, seq, kind=None, state=None, **fields):
    """Serialized SignedEvent (unsigned) for tests that play a node."""
    pb = _pb()
    ev = pb.Event(site=site, node=node, boot_id=boot_id, seq=seq,
                  time_us=int(time.time() * 1e6),
                  kind=pb.KIND_TEST if kind is None else kind,
                  state=pb.STATE_TEST if state is None else state, **fields)
    return pb.SignedEvent(event=ev.SerializeToString()).SerializeToString()


class ReceiptPlayer:
    """TEST ONLY: plays vigie-relay's receipt role until the relay exists.

    Subscribes at the central to vigie/v1/site/+/node/+/event (as the relay
    user, persistent session by default, like a relay), stores each event
    once by identity (site, node, boot_id, seq), counts duplicates, and after
    every event -- duplicates included, so a node that lost a receipt gets
    another -- publishes a Receipt with the highest contiguous seq stored for
    (site, node, boot_id) (seqs start at 1) on vigie/v1/relay/<site>/receipt/<node>
    at QoS 1. Events whose topic and content disagree, or that do not parse,
    are kept in `rejected` and not receipted. No signature check: that is
    the relay's job and its tests'."""

    TOPIC = "vigie/v1/site/+/node/+/event"

    def __init__(self, harness, central, user="relay", client_id="vigie-receipt-player",
                 clean_session=False, name="receipt-player"):
        self.harness = harness
        self.central = central
        self.user = user
        self.client_id = client_id
        self.clean_session = clean_session
        self.name = name
        self.events = {}          # identity -> Event
        self.arrivals = []        # identities in arrival order, duplicates included
        self.duplicates = 0
        self.rejected = []        # (topic, reason)
        self.receipts_sent = 0
        self._highest = {}        # (site, node, boot_id) -> highest contiguous seq
        self._cond = threading.Condition()
        self.client = None
        harness.clients.append(self)
        self.start()

    def start(self):
        """Connect and subscribe (again, after stop(): the state is kept)."""
        pb = _pb()
        self._pb = pb
        connected = threading.Event()
        c = MqttClient(client_id=self.client_id, clean_session=self.clean_session)
        if getattr(self.central, "tls_ca", None):
            tls_set(c, self.central.tls_ca, getattr(self.central, "tls_cert", None),
                    getattr(self.central, "tls_key", None))
        c.username_pw_set(self.user, self.central.password(self.user))
        c.reconnect_delay_set(0.1, 1)
        c.max_inflight_messages_set(100)

        def on_connect(client, userdata, flags, rc):
            if rc == 0:
                client.subscribe(self.TOPIC, qos=1)

        def on_subscribe(client, userdata, mid, granted):
            connected.set()

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = self._on_message
        c.connect_async(self.central.host, self.central.port, keepalive=10)
        c.loop_start()
        self.client = c
        if not connected.wait(10):
            self.stop()
            raise AssertionError(f"{self.name} could not subscribe at {self.central.name}")
        return self

    def stop(self):
        c, self.client = self.client, None
        if c is not None:
            c.disconnect()
            c.loop_stop()

    close = stop

    def _on_message(self, client, userdata, msg):
        parts = msg.topic.split("/")
        try:
            _, ev = decode_event(msg.payload)
        except Exception as e:  # DecodeError: a malformed payload is a test fact
            with self._cond:
                self.rejected.append((msg.topic, f"undecodable: {e}"))
                self._cond.notify_all()
            return
        if (ev.site, ev.node) != (parts[3], parts[5]) or ev.seq < 1:
            with self._cond:
                self.rejected.append((msg.topic, f"topic/content mismatch or seq 0: "
                                                 f"{ev.site}/{ev.node} seq {ev.seq}"))
                self._cond.notify_all()
            return
        ident = (ev.site, ev.node, ev.boot_id, ev.seq)
        key = ident[:3]
        with self._cond:
            self.arrivals.append(ident)
            if ident in self.events:
                self.duplicates += 1
            else:
                self.events[ident] = ev
                high = self._highest.get(key, 0)
                while (key + (high + 1,)) in self.events:
                    high += 1
                self._highest[key] = high
            high = self._highest.get(key, 0)
            self._cond.notify_all()
        if high >= 1:
            r = self._pb.Receipt(site=ev.site, node=ev.node, boot_id=ev.boot_id, seq=high,
                                 time_us=int(time.time() * 1e6), relay=self.name)
            client.publish(f"vigie/v1/relay/{ev.site}/receipt/{ev.node}",
                           r.SerializeToString(), qos=1)
            with self._cond:
                self.receipts_sent += 1

    def highest(self, site, node, boot_id):
        with self._cond:
            return self._highest.get((site, node, boot_id), 0)

    def identities(self):
        with self._cond:
            return set(self.events)

    def wait_for_events(self, n, timeout=10.0):
        """Wait until `n` distinct events are stored."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.events) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {n} "
                                         f"events at {self.name} (got {len(self.events)})")
                self._cond.wait(min(left, 0.1))
            return len(self.events)
