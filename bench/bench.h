/* vigie-bench internals: one file per concern.
 *
 *   main.c        options, which figures run, the JSON lines
 *   proc.c        the temporary directory and child processes: every child
 *                 is stopped by PID at exit, also on failure and on SIGINT
 *   broker.c      mosquitto brokers on free loopback ports, the bridge
 *   central_sink.c  the central subscriber for the node figures: receipts
 *                 as the relay would, on its own thread and loop, and
 *                 measures what arrives
 *   node_run.c    an in-process node (node/node.h) on a loop of its own
 *   bare.c        bare libmosquitto publishers, the baselines
 *   pub.c         bulk QoS 1 publishing of messages encoded beforehand
 *   sub.c         libmosquitto subscribers on threads of their own
 *   relay_proc.c  the real vigie-relay as a child: config, readiness, RSS
 *   tls_bench.c   the certificates of the TLS figures, security.tls_*
 *   receipt_watch.c  Receipts at the central: when every node was covered
 *   publish_bench.c, latency_bench.c, idle_bench.c, panels_bench.c,
 *   relay_latency.c, relay_throughput.c (also relay.throughput_signed),
 *   relay_rss.c: the figures
 *   stats.c       clocks and percentiles
 *
 * Functions return 0 or a negative VIGIE_E* code and log the reason once
 * where it is known; a figure that fails is left out of the output and makes
 * the exit status 1. */
#ifndef VIGIE_BENCH_H
#define VIGIE_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "node.h"

/* The site id every figure uses. */
#define BENCH_SITE "bench"
/* How long a bridge may take to carry its first message. */
#define BENCH_BRIDGE_TIMEOUT_MS 10000u
/* The police post of the relay figures. */
#define BENCH_POST "pp-bench"

struct bench_opts {
	bool quick;
	/* Site brokers without persistence: takes the broker's disk out of
	 * the figures (diagnosis only; production has it on). */
	bool no_persistence;
	/* Every process of the run (brokers, daemons, clients, both sides of
	 * each ratio) under SCHED_FIFO: other load on a shared machine then
	 * waits, and the ratios show the code's cost rather than whose turn
	 * it was. Reported in each figure ("sched"). */
	bool realtime;
	const char *const *only; /* NULL-terminated prefixes; NULL: all */
};

/* ---- main.c ---- */

/* bench_wanted: does the user want figure `name` (--only)? */
bool bench_wanted(const struct bench_opts *o, const char *name);

/* bench_emit: one JSON line on stdout; the baseline and ratio only when
 * `baseline` > 0. Figures not wanted are not printed. */
void bench_emit(const struct bench_opts *o, const char *name, double value,
		const char *unit, double baseline);

/* bench_progress: a human-readable line on stderr. */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- proc.c ---- */

/* bench_proc_init: make the temporary directory, route SIGINT, SIGTERM and
 * SIGHUP to a thread that cleans up, and register the same cleanup with
 * atexit. Call first, before any other thread exists. */
int bench_proc_init(void);

/* bench_tmpdir: the temporary directory (removed at exit). */
const char *bench_tmpdir(void);

/* bench_self_dir: the folder holding this executable (build/bin). */
int bench_self_dir(char *buf, size_t len);

/* bench_path: "<tmpdir>/<name>" into buf. Returns 0 or VIGIE_ETOOBIG. */
int bench_path(char *buf, size_t len, const char *name);

/* bench_spawn: start argv[0] (an absolute path) with stdout and stderr
 * appended to `log_path`, stdin from /dev/null. The child dies with us
 * (PR_SET_PDEATHSIG) and is stopped by bench_proc_cleanup if still alive.
 * Returns 0 or VIGIE_ESYS. */
int bench_spawn(char *const argv[], const char *log_path, pid_t *out);

/* bench_child_alive: false once the child has exited (it is then reaped
 * and *status, if not NULL, gets its wait status). */
bool bench_child_alive(pid_t pid, int *status);

/* bench_child_stop: SIGTERM, wait up to timeout_ms, then SIGKILL; reaps
 * the child. *status (may be NULL) gets its wait status. Returns 0, or
 * VIGIE_ESYS when it had to be killed. */
int bench_child_stop(pid_t pid, unsigned timeout_ms, int *status);

/* bench_log_tail: print the last lines of a child's log to stderr. */
void bench_log_tail(const char *log_path, const char *who);

/* bench_proc_cleanup: stop every child still running, remove the
 * temporary directory. Idempotent. */
void bench_proc_cleanup(void);

/* bench_rss_kib: VmRSS of `pid` (/proc/PID/status) in KiB. Returns 0 or
 * VIGIE_ESYS. */
int bench_rss_kib(pid_t pid, unsigned long *out);

/* bench_cpu_ns: CPU time used so far by the living threads of `pid`, in ns
 * (schedstat). Returns 0, VIGIE_ESYS or VIGIE_EDECODE (no schedstat). */
int bench_cpu_ns(pid_t pid, unsigned long long *out);

/* ---- broker.c ---- */

/* One side's TLS files (PEM): the CA it trusts, its certificate and key. */
struct bench_tls {
	const char *ca;
	const char *cert;
	const char *key;
};

struct bench_broker {
	char name[16];
	int port;     /* plaintext listener */
	int tls_port; /* TLS listener; 0: none */
	pid_t pid;
	char conf[256];
	char log[256];
};

/* A bridge from a site broker to a central one (DESIGN.md topic tree). */
struct bench_bridge {
	const char *site;
	int central_port;
};

struct bench_broker_options {
	/* A persistence file saved each second. */
	bool persistence;
	/* NULL: no bridge. */
	const struct bench_bridge *bridge;
	/* A second listener, on tls_port, speaking TLS only (TLS 1.2 and up)
	 * with this server certificate, as broker-config's; NULL: none. */
	const struct bench_tls *tls;
	/* There, only clients with a certificate signed by tls->ca. */
	bool require_certificate;
};

/* bench_broker_start: write a configuration like production's (tcp
 * nodelay, the queue limits of broker-config/) with what `opts` asks for
 * (NULL: no persistence, no bridge, plaintext only), start
 * /usr/sbin/mosquitto on free 127.0.0.1 ports and wait until every
 * listener accepts a connection. Returns 0, VIGIE_ESYS or VIGIE_ENOCONN. */
int bench_broker_start(struct bench_broker *b, const char *name,
		       const struct bench_broker_options *opts);

/* bench_broker_stop: stop it by PID. Returns 0 or VIGIE_ESYS. */
int bench_broker_stop(struct bench_broker *b);

/* bench_mesh_start: a central broker and the site broker `site_name`
 * bridged to it, ready to carry messages. On error the caller still stops
 * both (bench_broker_stop is a no-op on a broker that did not start). */
int bench_mesh_start(const struct bench_opts *o, const char *site_name,
		     struct bench_broker *central, struct bench_broker *site);

/* bench_bridge_wait: until a message published on the site broker under
 * vigie/v1/site/<site>/ reaches the central broker and one published on the
 * central broker under vigie/v1/relay/<site>/ reaches the site broker.
 * Returns 0 or VIGIE_ENOCONN. */
int bench_bridge_wait(const struct bench_broker *site,
		      const struct bench_broker *central, const char *site_id,
		      unsigned timeout_ms);

/* bench_mosq_connect: a blocking libmosquitto client (MQTT 5, TCP_NODELAY,
 * `max_inflight` QoS 1 messages in flight), connected. Returns 0,
 * VIGIE_ENOMEM or VIGIE_ENOCONN. */
struct mosquitto;
int bench_mosq_connect(int port, const char *client_id, int max_inflight,
		       void *userdata, struct mosquitto **out);

/* bench_mosq_connect_tls: the same over TLS with `tls` (CA and client
 * certificate); plaintext when NULL. */
int bench_mosq_connect_tls(int port, const struct bench_tls *tls,
			   const char *client_id, int max_inflight,
			   void *userdata, struct mosquitto **out);

/* ---- central_sink.c ---- */

struct bench_sink;

struct bench_sink_options {
	int port; /* broker to subscribe on (127.0.0.1) */
	const char *site;
	const char *node; /* events and births of this node only */
	bool receipts;    /* play the relay: publish Receipts */
	uint64_t max_seq; /* seqs above this are not tracked */
};

/* bench_sink_start: connect on a thread of its own, subscribe to the
 * node's events and state, and return once a probe published through the
 * subscription came back (so nothing sent after it is missed). Returns 0,
 * VIGIE_ENOMEM, VIGIE_EINVAL or VIGIE_ENOCONN. */
int bench_sink_start(const struct bench_sink_options *o,
		     struct bench_sink **out);

/* Read from any thread while it runs. */
uint64_t bench_sink_received(struct bench_sink *r);    /* distinct events */
uint64_t bench_sink_last_new_us(struct bench_sink *r); /* mono µs */
uint64_t bench_sink_online_boot(struct bench_sink *r); /* 0: no birth */
uint64_t bench_sink_duplicates(struct bench_sink *r);

/* bench_sink_stop: disconnect and join the thread. */
void bench_sink_stop(struct bench_sink *r);

/* bench_sink_latency: after stop, the latency (µs, receive time minus
 * Event.time_us) of the first arrival of `seq`; UINT32_MAX if it never
 * arrived. */
uint32_t bench_sink_latency(const struct bench_sink *r, uint64_t seq);

void bench_sink_free(struct bench_sink *r);

/* ---- node_run.c ---- */

struct bench_node {
	uv_loop_t loop;
	struct node_config cfg;
	struct vigie_node *node;
	struct node_event ev; /* what is submitted */
	char yaml[256];
	bool cfg_loaded;
	bool loop_open;
};

/* bench_node_yaml: write a node configuration: site BENCH_SITE, node `id`,
 * primary broker 127.0.0.1:`port`, outbox and socket in the temporary
 * directory, a museum's worth of zones and sensors. */
int bench_node_yaml(const char *path, const char *id, int port,
		    const char *heartbeat);

/* bench_node_open: load that config, open and start the node on bn->loop
 * and parse the event line submitted by the figures. */
int bench_node_open(struct bench_node *bn, const char *id, int port);

/* bench_node_submit: submit bn->ev; `cb` as in vigie__node_submit. */
int bench_node_submit(struct bench_node *bn, vigie_node_submit_cb cb,
		      void *arg);

/* bench_loop_until: run `loop` until cond(arg) is true (checked every
 * `check_ms`) or `timeout_ms` passed. Returns 0 or VIGIE_ENOCONN. */
int bench_loop_until(uv_loop_t *loop, bool (*cond)(void *arg), void *arg,
		     unsigned check_ms, unsigned timeout_ms);

/* bench_node_close: close the node, drain the loop and check that no
 * handle is left. Returns 0 or VIGIE_EIO. */
int bench_node_close(struct bench_node *bn);

/* ---- bare.c ---- */

/* bench_bare_payload: an encoded SignedEvent like the node's for
 * BENCH_SITE/`node`, with seq and time_us. *out is malloc'd. */
int bench_bare_payload(const char *node, uint64_t boot_id, uint64_t seq,
		       uint64_t time_us, uint8_t **out, size_t *len);

/* The bare publishers subscribe to the Receipts `relay` sends them and
 * ignore them, so that the brokers and the bridge carry the same traffic as
 * with the node.
 *
 * bench_bare_rate: publish `n` events (seq 1..n, encoded beforehand) as
 * fast as the broker takes them, at most `window` not yet seen by `relay`.
 * *elapsed_us: first publish to the n-th distinct arrival. */
int bench_bare_rate(int port, const char *node, uint64_t n, uint64_t window,
		    struct bench_sink *relay, uint64_t *elapsed_us);

/* bench_bare_paced: publish `n` events (seq 1..n) at `rate` per second,
 * each stamped right before mosquitto_publish, then wait until `relay`
 * saw them all or `drain_ms` passed. */
int bench_bare_paced(int port, const char *node, uint64_t n, double rate,
		     struct bench_sink *relay, unsigned drain_ms);

/* bench_mosq_pump: one poll of a blocking client's socket, at most
 * `timeout_us`: read (PUBACKs, messages), write what is queued, and the
 * keepalive once a second (*next_misc, mono µs). Returns 0 or
 * VIGIE_ENOCONN. */
int bench_mosq_pump(struct mosquitto *mosq, int timeout_us,
		    uint64_t *next_misc);

/* ---- pub.c ---- */

struct bench_msgs {
	uint64_t n;
	const char *topic;  /* of every message, when `topics` is NULL */
	char **topics;      /* per message (malloc'd), or NULL */
	uint8_t **payloads; /* malloc'd */
	size_t *lens;
};

/* bench_msgs_alloc: room for `n` messages (and their topics when
 * `topics`), filled by the caller. Returns 0 or VIGIE_ENOMEM. */
int bench_msgs_alloc(struct bench_msgs *m, uint64_t n, bool topics);
void bench_msgs_free(struct bench_msgs *m);

/* bench_publish_all: publish every message at QoS 1 on `mosq` (connected,
 * not threaded) as fast as the broker PUBACKs them, at most `window`
 * unacknowledged; returns once all are PUBACKed. Uses the client's user
 * data and publish callback meanwhile. Returns 0, VIGIE_ENOCONN or
 * VIGIE_EIO (not all PUBACKed within timeout_ms). */
int bench_publish_all(struct mosquitto *mosq, const struct bench_msgs *m,
		      unsigned window, unsigned timeout_ms);

/* bench_publish_receipted: as bench_publish_all, but like a node: also at
 * most `receipt_window` messages the relay has not receipted yet, and
 * returns once all are receipted. `m` holds seq 1..m->n of boot `boot_id`
 * in order; the client is subscribed to its Receipts already (the message
 * callback is this function's meanwhile). *done_us: mono µs of the Receipt
 * that covered the last one. `receipt_window` 0 is bench_publish_all
 * (done_us may then be NULL). Returns as bench_publish_all. */
int bench_publish_receipted(struct mosquitto *mosq, const struct bench_msgs *m,
			    unsigned window, uint64_t receipt_window,
			    uint64_t boot_id, unsigned timeout_ms,
			    uint64_t *done_us);

/* ---- sub.c ---- */

struct mosquitto_message;
struct bench_sub;

/* Runs on the subscriber's network thread. */
typedef void (*bench_sub_cb)(struct mosquitto *mosq, void *ud,
			     const struct mosquitto_message *msg);

/* bench_sub_start: connect (clean, MQTT 5), subscribe to `topic` at QoS 1,
 * wait for the SUBACK, then drive the client on a thread of its own, which
 * calls cb(ud) for each message (the callback may publish on `mosq`).
 * Returns 0, VIGIE_ENOMEM, VIGIE_ENOCONN or VIGIE_ESYS. */
int bench_sub_start(int port, const char *client_id, const char *topic,
		    bench_sub_cb cb, void *ud, struct bench_sub **out);

/* bench_sub_stop: disconnect and join its thread (NULL: nothing). After it,
 * the callback's data belongs to the caller again. */
void bench_sub_stop(struct bench_sub *s);

/* ---- relay_proc.c ---- */

/* The node of the relay's readiness probe events (site BENCH_SITE). */
#define BENCH_PROBE_NODE "relay-probe"

struct vigie_sign_key;

struct bench_relay {
	pid_t pid;
	int port; /* central broker */
	char conf[256], db[256], log[256];
};

struct bench_relay_options {
	/* TLS to the broker with this CA and client certificate; NULL:
	 * plaintext. */
	const struct bench_tls *tls;
	/* The broker's plaintext listener for the readiness probe (0: the
	 * relay's own port, which must then be plaintext). */
	int probe_port;
	/* A trust store of the nodes' keys (NULL: none), and whether events
	 * must be signed by them. */
	const char *trust;
	bool require_signatures;
	/* Signs the probe events (NULL: unsigned); `trust` names it for
	 * BENCH_SITE/BENCH_PROBE_NODE. */
	const struct vigie_sign_key *probe_key;
};

/* bench_relay_start: write a configuration for relay `name` connected to
 * the central broker at 127.0.0.1:`port` (site BENCH_SITE, the ladder
 * site security -> HQ -> police post BENCH_POST, its database in the
 * temporary directory) with what `opts` adds (NULL: plaintext, no trust
 * store), start vigie-relay from our own folder and return once it
 * receipted a probe event. Returns 0, VIGIE_ESYS or VIGIE_ENOCONN (it is
 * stopped again then). */
int bench_relay_start(struct bench_relay *r, const char *name, int port,
		      const struct bench_relay_options *opts);

/* bench_relay_stop: SIGTERM by PID, wait for it. Returns 0, or VIGIE_EIO
 * when it did not exit with status 0 (its log's tail is printed). */
int bench_relay_stop(struct bench_relay *r);

/* bench_relay_rss_mb: the largest VmRSS seen over `settle_ms` (one sample
 * when 0), in MiB. Returns 0 or VIGIE_ESYS. */
int bench_relay_rss_mb(const struct bench_relay *r, unsigned settle_ms,
		       double *mb);

/* bench_relay_report: after stop, the counters it logged, on stderr. */
void bench_relay_report(const struct bench_relay *r);

/* ---- receipt_watch.c ---- */

struct bench_receipts;

/* bench_receipts_start: watch the Receipts of BENCH_SITE at the central
 * broker for nodes "<prefix>0" .. "<prefix><n-1>" (decimal, leading zeros
 * allowed) until each has every seq up to `target` of boot `boot_id` (0:
 * any boot) receipted. Returns 0 or as bench_sub_start. */
int bench_receipts_start(int port, const char *prefix, unsigned n,
			 uint64_t boot_id, uint64_t target,
			 struct bench_receipts **out);
/* Nodes at their target so far. */
unsigned bench_receipts_done(struct bench_receipts *w);
/* Mono µs of the Receipt that brought the last of them there. */
uint64_t bench_receipts_last_us(struct bench_receipts *w);
void bench_receipts_stop(struct bench_receipts *w);

/* ---- stats.c ---- */

uint64_t bench_mono_us(void);
/* bench_percentile: nearest-rank percentile `p` (0..100) of v[0..n), which
 * is sorted in place. 0 when n is 0. */
uint32_t bench_percentile(uint32_t *v, size_t n, double p);

/* ---- the figures ---- */

int bench_publish_rate(const struct bench_opts *o);
int bench_latency(const struct bench_opts *o);
int bench_idle(const struct bench_opts *o);
/* patterns_bench.c: the pattern tracker on 10k museums, 1M incidents. */
int bench_patterns(const struct bench_opts *o);
/* security_bench.c: Ed25519 verification cost per event. */
int bench_security(const struct bench_opts *o);
/* panels_bench.c: SIA DC-09 frames from many panels into one node. */
int bench_panels(const struct bench_opts *o);
/* relay_*.c: the real vigie-relay. */
int bench_relay_latency(const struct bench_opts *o);
int bench_relay_throughput(const struct bench_opts *o);
/* relay.throughput's run with signed events, node-like publishers, and
 * TLS and signature verification on; baseline the same with both off. */
int bench_relay_throughput_signed(const struct bench_opts *o);
int bench_relay_rss(const struct bench_opts *o);

#endif
