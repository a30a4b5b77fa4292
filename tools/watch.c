/* vigie-watch: a readable, live view of what crosses a broker. Every Vigie
 * payload is protobuf; this decodes each by its topic and prints one line. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vigie/clock.h"
#include "vigie/codec.h"
#include "vigie/error.h"
#include "vigie/log.h"
#include "vigie/mqtt.h"

static const char usage[] =
	"usage: vigie-watch [options]\n"
	"  -H, --host HOST       broker host (default 127.0.0.1)\n"
	"  -p, --port PORT       broker port (default 1883)\n"
	"  -u, --user USER       username\n"
	"  -P, --password PASS   password (or VIGIE_PASSWORD in the "
	"environment)\n"
	"      --cafile FILE     TLS: CA certificate (enables TLS)\n"
	"      --cert FILE       TLS: client certificate\n"
	"      --key FILE        TLS: client key\n"
	"  -t, --topic PATTERN   subscribe to PATTERN (repeatable; default "
	"vigie/#)\n"
	"      --heartbeats      show heartbeats too (hidden by default)\n"
	"  -n, --count N         exit after N events\n"
	"      --no-color        plain text even on a terminal\n";

struct watch {
	uv_loop_t loop;
	uv_signal_t sigint, sigterm;
	struct vigie_mqtt *m;
	bool heartbeats;
	bool color;
	unsigned long count, events;
	bool was_connected;
};

static const char *color(const struct watch *w, const char *code)
{
	return w->color ? code : "";
}

#define RED    "\033[1;31m"
#define YELLOW "\033[33m"
#define GREEN  "\033[32m"
#define DIM    "\033[2m"
#define RESET  "\033[0m"

static void stamp(char *buf, size_t len)
{
	char full[40];

	vigie_clock_format_us(vigie_clock_now_us(), full, sizeof(full));
	/* HH:MM:SS.mmm is enough on a console. */
	snprintf(buf, len, "%.12s", full + 11);
}

static void print_event(struct watch *w, const void *payload, size_t len)
{
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *ev;
	char line[1024], now[16];
	const char *c;
	int rc;

	stamp(now, sizeof(now));
	rc = vigie_event_decode(payload, len, &se, &ev);
	if (rc) {
		printf("%s EVENT     undecodable payload (%zu bytes): %s\n",
		       now, len, vigie_strerror(rc));
		return;
	}
	switch (ev->state) {
	case VIGIE__V1__EVENT_STATE__STATE_ALARM:
		c = RED;
		break;
	case VIGIE__V1__EVENT_STATE__STATE_TROUBLE:
		c = YELLOW;
		break;
	case VIGIE__V1__EVENT_STATE__STATE_RESTORE:
		c = GREEN;
		break;
	default:
		c = "";
	}
	vigie_event_format(ev, line, sizeof(line));
	/* vigie_event_format starts with the event's own time; show the
	 * arrival time first and the transit delay after. */
	printf("%s %sEVENT%s     %s %s(+%.1f ms)%s\n", now, color(w, c),
	       color(w, RESET), line, color(w, DIM),
	       (double)((int64_t)(vigie_clock_now_us() - ev->time_us)) / 1000.0,
	       color(w, RESET));
	vigie_event_free(se, ev);
	w->events++;
}

static void print_message(struct watch *w, const char *topic,
			  const void *payload, size_t len, bool retain)
{
	struct vigie_topic t;
	char now[16];

	stamp(now, sizeof(now));
	if (vigie_topic_parse(topic, &t)) {
		printf("%s OTHER     %s (%zu bytes)\n", now, topic, len);
		return;
	}
	switch (t.type) {
	case VIGIE_TOPIC_EVENT:
		print_event(w, payload, len);
		return;
	case VIGIE_TOPIC_STATE: {
		Vigie__V1__NodeState *s =
			vigie__v1__node_state__unpack(NULL, len, payload);

		if (!s)
			break;
		printf("%s STATE     %s/%s %s%s%s%s%s boot %llu, %zu zone(s), "
		       "%zu sensor(s)",
		       now, t.site, t.node,
		       color(w, s->status == VIGIE__V1__NODE_STATUS__NODE_ONLINE
					? GREEN
					: YELLOW),
		       s->status == VIGIE__V1__NODE_STATUS__NODE_ONLINE
			       ? "online"
			       : "OFFLINE",
		       color(w, RESET), *s->reason ? " reason=" : "", s->reason,
		       (unsigned long long)s->boot_id, s->n_zones,
		       s->n_sensors);
		for (size_t i = 0; i < s->n_uncovered_zones; i++)
			printf("%s%s", i ? "," : ", uncovered: ",
			       s->uncovered_zones[i]);
		printf("%s\n", retain ? " (retained)" : "");
		vigie__v1__node_state__free_unpacked(s, NULL);
		return;
	}
	case VIGIE_TOPIC_HEARTBEAT: {
		Vigie__V1__Heartbeat *hb;
		Vigie__V1__HeartbeatBody *b;

		if (!w->heartbeats)
			return;
		hb = vigie__v1__heartbeat__unpack(NULL, len, payload);
		if (!hb)
			break;
		b = vigie__v1__heartbeat_body__unpack(NULL, hb->body.len,
						      hb->body.data);
		if (b) {
			printf("%s %sHEARTBEAT%s %s/%s last_seq=%llu "
			       "pending=%u path=%s\n",
			       now, color(w, DIM), color(w, RESET), t.site,
			       t.node, (unsigned long long)b->last_seq,
			       b->outbox_pending, b->path);
			vigie__v1__heartbeat_body__free_unpacked(b, NULL);
		}
		vigie__v1__heartbeat__free_unpacked(hb, NULL);
		if (!b)
			break;
		return;
	}
	case VIGIE_TOPIC_RECEIPT: {
		Vigie__V1__Receipt *r =
			vigie__v1__receipt__unpack(NULL, len, payload);

		if (!r)
			break;
		printf("%s %sRECEIPT%s   %s/%s boot %llu stored up to #%llu\n",
		       now, color(w, DIM), color(w, RESET), t.site, t.node,
		       (unsigned long long)r->boot_id,
		       (unsigned long long)r->seq);
		vigie__v1__receipt__free_unpacked(r, NULL);
		return;
	}
	default:
		printf("%s %-9s %s (%zu bytes)\n", now, "MESSAGE", topic, len);
		return;
	}
	printf("%s BAD       %s: payload does not decode (%zu bytes)\n", now,
	       topic, len);
}

static void on_message(struct vigie_mqtt *m, void *ud, const char *topic,
		       const void *payload, size_t len, int qos, bool retain)
{
	struct watch *w = ud;

	(void)m;
	(void)qos;
	print_message(w, topic, payload, len, retain);
	fflush(stdout);
	if (w->count && w->events >= w->count)
		uv_stop(&w->loop);
}

static void on_connect(struct vigie_mqtt *m, void *ud, bool session_present)
{
	struct watch *w = ud;

	(void)m;
	(void)session_present;
	w->was_connected = true;
	fprintf(stderr, "vigie-watch: connected\n");
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)signum;
	uv_stop(h->loop);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"host", required_argument, NULL, 'H'},
		{"port", required_argument, NULL, 'p'},
		{"user", required_argument, NULL, 'u'},
		{"password", required_argument, NULL, 'P'},
		{"cafile", required_argument, NULL, 'C'},
		{"cert", required_argument, NULL, 'E'},
		{"key", required_argument, NULL, 'K'},
		{"topic", required_argument, NULL, 't'},
		{"heartbeats", no_argument, NULL, 'b'},
		{"count", required_argument, NULL, 'n'},
		{"no-color", no_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const struct vigie_mqtt_callbacks cbs = {
		.on_connect = on_connect,
		.on_message = on_message,
	};
	static struct watch w;
	struct vigie_mqtt_options o;
	const char *topics[16];
	int n_topics = 0, c, rc;
	char client_id[64];
	char *end;

	memset(&o, 0, sizeof(o));
	o.host = "127.0.0.1";
	o.port = 1883;
	o.password = getenv("VIGIE_PASSWORD");
	w.color = isatty(1);
	while ((c = getopt_long(argc, argv, "H:p:u:P:t:n:h", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'H':
			o.host = optarg;
			break;
		case 'p':
			o.port = (int)strtol(optarg, &end, 10);
			if (*end || o.port < 1 || o.port > 65535) {
				fprintf(stderr,
					"vigie-watch: --port: expected "
					"1-65535, got \"%s\"\n",
					optarg);
				return 2;
			}
			break;
		case 'u':
			o.username = optarg;
			break;
		case 'P':
			o.password = optarg;
			break;
		case 'C':
			o.tls.cafile = optarg;
			break;
		case 'E':
			o.tls.certfile = optarg;
			break;
		case 'K':
			o.tls.keyfile = optarg;
			break;
		case 't':
			if (n_topics == 16) {
				fprintf(stderr,
					"vigie-watch: at most 16 topics\n");
				return 2;
			}
			topics[n_topics++] = optarg;
			break;
		case 'b':
			w.heartbeats = true;
			break;
		case 'n':
			w.count = strtoul(optarg, &end, 10);
			if (*end || !*optarg || optarg[0] == '-') {
				fprintf(stderr,
					"vigie-watch: --count: expected a "
					"number, got \"%s\"\n",
					optarg);
				return 2;
			}
			break;
		case 'N':
			w.color = false;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "vigie-watch: unexpected argument \"%s\"\n%s",
			argv[optind], usage);
		return 2;
	}
	if (o.password && !o.username) {
		o.password = NULL;
	}
	if (!n_topics)
		topics[n_topics++] = "vigie/#";
	vigie_log_init("vigie-watch", VIGIE_LOG_WARN);
	snprintf(client_id, sizeof(client_id), "vigie-watch-%ld",
		 (long)getpid());
	o.client_id = client_id;
	o.clean_start = true;
	o.name = "watch";
	uv_loop_init(&w.loop);
	vigie_mqtt_lib_init();
	rc = vigie_mqtt_open(&w.loop, &o, &cbs, &w, &w.m);
	if (rc) {
		fprintf(stderr, "vigie-watch: %s\n", vigie_strerror(rc));
		return 2;
	}
	for (int i = 0; i < n_topics; i++) {
		if (vigie_mqtt_subscribe(w.m, topics[i], 1)) {
			fprintf(stderr,
				"vigie-watch: invalid topic pattern \"%s\"\n",
				topics[i]);
			return 2;
		}
	}
	uv_signal_init(&w.loop, &w.sigint);
	uv_signal_init(&w.loop, &w.sigterm);
	uv_signal_start(&w.sigint, on_signal, SIGINT);
	uv_signal_start(&w.sigterm, on_signal, SIGTERM);
	vigie_mqtt_start(w.m);
	uv_run(&w.loop, UV_RUN_DEFAULT);
	vigie_mqtt_close(w.m, NULL, NULL);
	uv_close((uv_handle_t *)&w.sigint, NULL);
	uv_close((uv_handle_t *)&w.sigterm, NULL);
	uv_run(&w.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&w.loop);
	vigie_mqtt_lib_cleanup();
	return rc ? 1 : 0;
}
