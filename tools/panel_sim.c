/* vigie-panel-sim: plays an intrusion panel that reports over SIA DC-09.
 * It sends scripted frames, in clear or encrypted, over TCP or UDP, and
 * checks each answer against what the script expects. Used by the tests
 * and the demo; the frames come from the node's own codec (node/sia.h), so
 * it speaks exactly what the receiver is tested against. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sia.h"
#include "vigie/clock.h"
#include "vigie/error.h"

#define EXIT_USAGE 2
#define STEP_MAX   8192
#define WORDS_MAX  24

static const char usage[] =
	"usage: vigie-panel-sim -p PORT [options] [SCRIPT]\n"
	"       vigie-panel-sim -p PORT [options] -e STEP [-e STEP ...]\n"
	"options:\n"
	"  -H, --host HOST      receiver address (default 127.0.0.1)\n"
	"  -p, --port PORT      receiver port (required)\n"
	"  -u, --udp            UDP instead of TCP\n"
	"  -a, --account HEX    account number (default 1234)\n"
	"  -k, --key HEX        AES key, 32/48/64 hex digits: encrypt every "
	"frame\n"
	"  -t, --timeout MS     how long to wait for an answer (default 3000)\n"
	"  -n, --none-wait MS   how long 'expect=none' listens (default 800)\n"
	"  -e, --step STEP      a script line (repeatable), instead of SCRIPT\n"
	"  -q, --quiet          print failures only\n"
	"script: one step per line, '#' starts a comment:\n"
	"  event data=\"Nri1/BA03\"     SIA DCS message (token=ADM-CID for "
	"Contact ID)\n"
	"  cid data=\"1130 01 015\"     Contact ID message\n"
	"  null                       link test\n"
	"  raw text=\"...\"             bytes as given (\\n \\r \\\\ \\xHH "
	"escapes)\n"
	"  sleep ms=1500              pause\n"
	"  reconnect                  new TCP connection\n"
	"step keys: expect=ACK|NAK|DUH|none|close (default ACK; raw: none),\n"
	"  seq=N (default: the next one), repeat=N (same frame again, same "
	"seq),\n"
	"  account=HEX, key=HEX|none, time=now|+S|-S|none, crc=bad,\n"
	"  length=bad, case=lower, rcvr=HEX, line=HEX, xdata=\"[..]\",\n"
	"  token=ID (any id token, e.g. SIA-XYZ)\n"
	"exit status: 0 every answer as expected, 1 otherwise, 2 bad usage\n";

struct opts {
	const char *host;
	int port;
	bool udp;
	const char *account;
	uint8_t key[32];
	size_t key_len;
	int timeout_ms, none_ms;
	bool quiet;
};

struct sim {
	struct opts o;
	int fd;
	unsigned next_seq;
	unsigned long steps, failures;
	char in[4096];
	size_t in_len;
	bool eof;
};

struct step {
	char verb[16];
	char *key[WORDS_MAX];
	char *val[WORDS_MAX];
	size_t n;
	unsigned line;
};

static const char *get(const struct step *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->key[i], key) == 0)
			return s->val[i];
	return NULL;
}

static int hex_key(const char *hex, uint8_t *out, size_t *len)
{
	size_t n = strlen(hex);

	if (n != 32 && n != 48 && n != 64)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

/* Split "verb k=v k="v w" ..." in place. */
static int split(char *line, struct step *s)
{
	char *p = line, *w;

	memset(s->verb, 0, sizeof(s->verb));
	s->n = 0;
	while (*p == ' ' || *p == '\t')
		p++;
	w = p;
	while (*p && *p != ' ' && *p != '\t')
		p++;
	if ((size_t)(p - w) >= sizeof(s->verb))
		return -1;
	memcpy(s->verb, w, (size_t)(p - w));
	for (;;) {
		char *k, *v, *o;

		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			return 0;
		if (s->n == WORDS_MAX)
			return -1;
		k = p;
		while (*p && *p != '=' && *p != ' ')
			p++;
		if (*p != '=')
			return -1;
		*p++ = '\0';
		v = o = p;
		if (*p == '"') {
			v = o = ++p;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					*o++ = *p++;
				*o++ = *p++;
			}
			if (*p != '"')
				return -1;
			p++;
		} else {
			while (*p && *p != ' ' && *p != '\t')
				o++, p++;
		}
		if (*p)
			p++;
		*o = '\0';
		s->key[s->n] = k;
		s->val[s->n++] = v;
	}
}

/* \n \r \\ \0 \xHH -> bytes. */
static size_t unescape(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	while (*in && n < cap) {
		if (*in != '\\') {
			out[n++] = *in++;
			continue;
		}
		in++;
		switch (*in) {
		case 'n':
			out[n++] = '\n';
			in++;
			break;
		case 'r':
			out[n++] = '\r';
			in++;
			break;
		case '0':
			out[n++] = '\0';
			in++;
			break;
		case 'x': {
			unsigned v = 0;

			if (sscanf(in + 1, "%2x", &v) == 1) {
				out[n++] = (char)v;
				in += 3;
			} else {
				out[n++] = 'x';
				in++;
			}
			break;
		}
		case '\0':
			break;
		default:
			out[n++] = *in++;
			break;
		}
	}
	return n;
}

static int connect_to(struct sim *s)
{
	struct addrinfo hints, *res = NULL;
	char port[16];
	int fd = -1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = s->o.udp ? SOCK_DGRAM : SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", s->o.port);
	rc = getaddrinfo(s->o.host, port, &hints, &res);
	if (rc) {
		fprintf(stderr, "vigie-panel-sim: %s: %s\n", s->o.host,
			gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr,
			"vigie-panel-sim: cannot connect to %s:%d (%s): %s\n",
			s->o.host, s->o.port, s->o.udp ? "udp" : "tcp",
			strerror(errno));
		return -1;
	}
	s->fd = fd;
	s->in_len = 0;
	s->eof = false;
	return 0;
}

/* Read until a whole frame is in s->in (copied to out), the peer closes
 * (returns 0 with s->eof), or the deadline passes (returns 0). */
static int read_frame(struct sim *s, int wait_ms, char *out, size_t cap,
		      size_t *len)
{
	uint64_t deadline = vigie_clock_mono_ms() + (uint64_t)wait_ms;
	char err[160];

	*len = 0;
	for (;;) {
		size_t skip = 0, flen = 0;
		int rc = vigie__sia_scan(s->in, s->in_len, &skip, &flen, err,
					 sizeof(err));
		struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
		uint64_t now;
		ssize_t n;

		if (rc == 1 && flen <= cap) {
			memcpy(out, s->in + skip, flen);
			*len = flen;
			memmove(s->in, s->in + skip + flen,
				s->in_len - skip - flen);
			s->in_len -= skip + flen;
			return 1;
		}
		if (rc < 0) {
			fprintf(stderr,
				"vigie-panel-sim: answer is not a frame: %s\n",
				err);
			return -1;
		}
		if (s->eof)
			return 0;
		now = vigie_clock_mono_ms();
		if (now >= deadline)
			return 0;
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		n = recv(s->fd, s->in + s->in_len, sizeof(s->in) - s->in_len,
			 0);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN &&
			       !(s->o.udp && errno == ECONNREFUSED))) {
			s->eof = true;
			continue;
		}
		if (n > 0)
			s->in_len += (size_t)n;
		if (s->in_len == sizeof(s->in))
			return -1;
	}
}

/* What came back, as a word: ACK, NAK, DUH, none, close, or "bad ...". */
static void judge(struct sim *s, const char *got_frame, size_t len, bool enc,
		  const uint8_t *key, size_t key_len, unsigned seq,
		  const char *account, char *got, size_t gotlen)
{
	struct sia_frame f;
	struct sia_content c;
	const char *body;
	size_t blen, plen;
	char err[160], plain[SIA_BODY_MAX];

	(void)s;
	if (vigie__sia_frame_check(got_frame, len, &body, &blen, err,
				   sizeof(err)) ||
	    vigie__sia_frame_parse(body, blen, &f, err, sizeof(err))) {
		snprintf(got, gotlen, "a bad frame (%.100s)", err);
		return;
	}
	if (f.token == SIA_TOKEN_NAK) {
		/* The receiver's time, never encrypted. */
		if (f.encrypted ||
		    vigie__sia_content_parse(f.rest, f.rest_len, false, &c, err,
					     sizeof(err)) ||
		    !c.has_time)
			snprintf(got, gotlen, "a NAK without its timestamp");
		else
			snprintf(got, gotlen, "NAK");
		return;
	}
	if (f.token != SIA_TOKEN_ACK && f.token != SIA_TOKEN_DUH) {
		snprintf(got, gotlen, "\"%s\"", f.id);
		return;
	}
	if (f.seq != seq || (account && strcmp(f.account, account) != 0)) {
		snprintf(got, gotlen, "%s for seq %04u account %s", f.id, f.seq,
			 f.account);
		return;
	}
	if (f.token == SIA_TOKEN_ACK && enc) {
		if (!f.encrypted) {
			snprintf(got, gotlen,
				 "a cleartext ACK to an encrypted message");
			return;
		}
		if (vigie__sia_decrypt(key, key_len, f.rest, f.rest_len, plain,
				       sizeof(plain), &plen) ||
		    vigie__sia_content_parse(plain, plen, true, &c, err,
					     sizeof(err)) ||
		    !c.has_time) {
			snprintf(got, gotlen,
				 "an encrypted ACK that does not decrypt");
			return;
		}
	} else if (f.token == SIA_TOKEN_ACK && f.encrypted) {
		snprintf(got, gotlen,
			 "an encrypted ACK to a cleartext message");
		return;
	}
	snprintf(got, gotlen, "%s", f.id);
}

static void report(struct sim *s, const struct step *st, bool ok,
		   const char *what, const char *want, const char *got,
		   double ms)
{
	if (!ok)
		s->failures++;
	if (ok && s->o.quiet)
		return;
	printf("%s line %u: %s: expected %s, got %s (%.1f ms)\n",
	       ok ? "ok  " : "FAIL", st->line, what, want, got, ms);
	fflush(stdout);
}

static bool is_true_answer(const char *want)
{
	return strcmp(want, "ACK") == 0 || strcmp(want, "NAK") == 0 ||
	       strcmp(want, "DUH") == 0;
}

static int send_all(struct sim *s, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send one frame (or raw bytes) `repeat` times and check each answer. */
static int run_message(struct sim *s, const struct step *st)
{
	const char *v, *want;
	char frame[STEP_MAX], answer[SIA_FRAME_MAX], what[96], got[160];
	char acct[SIA_ACCOUNT_MAX + 1];
	uint8_t key[32];
	size_t key_len = s->o.key_len, len = 0, alen;
	unsigned seq, repeat = 1;
	bool raw = strcmp(st->verb, "raw") == 0;
	int rc;

	memcpy(key, s->o.key, sizeof(key));
	v = get(st, "key");
	if (v && strcmp(v, "none") == 0)
		key_len = 0;
	else if (v && hex_key(v, key, &key_len)) {
		fprintf(stderr, "line %u: key: 32, 48 or 64 hex digits\n",
			st->line);
		return -1;
	}
	snprintf(acct, sizeof(acct), "%s",
		 get(st, "account") ? get(st, "account") : s->o.account);
	for (char *p = acct; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	v = get(st, "seq");
	seq = v ? (unsigned)strtoul(v, NULL, 10) % 10000u : s->next_seq;
	if (!v)
		s->next_seq = s->next_seq % 9999u + 1;
	if (get(st, "repeat"))
		repeat = (unsigned)strtoul(get(st, "repeat"), NULL, 10);
	want = get(st, "expect") ? get(st, "expect") : raw ? "none" : "ACK";
	if (raw) {
		len = unescape(get(st, "text") ? get(st, "text") : "", frame,
			       sizeof(frame));
		snprintf(what, sizeof(what), "raw %zu bytes", len);
	} else {
		struct sia_build b = {.seq = seq, .line = "0"};
		char data[SIA_BODY_MAX];
		int64_t now = (int64_t)(vigie_clock_now_us() / 1000000u);

		if (strcmp(st->verb, "null") == 0)
			b.token = "NULL";
		else if (strcmp(st->verb, "cid") == 0)
			b.token = "ADM-CID";
		else
			b.token = "SIA-DCS";
		if (get(st, "token"))
			b.token = get(st, "token");
		data[unescape(get(st, "data") ? get(st, "data") : "", data,
			      sizeof(data) - 1)] = '\0';
		b.data = data;
		b.xdata = get(st, "xdata");
		b.account = acct;
		b.rcvr = get(st, "rcvr");
		if (get(st, "line"))
			b.line = get(st, "line");
		v = get(st, "time");
		b.timestamp = !v || strcmp(v, "none") != 0;
		b.time_s = now + (v && (v[0] == '+' || v[0] == '-')
					  ? strtol(v, NULL, 10)
					  : 0);
		b.key = key;
		b.key_len = key_len;
		rc = vigie__sia_build(&b, frame, sizeof(frame), &len);
		if (rc) {
			fprintf(stderr, "line %u: cannot build the frame: %s\n",
				st->line, vigie_strerror(rc));
			return -1;
		}
		if (get(st, "case") && strcmp(get(st, "case"), "lower") == 0)
			for (size_t i = 1; i < 9; i++)
				if (frame[i] >= 'A' && frame[i] <= 'F')
					frame[i] = (char)(frame[i] - 'A' + 'a');
		if (get(st, "crc") && strcmp(get(st, "crc"), "bad") == 0)
			frame[4] = frame[4] == '0' ? '1' : '0';
		if (get(st, "length") && strcmp(get(st, "length"), "bad") == 0)
			frame[8] = frame[8] == '0' ? '1' : '0';
		snprintf(what, sizeof(what), "%s%s seq %04u",
			 key_len ? "*" : "", b.token, seq);
	}
	for (unsigned r = 0; r < repeat; r++) {
		uint64_t t0 = vigie_clock_mono_ms();
		double ms;
		int got_frame;

		s->steps++;
		if (send_all(s, frame, len)) {
			report(s, st, strcmp(want, "close") == 0, what, want,
			       "a send error (connection closed)", 0);
			return 0;
		}
		got_frame = read_frame(s,
				       is_true_answer(want) ? s->o.timeout_ms
							    : s->o.none_ms,
				       answer, sizeof(answer), &alen);
		ms = (double)(vigie_clock_mono_ms() - t0);
		if (got_frame < 0) {
			report(s, st, false, what, want, "garbage", ms);
			continue;
		}
		if (got_frame == 0) {
			const char *g = s->eof ? "close" : "none";
			bool ok = strcmp(want, g) == 0 ||
				  (strcmp(want, "none") == 0 && s->o.udp);

			report(s, st, ok, what, want,
			       s->eof ? "the connection closed" : "no answer",
			       ms);
			continue;
		}
		judge(s, answer, alen, key_len > 0 && !raw, key, key_len, seq,
		      raw ? NULL : acct, got, sizeof(got));
		report(s, st, strcmp(got, want) == 0, what, want, got, ms);
	}
	return 0;
}

static int run_step(struct sim *s, char *line, unsigned lineno)
{
	struct step st;
	char *hash;

	/* '#' starts a comment outside quotes. */
	for (hash = line; *hash; hash++) {
		if (*hash == '"') {
			hash = strchr(hash + 1, '"');
			if (!hash)
				break;
			continue;
		}
		if (*hash == '#') {
			*hash = '\0';
			break;
		}
	}
	line[strcspn(line, "\r\n")] = '\0';
	if (split(line, &st)) {
		fprintf(stderr, "line %u: cannot read the step\n", lineno);
		return -1;
	}
	st.line = lineno;
	if (!st.verb[0])
		return 0;
	if (strcmp(st.verb, "sleep") == 0) {
		const char *ms = get(&st, "ms");
		struct timespec ts;
		long v = ms ? strtol(ms, NULL, 10) : 1000;

		ts.tv_sec = v / 1000;
		ts.tv_nsec = (v % 1000) * 1000000L;
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		return 0;
	}
	if (strcmp(st.verb, "reconnect") == 0) {
		close(s->fd);
		return connect_to(s);
	}
	if (strcmp(st.verb, "event") && strcmp(st.verb, "cid") &&
	    strcmp(st.verb, "null") && strcmp(st.verb, "raw")) {
		fprintf(stderr, "line %u: unknown step \"%s\"\n", lineno,
			st.verb);
		return -1;
	}
	if (s->eof && !s->o.udp) {
		/* The receiver closed on us: a new connection, as a panel
		 * would make. */
		close(s->fd);
		if (connect_to(s))
			return -1;
	}
	return run_message(s, &st);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"host", required_argument, NULL, 'H'},
		{"port", required_argument, NULL, 'p'},
		{"udp", no_argument, NULL, 'u'},
		{"account", required_argument, NULL, 'a'},
		{"key", required_argument, NULL, 'k'},
		{"timeout", required_argument, NULL, 't'},
		{"none-wait", required_argument, NULL, 'n'},
		{"step", required_argument, NULL, 'e'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct sim s;
	char **steps = calloc((size_t)argc + 1, sizeof(*steps));
	size_t n_steps = 0;
	unsigned lineno = 0;
	char line[STEP_MAX];
	int c, rc = 0;

	if (!steps)
		return 1;
	s.o.host = "127.0.0.1";
	s.o.account = "1234";
	s.o.timeout_ms = 3000;
	s.o.none_ms = 800;
	s.next_seq = 1;
	s.fd = -1;
	while ((c = getopt_long(argc, argv, "H:p:ua:k:t:n:e:qh", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'H':
			s.o.host = optarg;
			break;
		case 'p':
			s.o.port = atoi(optarg);
			break;
		case 'u':
			s.o.udp = true;
			break;
		case 'a':
			s.o.account = optarg;
			break;
		case 'k':
			if (hex_key(optarg, s.o.key, &s.o.key_len)) {
				fprintf(stderr, "vigie-panel-sim: --key: 32, "
						"48 or 64 hex digits\n");
				free(steps);
				return EXIT_USAGE;
			}
			break;
		case 't':
			s.o.timeout_ms = atoi(optarg);
			break;
		case 'n':
			s.o.none_ms = atoi(optarg);
			break;
		case 'e':
			steps[n_steps++] = optarg;
			break;
		case 'q':
			s.o.quiet = true;
			break;
		case 'h':
			fputs(usage, stdout);
			free(steps);
			return 0;
		default:
			fputs(usage, stderr);
			free(steps);
			return EXIT_USAGE;
		}
	}
	if (s.o.port <= 0 || s.o.port > 65535 || s.o.timeout_ms <= 0 ||
	    s.o.none_ms < 0 || (n_steps && optind != argc) ||
	    (!n_steps && optind + 1 != argc)) {
		fputs(usage, stderr);
		free(steps);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	if (connect_to(&s)) {
		free(steps);
		return 1;
	}
	if (n_steps) {
		for (size_t i = 0; i < n_steps && rc == 0; i++) {
			snprintf(line, sizeof(line), "%s", steps[i]);
			rc = run_step(&s, line, (unsigned)i + 1);
		}
	} else {
		FILE *f = strcmp(argv[optind], "-") == 0
				  ? stdin
				  : fopen(argv[optind], "r");

		if (!f) {
			perror(argv[optind]);
			rc = -1;
		}
		while (f && rc == 0 && fgets(line, sizeof(line), f))
			rc = run_step(&s, line, ++lineno);
		if (f && f != stdin)
			fclose(f);
	}
	close(s.fd);
	free(steps);
	if (rc)
		return EXIT_USAGE;
	if (!s.o.quiet || s.failures)
		printf("%lu frame(s), %lu not as expected\n", s.steps,
		       s.failures);
	return s.failures ? 1 : 0;
}
