/* vigie-post's JSON lines: string escaping for any bytes at all, and the
 * fixed shape of the dispatch, ack, error and status lines.
 *
 * The escaper is checked against an independent strict decoder written
 * here from RFC 8259: every output must decode, and decode to the input
 * with each invalid UTF-8 byte replaced by U+FFFD. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "post.h"
#include "vigie/error.h"

/* ---- a strict reference decoder ------------------------------------- */

static void put_utf8(uint8_t *out, size_t *n, uint32_t cp)
{
	if (cp < 0x80) {
		out[(*n)++] = (uint8_t)cp;
	} else if (cp < 0x800) {
		out[(*n)++] = (uint8_t)(0xc0 | (cp >> 6));
		out[(*n)++] = (uint8_t)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*n)++] = (uint8_t)(0xe0 | (cp >> 12));
		out[(*n)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[(*n)++] = (uint8_t)(0x80 | (cp & 0x3f));
	} else {
		out[(*n)++] = (uint8_t)(0xf0 | (cp >> 18));
		out[(*n)++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		out[(*n)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[(*n)++] = (uint8_t)(0x80 | (cp & 0x3f));
	}
}

static int hex4(const char *s, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = s[i];

		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

/* Decode the JSON string at s[0..len) (quotes included) into out; -1 if it
 * is not exactly one valid JSON string in valid UTF-8. Also refuses raw
 * DEL and C1 characters and raw U+2028/9, which our escaper promises. */
static int json_decode(const char *s, size_t len, uint8_t *out, size_t *outn)
{
	size_t i = 1;

	*outn = 0;
	if (len < 2 || s[0] != '"' || s[len - 1] != '"')
		return -1;
	while (i < len - 1) {
		unsigned char c = (unsigned char)s[i];
		uint32_t cp;
		size_t n;

		if (c == '"' || c < 0x20 || c == 0x7f)
			return -1;
		if (c == '\\') {
			if (i + 1 >= len - 1)
				return -1;
			switch (s[i + 1]) {
			case '"':
				out[(*outn)++] = '"';
				break;
			case '\\':
				out[(*outn)++] = '\\';
				break;
			case '/':
				out[(*outn)++] = '/';
				break;
			case 'b':
				out[(*outn)++] = '\b';
				break;
			case 'f':
				out[(*outn)++] = '\f';
				break;
			case 'n':
				out[(*outn)++] = '\n';
				break;
			case 'r':
				out[(*outn)++] = '\r';
				break;
			case 't':
				out[(*outn)++] = '\t';
				break;
			case 'u':
				if (i + 6 > len - 1 || hex4(s + i + 2, &cp))
					return -1;
				/* We never emit surrogate escapes. */
				if (cp >= 0xd800 && cp <= 0xdfff)
					return -1;
				put_utf8(out, outn, cp);
				i += 6;
				continue;
			default:
				return -1;
			}
			i += 2;
			continue;
		}
		n = vigie__postutf8_next((const unsigned char *)s + i,
					 len - 1 - i, &cp);
		if (!n || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 ||
		    cp == 0x2029)
			return -1;
		memcpy(out + *outn, s + i, n);
		*outn += n;
		i += n;
	}
	return 0;
}

/* What the input should decode to: invalid bytes become U+FFFD. */
static void expected(const uint8_t *in, size_t len, uint8_t *out, size_t *n)
{
	size_t i = 0;

	*n = 0;
	while (i < len) {
		uint32_t cp;
		size_t k = vigie__postutf8_next(in + i, len - i, &cp);

		if (!k) {
			put_utf8(out, n, 0xfffd);
			i++;
			continue;
		}
		memcpy(out + *n, in + i, k);
		*n += k;
		i += k;
	}
}

static void check_round_trip(const uint8_t *in, size_t len)
{
	struct post_buf b;
	uint8_t *got = malloc(len * 3 + 16), *want = malloc(len * 3 + 16);
	size_t gotn, wantn;

	assert_non_null(got);
	assert_non_null(want);
	vigie__postbuf_init(&b, 1 << 20);
	assert_int_equal(vigie__postjson_str(&b, (const char *)in, len), 0);
	assert_int_equal(json_decode(b.data, b.len, got, &gotn), 0);
	expected(in, len, want, &wantn);
	assert_int_equal(gotn, wantn);
	assert_memory_equal(got, want, wantn);
	vigie__postbuf_free(&b);
	free(got);
	free(want);
}

static const char *esc(struct post_buf *b, const char *s, size_t len)
{
	vigie__postbuf_reset(b);
	assert_int_equal(vigie__postjson_str(b, s, len), 0);
	return b->data;
}

/* ---- tests ------------------------------------------------------------ */

static void test_escapes(void **state)
{
	struct post_buf b;

	(void)state;
	vigie__postbuf_init(&b, 4096);
	assert_string_equal(esc(&b, "plain", 5), "\"plain\"");
	assert_string_equal(esc(&b, "", 0), "\"\"");
	assert_string_equal(esc(&b, "a\"b\\c/d", 7), "\"a\\\"b\\\\c/d\"");
	assert_string_equal(esc(&b, "\n\r\t\b\f", 5), "\"\\n\\r\\t\\b\\f\"");
	assert_string_equal(esc(&b, "\x01\x1b[31m\x1f\x7f", 8),
			    "\"\\u0001\\u001b[31m\\u001f\\u007f\"");
	assert_string_equal(esc(&b, "\0x", 2), "\"\\u0000x\"");
	/* Valid UTF-8 passes as is. */
	assert_string_equal(esc(&b, "Musée ☃ 𝄞", strlen("Musée ☃ 𝄞")),
			    "\"Musée ☃ 𝄞\"");
	/* C1 controls (U+009B is a one-character CSI) are escaped. */
	assert_string_equal(esc(&b,
				"\xc2\x9b"
				"2J",
				4),
			    "\"\\u009b2J\"");
	/* Line separators break JavaScript string literals. */
	assert_string_equal(esc(&b, "\xe2\x80\xa8\xe2\x80\xa9", 6),
			    "\"\\u2028\\u2029\"");
	/* Invalid: lone continuation, overlong, surrogate, beyond U+10FFFF,
	 * truncated, 0xff. One U+FFFD per bad byte. */
	assert_string_equal(esc(&b, "\x80", 1), "\"\\ufffd\"");
	assert_string_equal(esc(&b, "\xc0\xaf", 2), "\"\\ufffd\\ufffd\"");
	assert_string_equal(esc(&b, "\xed\xa0\x80", 3),
			    "\"\\ufffd\\ufffd\\ufffd\"");
	assert_string_equal(esc(&b, "\xf4\x90\x80\x80", 4),
			    "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
	assert_string_equal(esc(&b, "\xe2\x82", 2), "\"\\ufffd\\ufffd\"");
	/* A truncated sequence does not swallow the character after it. */
	assert_string_equal(esc(&b, "\xe2\x82\"", 3), "\"\\ufffd\\ufffd\\\"\"");
	assert_string_equal(esc(&b, "a\xffz", 3), "\"a\\ufffdz\"");
	vigie__postbuf_free(&b);
}

static void test_every_byte(void **state)
{
	uint8_t all[256];

	(void)state;
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	check_round_trip(all, sizeof(all));
	for (int i = 0; i < 256; i++) {
		uint8_t one = (uint8_t)i;

		check_round_trip(&one, 1);
	}
}

static void test_random_bytes(void **state)
{
	/* Biased toward bytes that start or continue UTF-8 sequences, so that
	 * valid, broken and truncated sequences all occur often. */
	static const uint8_t pool[] = {'a',  '"',  '\\', 0,    0x1b, 0x7f,
				       0x80, 0x9b, 0xa0, 0xbf, 0xc2, 0xc3,
				       0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5,
				       0xff, 0x80, 0x82, 0x90};
	uint32_t seed = 12345;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		uint8_t in[24];
		size_t len;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(in);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (seed >> 8) & 1
					? pool[(seed >> 16) % sizeof(pool)]
					: (uint8_t)(seed >> 20);
		}
		check_round_trip(in, len);
	}
}

static void test_buffer_cap(void **state)
{
	struct post_buf b;
	char big[100];

	(void)state;
	memset(big, '\x01', sizeof(big));
	vigie__postbuf_init(&b, 64);
	assert_int_equal(vigie__postjson_str(&b, big, sizeof(big)),
			 VIGIE_ETOOBIG);
	/* Sticky until reset; what was built stays NUL-terminated. */
	assert_int_equal(vigie__postbuf_adds(&b, "x"), VIGIE_ETOOBIG);
	assert_true(b.len <= 64);
	assert_int_equal(strlen(b.data), b.len);
	vigie__postbuf_reset(&b);
	assert_int_equal(vigie__postbuf_adds(&b, "ok"), 0);
	assert_string_equal(b.data, "ok");
	vigie__postbuf_free(&b);
}

static struct post_entry *sample(struct post_queue *q, const char *zone_name,
				 double lat)
{
	Vigie__V1__Dispatch d = VIGIE__V1__DISPATCH__INIT;
	Vigie__V1__Zone z = VIGIE__V1__ZONE__INIT;
	Vigie__V1__Location loc = VIGIE__V1__LOCATION__INIT;
	Vigie__V1__Attribute a = VIGIE__V1__ATTRIBUTE__INIT;
	Vigie__V1__Attribute *ap[1] = {&a};
	char *cams[2] = {(char *)"cam-east", (char *)"cam-\"west\""};
	struct post_entry *e;
	enum post_upsert what;

	z.id = (char *)"apollo-gallery";
	z.name = (char *)zone_name;
	z.floor = (char *)"1";
	z.cameras = cams;
	z.n_cameras = 2;
	loc.lat = lat;
	loc.lon = 2.337;
	z.location = &loc;
	a.key = (char *)"tool";
	a.value = (char *)"angle-grinder";
	d.id = (char *)"louvre-17-l2";
	d.incident = (char *)"louvre-17";
	d.site = (char *)"louvre";
	d.zone = &z;
	d.kind = VIGIE__V1__EVENT_KIND__KIND_GLASS_BREAK;
	d.priority = VIGIE__V1__PRIORITY__PRIORITY_CRITICAL;
	d.confirmed = 1;
	d.level = 2;
	d.attempt = 3;
	d.first_event_us = 1000000000;
	d.attributes = ap;
	d.n_attributes = 1;
	vigie__postq_init(q, 4);
	assert_int_equal(vigie__postq_upsert(q, &d, 1042500000, 1, &what, &e),
			 0);
	return e;
}

static void test_dispatch_line(void **state)
{
	struct post_queue q;
	struct post_buf b;
	struct post_entry *e = sample(&q, "Galerie d'Apollon", 48.86);
	const char *prefix = "{\"type\":\"dispatch\",\"id\":\"louvre-17-l2\","
			     "\"incident\":\"louvre-17\","
			     "\"site\":\"louvre\",\"zone\":\"apollo-gallery\","
			     "\"kind\":\"glass_break\","
			     "\"priority\":\"critical\",\"confirmed\":true,"
			     "\"level\":2,\"attempt\":3,"
			     "\"first_event_us\":1000000000,\"age_s\":42,"
			     "\"pattern\":null,\"new\":true,";

	(void)state;
	vigie__postbuf_init(&b, 1 << 16);
	assert_int_equal(vigie__postjson_dispatch(&b, e, 1042500000, true), 0);
	assert_memory_equal(b.data, prefix, strlen(prefix));
	assert_non_null(strstr(
		b.data, "\"location\":{\"lat\":48.8600000,\"lon\":2.3370000}"));
	assert_non_null(strstr(
		b.data, "\"cameras\":[\"cam-east\",\"cam-\\\"west\\\"\"]"));
	assert_non_null(strstr(b.data, "\"attributes\":[{\"key\":\"tool\","
				       "\"value\":\"angle-grinder\"}]"));
	assert_non_null(strstr(b.data, "\"acked\":false,\"acked_by\":null"));
	assert_non_null(strstr(b.data, "\"new\":true,\"backup_for\":null,"));
	/* Exactly one line. */
	assert_ptr_equal(strchr(b.data, '\n'), b.data + b.len - 1);

	/* Acked, pattern set: the fields follow. */
	vigie__postq_set_ack(&q, e, POST_ACK_SENT, "Jeanne \"J\" Dupont", 7, 1);
	free(e->d.pattern);
	e->d.pattern = strdup("facade-lifts");
	free(e->d.backup_for);
	e->d.backup_for = strdup("pp-lyon");
	vigie__postbuf_reset(&b);
	vigie__postjson_dispatch(&b, e, 1042500000, false);
	assert_non_null(strstr(b.data,
			       "\"pattern\":\"facade-lifts\",\"new\":false,"
			       "\"backup_for\":\"pp-lyon\","));
	assert_non_null(strstr(b.data,
			       "\"ack\":\"sent\",\"acked\":true,"
			       "\"acked_by\":\"Jeanne \\\"J\\\" Dupont\""));
	vigie__postbuf_free(&b);
	vigie__postq_free(&q);
}

static void test_dispatch_hostile(void **state)
{
	struct post_queue q;
	struct post_buf b;
	struct post_entry *e = sample(&q, "\x1b]0;pwned\x07\xff\n", NAN);

	(void)state;
	vigie__postbuf_init(&b, 1 << 16);
	assert_int_equal(vigie__postjson_dispatch(&b, e, 0, true), 0);
	/* NaN is not JSON. */
	assert_non_null(strstr(b.data, "\"location\":null"));
	assert_non_null(strstr(
		b.data, "\"zone_name\":\"\\u001b]0;pwned\\u0007\\ufffd\\n\""));
	/* A first event in the future gives age 0, not a wrapped number. */
	assert_non_null(strstr(b.data, "\"age_s\":0,"));
	for (size_t i = 0; i + 1 < b.len; i++)
		assert_true((unsigned char)b.data[i] >= 0x20);
	vigie__postbuf_free(&b);
	vigie__postq_free(&q);
}

static void test_other_lines(void **state)
{
	struct post_buf b;

	(void)state;
	vigie__postbuf_init(&b, 4096);
	vigie__postjson_ack(&b, "louvre-17-l2", "louvre-17", "Dupont", 123);
	assert_string_equal(b.data,
			    "{\"type\":\"ack\",\"dispatch\":\"louvre-17-l2\","
			    "\"incident\":\"louvre-17\",\"by\":\"Dupont\","
			    "\"time_us\":123}\n");
	vigie__postbuf_reset(&b);
	vigie__postjson_error(&b, "ack", "no dispatch \"x\"");
	assert_string_equal(b.data, "{\"type\":\"error\",\"command\":\"ack\","
				    "\"error\":\"no dispatch \\\"x\\\"\"}\n");
	vigie__postbuf_reset(&b);
	vigie__postjson_status(&b, "pp-paris", true, false);
	assert_string_equal(b.data,
			    "{\"type\":\"status\",\"post\":\"pp-paris\","
			    "\"connected\":true,\"session_present\":false}\n");
	vigie__postbuf_reset(&b);
	vigie__postjson_cstr(&b, NULL);
	assert_string_equal(b.data, "null");
	vigie__postbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_random_bytes),
		cmocka_unit_test(test_buffer_cap),
		cmocka_unit_test(test_dispatch_line),
		cmocka_unit_test(test_dispatch_hostile),
		cmocka_unit_test(test_other_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
