/* The SIA DC-09 codec of the node's panel receiver: framing, CRC, length,
 * header, AES-CBC with DC-09 padding, answers, SIA DCS and Contact ID
 * mapping, and the `panels:` configuration. Vectors marked "standard" are
 * the DC-09 appendix examples (see node/sia_codec.c for the sources). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "node.h"
#include "sia.h"
#include "vigie/error.h"

#define K(x) VIGIE__V1__EVENT_KIND__KIND_##x
#define S(x) VIGIE__V1__EVENT_STATE__STATE_##x

static const uint8_t key16[16] = "AAAAAAAAAAAAAAAA";
static const uint8_t key24[24] = {
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
	0xcc, 0xdd, 0xee, 0xff, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
static const uint8_t key32[32] = {
	0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae,
	0xf0, 0x85, 0x7d, 0x77, 0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61,
	0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4};

/* 2024-07-30 10:10:18 UTC */
#define T_NAK 1722334218
/* 2020-07-05 18:24:52 UTC */
#define T_NULL 1593973492

/* Check and parse a whole frame: 0 or the first failing code. */
static int parse_frame(const char *frame, size_t len, struct sia_frame *f)
{
	const char *body;
	size_t blen;
	char err[160];
	int rc;

	rc = vigie__sia_frame_check(frame, len, &body, &blen, err, sizeof(err));
	if (rc)
		return rc;
	return vigie__sia_frame_parse(body, blen, f, err, sizeof(err));
}

static void test_crc(void **state)
{
	(void)state;
	assert_int_equal(vigie__sia_crc("123456789", 9), 0xBB3D);
	assert_int_equal(vigie__sia_crc("", 0), 0);
}

static void test_standard_examples(void **state)
{
	/* standard: appendix examples with their CRC and length fields */
	static const char cid[] = "\n87CD0037\"ADM-CID\"9876R579BDFL789ABC#"
				  "12345A[#12345A|1110 00 129]\r";
	static const char dcs[] = "\n"
				  "CE110032\"SIA-DCS\"9876R579BDFL789ABC#"
				  "12345A[#12345A|NFA129]\r";
	struct sia_frame f;
	struct sia_content c;
	struct sia_payload p;
	char err[160];

	(void)state;
	assert_int_equal(parse_frame(cid, strlen(cid), &f), 0);
	assert_int_equal(f.token, SIA_TOKEN_CID);
	assert_false(f.encrypted);
	assert_int_equal(f.seq, 9876);
	assert_true(f.has_rcvr);
	assert_string_equal(f.rcvr, "579BDF");
	assert_string_equal(f.line, "789ABC");
	assert_string_equal(f.account, "12345A");
	assert_int_equal(vigie__sia_content_parse(f.rest, f.rest_len, false, &c,
						  err, sizeof(err)),
			 0);
	assert_false(c.has_time);
	assert_int_equal(
		vigie__sia_cid_parse(c.data, c.data_len, &p, err, sizeof(err)),
		0);
	assert_string_equal(p.account, "12345A");
	assert_int_equal(p.n, 1);
	assert_int_equal(p.ev[0].kind, K(FIRE));
	assert_int_equal(p.ev[0].state, S(ALARM));
	assert_string_equal(p.ev[0].code, "E110");
	assert_int_equal(p.ev[0].zone, 129);
	assert_int_equal(p.ev[0].area, 0);

	assert_int_equal(parse_frame(dcs, strlen(dcs), &f), 0);
	assert_int_equal(f.token, SIA_TOKEN_DCS);
	assert_int_equal(vigie__sia_content_parse(f.rest, f.rest_len, false, &c,
						  err, sizeof(err)),
			 0);
	assert_int_equal(
		vigie__sia_dcs_parse(c.data, c.data_len, &p, err, sizeof(err)),
		0);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.ev[0].code, "FA");
	assert_true(p.ev[0].has_zone);
	assert_int_equal(p.ev[0].zone, 129);
}

static void test_lower_case_hex(void **state)
{
	/* The standard's DCS example with lower-case hex in the receiver,
	 * line and account fields (a different body, so its own CRC), and
	 * lower-case CRC and length fields. */
	static const char body[] =
		"\"SIA-DCS\"9876R579bdfL789abc#12345a[#12345A|NFA129]";
	char frame[128];
	struct sia_frame f;

	(void)state;
	snprintf(frame, sizeof(frame), "\n%04x%04x%s\r",
		 vigie__sia_crc(body, strlen(body)), (unsigned)strlen(body),
		 body);
	assert_non_null(strpbrk(frame + 1, "abcdef"));
	assert_int_equal(parse_frame(frame, strlen(frame), &f), 0);
	assert_string_equal(f.account, "12345A"); /* upper-cased for lookup */
	assert_string_equal(f.rcvr, "579bdf");    /* echoed as sent */
	assert_string_equal(f.line, "789abc");
	/* A lower-case 'r' is no R field, even with a right CRC. */
	{
		char low[sizeof(body)];

		memcpy(low, body, sizeof(body));
		low[13] = 'r';
		snprintf(frame, sizeof(frame), "\n%04X%04X%s\r",
			 vigie__sia_crc(low, strlen(low)),
			 (unsigned)strlen(low), low);
		assert_int_equal(parse_frame(frame, strlen(frame), &f),
				 VIGIE_EINVAL);
	}
}

static void test_nak_matches_a_captured_one(void **state)
{
	/* A Visonic PowerLink's NAK, captured: "\nE5630025"NAK"0000R0L0A0[]
	 * _10:10:18,07-30-2024\r". Ours for the same second is identical. */
	static const char want[] =
		"\nE5630025\"NAK\"0000R0L0A0[]_10:10:18,07-30-2024\r";
	char out[SIA_REPLY_MAX];
	struct sia_frame f;
	size_t len;

	(void)state;
	assert_int_equal(vigie__sia_nak(T_NAK, out, sizeof(out), &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
	assert_int_equal(parse_frame(out, len, &f), 0);
	assert_int_equal(f.token, SIA_TOKEN_NAK);
	assert_string_equal(f.line, "0A0");
	assert_string_equal(f.account, "");
}

static void test_build_parse_round_trip(void **state)
{
	struct sia_build b = {
		.token = "SIA-DCS",
		.seq = 42,
		.rcvr = "12",
		.line = "3",
		.account = "1234",
		.data = "#1234|Nri1/BA03^window^/BA04",
		.xdata = "[X2E19E01][Y48N51E06]",
		.timestamp = true,
		.time_s = T_NAK,
	};
	struct sia_frame f;
	struct sia_content c;
	char out[SIA_FRAME_MAX], err[160];
	size_t len, skip, flen;

	(void)state;
	assert_int_equal(vigie__sia_build(&b, out, sizeof(out), &len), 0);
	assert_int_equal(out[0], '\n');
	assert_int_equal(out[len - 1], '\r');
	assert_int_equal(
		vigie__sia_scan(out, len, &skip, &flen, err, sizeof(err)), 1);
	assert_int_equal(skip, 0);
	assert_int_equal(flen, len);
	assert_int_equal(parse_frame(out, len, &f), 0);
	assert_int_equal(f.seq, 42);
	assert_string_equal(f.rcvr, "12");
	assert_string_equal(f.line, "3");
	assert_string_equal(f.account, "1234");
	assert_int_equal(vigie__sia_content_parse(f.rest, f.rest_len, false, &c,
						  err, sizeof(err)),
			 0);
	assert_int_equal(c.data_len, strlen(b.data));
	assert_memory_equal(c.data, b.data, c.data_len);
	assert_int_equal(c.xdata_len, strlen(b.xdata));
	assert_true(c.has_time);
	assert_int_equal(c.time_s, T_NAK);

	/* A stream of two frames with filler between them. */
	{
		char stream[2 * SIA_FRAME_MAX + 8];
		size_t n = 0;

		memcpy(stream, out, len);
		n += len;
		stream[n++] = '\0';
		stream[n++] = '\r';
		memcpy(stream + n, out, len);
		n += len;
		assert_int_equal(vigie__sia_scan(stream + len, n - len, &skip,
						 &flen, err, sizeof(err)),
				 1);
		assert_int_equal(skip, 2);
		assert_int_equal(flen, len);
		/* Half a frame: more bytes needed. */
		assert_int_equal(vigie__sia_scan(stream, len / 2, &skip, &flen,
						 err, sizeof(err)),
				 0);
	}
}

static void check_encrypted_round_trip(const uint8_t *key, size_t key_len,
				       const char *data)
{
	struct sia_build b = {
		.token = "SIA-DCS",
		.seq = 7,
		.line = "0",
		.account = "ABC123",
		.data = data,
		.time_s = T_NAK,
		.key = key,
		.key_len = key_len,
	};
	char out[SIA_FRAME_MAX], plain[SIA_BODY_MAX], err[160];
	struct sia_frame f;
	struct sia_content c;
	size_t len, plen, pad;

	assert_int_equal(vigie__sia_build(&b, out, sizeof(out), &len), 0);
	assert_int_equal(parse_frame(out, len, &f), 0);
	assert_true(f.encrypted);
	assert_int_equal(f.token, SIA_TOKEN_DCS);
	assert_int_equal(f.rest_len % 32, 0);
	assert_int_equal(vigie__sia_decrypt(key, key_len, f.rest, f.rest_len,
					    plain, sizeof(plain), &plen),
			 0);
	assert_int_equal(plen % 16, 0);
	/* The pad: 1..16 bytes, never '|', '[' or ']', then the '|'. */
	pad = plen - (1 + strlen(data) + 1 + SIA_TS_LEN);
	assert_true(pad >= 1 && pad <= 16);
	for (size_t i = 0; i < pad; i++)
		assert_null(memchr("|[]", plain[i], 3));
	assert_int_equal(plain[pad], '|');
	assert_int_equal(plain[pad + 1 + strlen(data)], ']');
	assert_int_equal(vigie__sia_content_parse(plain, plen, true, &c, err,
						  sizeof(err)),
			 0);
	assert_int_equal(c.data_len, strlen(data));
	assert_memory_equal(c.data, data, c.data_len);
	assert_true(c.has_time);
	assert_int_equal(c.time_s, T_NAK);
	/* Another key reads nothing sensible. */
	if (vigie__sia_decrypt(key32, 32, f.rest, f.rest_len, plain,
			       sizeof(plain), &plen) == 0 &&
	    key != key32)
		assert_int_not_equal(vigie__sia_content_parse(plain, plen, true,
							      &c, err,
							      sizeof(err)),
				     0);
}

static void test_encryption_round_trip(void **state)
{
	/* "|" + data + "]" + timestamp (20) is 16*k exactly when data is 10
	 * bytes: then the standard wants 16 pad bytes, not 0. */
	(void)state;
	check_encrypted_round_trip(key16, 16, "Nri1/BA01");
	check_encrypted_round_trip(key24, 24, "#ABC123|Nri2/TA003");
	check_encrypted_round_trip(key32, 32, "Nri1/BA012");
	check_encrypted_round_trip(key16, 16, "Nri1/BA012");
	check_encrypted_round_trip(key32, 32, "");
}

static void test_decrypts_a_panel_null(void **state)
{
	/* An encrypted NULL as a panel sent it (kept in pysiaalarm's tests,
	 * key "AAAAAAAAAAAAAAAA"): its pad ends at ']' without a '|'. */
	static const char hex[] = "B4BC8B40D0E6D959D6BEA78E88CC0B21"
				  "55741A3C44FBB96D476A3E557CAD64D9";
	char plain[64], err[160];
	struct sia_content c;
	size_t plen;

	(void)state;
	assert_int_equal(vigie__sia_decrypt(key16, 16, hex, strlen(hex), plain,
					    sizeof(plain), &plen),
			 0);
	assert_int_equal(plen, 32);
	assert_int_equal(vigie__sia_content_parse(plain, plen, true, &c, err,
						  sizeof(err)),
			 0);
	assert_int_equal(c.data_len, 0);
	assert_true(c.has_time);
	assert_int_equal(c.time_s, T_NULL);
}

static void test_answers(void **state)
{
	static const char req_text[] = "\"*SIA-DCS\"0123R1L2#ABC123[00]";
	struct sia_frame req, f;
	struct sia_content c;
	char out[SIA_REPLY_MAX], plain[SIA_BODY_MAX], err[160];
	size_t len, plen;

	(void)state;
	assert_int_equal(vigie__sia_frame_parse(req_text, strlen(req_text),
						&req, err, sizeof(err)),
			 0);
	/* ACK to an encrypted request: "*ACK", encrypted "pad|]_time". */
	assert_int_equal(
		vigie__sia_ack(&req, key16, 16, T_NAK, out, sizeof(out), &len),
		0);
	assert_int_equal(parse_frame(out, len, &f), 0);
	assert_true(f.encrypted);
	assert_int_equal(f.token, SIA_TOKEN_ACK);
	assert_int_equal(f.seq, 123);
	assert_string_equal(f.rcvr, "1");
	assert_string_equal(f.line, "2");
	assert_string_equal(f.account, "ABC123");
	assert_int_equal(vigie__sia_decrypt(key16, 16, f.rest, f.rest_len,
					    plain, sizeof(plain), &plen),
			 0);
	assert_int_equal(vigie__sia_content_parse(plain, plen, true, &c, err,
						  sizeof(err)),
			 0);
	assert_int_equal(c.data_len, 0);
	assert_int_equal(c.time_s, T_NAK);
	/* The same request in clear: a plain "ACK" with no timestamp. */
	req.encrypted = false;
	assert_int_equal(
		vigie__sia_ack(&req, key16, 16, T_NAK, out, sizeof(out), &len),
		0);
	assert_int_equal(len, 10 + strlen("\"ACK\"0123R1L2#ABC123[]"));
	assert_memory_equal(out + 9, "\"ACK\"0123R1L2#ABC123[]", len - 10);
	assert_int_equal(vigie__sia_duh(&req, out, sizeof(out), &len), 0);
	assert_memory_equal(out + 9, "\"DUH\"0123R1L2#ABC123[]", len - 10);
}

static void test_framing_rejections(void **state)
{
	char err[160], big[SIA_FRAME_MAX + 100];
	size_t skip, flen;
	struct sia_frame f;
	char frame[128];
	const char *body;
	size_t blen;
	static const char good_body[] = "\"NULL\"0000L0#1234[]";

	(void)state;
	/* Garbage: something else than LF where a frame starts. */
	assert_int_equal(vigie__sia_scan("GET / HTTP/1.0\r\n", 16, &skip, &flen,
					 err, sizeof(err)),
			 VIGIE_EDECODE);
	/* A control byte inside a frame. */
	assert_int_equal(vigie__sia_scan("\n0000\x01", 6, &skip, &flen, err,
					 sizeof(err)),
			 VIGIE_EDECODE);
	/* Header not hex. */
	assert_int_equal(vigie__sia_scan("\nZZZZ0010\"NULL", 14, &skip, &flen,
					 err, sizeof(err)),
			 VIGIE_EDECODE);
	/* A frame announcing more than we take: refused before it is in. */
	assert_int_equal(vigie__sia_scan("\n00000FFF\"", 10, &skip, &flen, err,
					 sizeof(err)),
			 VIGIE_ETOOBIG);
	/* No CR within the cap. */
	memset(big, 'x', sizeof(big));
	memcpy(big, "\n00000010", 9);
	assert_int_equal(vigie__sia_scan(big, sizeof(big), &skip, &flen, err,
					 sizeof(err)),
			 VIGIE_ETOOBIG);
	/* Only filler: nothing yet. */
	assert_int_equal(
		vigie__sia_scan("\0\r\0", 3, &skip, &flen, err, sizeof(err)),
		0);
	assert_int_equal(skip, 3);

	/* Bad CRC and bad length: EINVAL (dropped, unanswered). */
	snprintf(frame, sizeof(frame), "\n%04X%04X%s\r",
		 vigie__sia_crc(good_body, strlen(good_body)) ^ 1u,
		 (unsigned)strlen(good_body), good_body);
	assert_int_equal(vigie__sia_frame_check(frame, strlen(frame), &body,
						&blen, err, sizeof(err)),
			 VIGIE_EINVAL);
	assert_non_null(strstr(err, "CRC"));
	snprintf(frame, sizeof(frame), "\n%04X%04X%s\r",
		 vigie__sia_crc(good_body, strlen(good_body)),
		 (unsigned)strlen(good_body) + 1, good_body);
	assert_int_equal(vigie__sia_frame_check(frame, strlen(frame), &body,
						&blen, err, sizeof(err)),
			 VIGIE_EINVAL);
	assert_non_null(strstr(err, "length"));
	snprintf(frame, sizeof(frame), "\n%04X%04X%s\r",
		 vigie__sia_crc(good_body, strlen(good_body)),
		 (unsigned)strlen(good_body), good_body);
	assert_int_equal(parse_frame(frame, strlen(frame), &f), 0);
	assert_int_equal(f.token, SIA_TOKEN_NULL);
}

static void test_header_rejections(void **state)
{
	static const char *const bad[] = {
		"NULL\"0000L0#1234[]",     /* no opening quote */
		"\"NULL0000L0#1234[]",     /* unterminated token */
		"\"\"0000L0#1234[]",       /* empty token */
		"\"nul\"0000L0#1234[]",    /* lower-case token */
		"\"NULL\"00a0L0#1234[]",   /* seq not digits */
		"\"NULL\"000L0#1234[]",    /* short seq: 'L' is not a digit */
		"\"NULL\"0000#1234[]",     /* no L */
		"\"NULL\"0000L#1234[]",    /* empty L */
		"\"NULL\"0000R L0#1234[]", /* empty R */
		"\"NULL\"0000L0#12[]",     /* account too short */
		"\"NULL\"0000L0#1234",     /* no '[' */
		"\"NULL\"0000L0#1234X[]",  /* junk before '[' */
		"\"NULL\"0000L0#12345678901234567[]", /* account too long */
	};
	struct sia_frame f;
	char err[160];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = vigie__sia_frame_parse(bad[i], strlen(bad[i]), &f, err,
						sizeof(err));

		if (rc != VIGIE_EINVAL)
			fail_msg("accepted: %s", bad[i]);
	}
	/* Unknown token: well-formed, SIA_TOKEN_OTHER (answered DUH). */
	assert_int_equal(vigie__sia_frame_parse("\"SIA-XYZ\"0000L0#1234[]", 22,
						&f, err, sizeof(err)),
			 0);
	assert_int_equal(f.token, SIA_TOKEN_OTHER);
	assert_string_equal(f.id, "SIA-XYZ");
}

static void test_content_rejections(void **state)
{
	static const char *const bad[] = {
		"Nri1/BA01",                      /* no ']' */
		"Nri1[/BA01]",                    /* '[' in data */
		"Nri1/BA01]junk",                 /* junk after */
		"Nri1/BA01]_12:00:00,13-01-2024", /* month 13 */
		"Nri1/BA01]_12:00:00,02-30-2024", /* 30 February */
		"Nri1/BA01]_25:00:00,01-01-2024", /* hour 25 */
		"Nri1/BA01]_12:00:00,01-01-24",   /* short year */
		"Nri1/BA01][X12",                 /* open x-data */
		"Nri1/BA01][]",                   /* empty x-data */
	};
	struct sia_content c;
	char err[160];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vigie__sia_content_parse(bad[i], strlen(bad[i]), false, &c,
					     err, sizeof(err)) != VIGIE_EINVAL)
			fail_msg("accepted: %s", bad[i]);
	/* Decrypted text with no pad terminator. */
	assert_int_equal(vigie__sia_content_parse("xxxx[yy", 7, true, &c, err,
						  sizeof(err)),
			 VIGIE_EINVAL);
	assert_int_equal(
		vigie__sia_content_parse("Nri1/BA01]_12:00:00,02-29-2024", 30,
					 false, &c, err, sizeof(err)),
		0);
}

static void test_decrypt_rejections(void **state)
{
	char out[64];
	size_t n;

	(void)state;
	/* not a whole block, odd, not hex, empty, bad key size */
	assert_int_equal(
		vigie__sia_decrypt(key16, 16, "00", 2, out, sizeof(out), &n),
		VIGIE_EINVAL);
	assert_int_equal(vigie__sia_decrypt(key16, 16,
					    "0123456789ABCDEF0123456789ABCDE",
					    31, out, sizeof(out), &n),
			 VIGIE_EINVAL);
	assert_int_equal(vigie__sia_decrypt(key16, 16,
					    "0123456789ABCDEF0123456789ABCDEG",
					    32, out, sizeof(out), &n),
			 VIGIE_EINVAL);
	assert_int_equal(
		vigie__sia_decrypt(key16, 16, "", 0, out, sizeof(out), &n),
		VIGIE_EINVAL);
	assert_int_equal(vigie__sia_decrypt(key16, 15,
					    "0123456789abcdef0123456789abcdef",
					    32, out, sizeof(out), &n),
			 VIGIE_EINVAL);
	assert_int_equal(vigie__sia_decrypt(key16, 16,
					    "0123456789abcdef0123456789abcdef",
					    32, out, sizeof(out), &n),
			 0);
}

struct dcs_case {
	const char *code;
	int kind, state;
};

static void test_dcs_table(void **state)
{
	static const struct dcs_case cases[] = {
		{"BA", K(INTRUSION), S(ALARM)},
		{"BH", K(INTRUSION), S(RESTORE)},
		{"BR", K(INTRUSION), S(RESTORE)},
		{"BT", K(INTRUSION), S(TROUBLE)},
		{"TA", K(NODE_TAMPER), S(ALARM)},
		{"TR", K(NODE_TAMPER), S(RESTORE)},
		{"AT", K(POWER_LOSS), S(TROUBLE)},
		{"AR", K(POWER_LOSS), S(RESTORE)},
		{"YC", K(COMM_LOSS), S(TROUBLE)},
		{"YK", K(COMM_LOSS), S(RESTORE)},
		{"PA", K(DURESS), S(ALARM)},
		{"HA", K(DURESS), S(ALARM)},
		{"BB", K(BYPASS), S(TROUBLE)},
		{"BU", K(BYPASS), S(RESTORE)},
		{"RP", K(TEST), S(TEST)},
		{"OP", K(OPEN_CLOSE), S(ALARM)},
		{"CL", K(OPEN_CLOSE), S(RESTORE)},
		{"FA", K(FIRE), S(ALARM)},
		{"YT", K(BATTERY), S(TROUBLE)},
		{"DF", K(DOOR_CONTACT), S(ALARM)},
	};
	const char *name;
	int kind, st;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
			vigie__sia_dcs_map(cases[i].code, &kind, &st, &name),
			0);
		if (kind != cases[i].kind || st != cases[i].state)
			fail_msg("%s: kind %d state %d", cases[i].code, kind,
				 st);
		assert_non_null(name);
	}
	assert_int_equal(vigie__sia_dcs_map("ZX", &kind, &st, &name),
			 VIGIE_ENOTFOUND);
	assert_int_equal(vigie__sia_dcs_map("B", &kind, &st, &name),
			 VIGIE_ENOTFOUND);
}

static void test_dcs_parse(void **state)
{
	struct sia_payload p;
	char err[160];

	(void)state;
#define DCS(s) vigie__sia_dcs_parse(s, strlen(s), &p, err, sizeof(err))
	assert_int_equal(DCS("#1234|Nri2/BA03/BA04^west window^/TA5"), 0);
	assert_string_equal(p.account, "1234");
	assert_int_equal(p.n, 3);
	assert_string_equal(p.ev[0].code, "BA");
	assert_true(p.ev[0].has_area);
	assert_int_equal(p.ev[0].area, 2);
	assert_int_equal(p.ev[0].zone, 3);
	assert_int_equal(p.ev[1].zone, 4);
	assert_string_equal(p.ev[1].text, "west window");
	assert_string_equal(p.ev[2].code, "TA");
	assert_int_equal(p.ev[2].kind, K(NODE_TAMPER));
	/* Forms seen from panels. */
	assert_int_equal(DCS("|Nri1/CL501"), 0);
	assert_int_equal(p.ev[0].kind, K(OPEN_CLOSE));
	assert_true(p.ev[0].has_user);
	assert_int_equal(p.ev[0].user, 501);
	assert_int_equal(DCS("#123456|Nri1CL0^VX FRONTE ^"), 0);
	assert_string_equal(p.ev[0].text, "VX FRONTE ");
	assert_int_equal(DCS("Nid12/ti10:15/BA1"), 0);
	assert_false(p.ev[0].has_area);
	assert_int_equal(DCS("NRP"), 0);
	assert_int_equal(p.ev[0].kind, K(TEST));
	assert_int_equal(DCS("BA01"), 0); /* no 'N' */
	/* Unknown code: DUH material. */
	assert_int_equal(DCS("Nri1/ZX01"), VIGIE_ENOTFOUND);
	assert_non_null(strstr(err, "ZX"));
	assert_int_equal(DCS("Nri1/BA01/QQ02"), VIGIE_ENOTFOUND);
	/* Malformed. */
	assert_int_equal(DCS(""), VIGIE_EINVAL);
	assert_int_equal(DCS("N"), VIGIE_EINVAL);
	assert_int_equal(DCS("Nri1"), VIGIE_EINVAL);
	assert_int_equal(DCS("N12/BA01"), VIGIE_EINVAL);
	assert_int_equal(DCS("Nri1/BA01^open"), VIGIE_EINVAL);
	assert_int_equal(DCS("Nri1/BA01x"), VIGIE_EINVAL);
	assert_int_equal(DCS("#12|NBA01"), VIGIE_EINVAL);
	assert_int_equal(DCS("#1234NBA01"), VIGIE_EINVAL);
	assert_int_equal(DCS("NBA1/BA2/BA3/BA4/BA5/BA6/BA7/BA8/BA9"),
			 VIGIE_EINVAL);
#undef DCS
}

struct cid_case {
	const char *data;
	int kind, state;
	const char *code;
};

static void test_cid(void **state)
{
	static const struct cid_case cases[] = {
		{"1130 01 015", K(INTRUSION), S(ALARM), "E130"},
		{"3130 01 015", K(INTRUSION), S(RESTORE), "R130"},
		{"6130 01 015", K(INTRUSION), S(ALARM), "P130"},
		{"1131 01 002", K(PERIMETER), S(ALARM), "E131"},
		{"1137 01 003", K(NODE_TAMPER), S(ALARM), "E137"},
		{"3137 01 003", K(NODE_TAMPER), S(RESTORE), "R137"},
		{"1301 00 000", K(POWER_LOSS), S(TROUBLE), "E301"},
		{"3301 00 000", K(POWER_LOSS), S(RESTORE), "R301"},
		{"1350 00 000", K(COMM_LOSS), S(TROUBLE), "E350"},
		{"1570 01 007", K(BYPASS), S(TROUBLE), "E570"},
		{"3570 01 007", K(BYPASS), S(RESTORE), "R570"},
		{"1602 00 000", K(TEST), S(TEST), "E602"},
		{"3602 00 000", K(TEST), S(TEST), "R602"},
		{"1401 02 012", K(OPEN_CLOSE), S(ALARM), "E401"},
		{"3401 02 012", K(OPEN_CLOSE), S(RESTORE), "R401"},
		{"1121 01 001", K(DURESS), S(ALARM), "E121"},
		{"#12345A|1110 00 129", K(FIRE), S(ALARM), "E110"},
		{"|1130 01 015", K(INTRUSION), S(ALARM), "E130"},
		{"113001015", K(INTRUSION), S(ALARM), "E130"},
	};
	static const char *const bad[] = {
		"",
		"1130",
		"1130 01",
		"1130 01 01",
		"1130 1 015",
		"2130 01 015",
		"1130 01 015 ",
		"X130 01 015",
		"1130 01 015^x^",
		"#1|1130 01 015",
	};
	struct sia_payload p;
	char err[160];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct cid_case *c = &cases[i];

		if (vigie__sia_cid_parse(c->data, strlen(c->data), &p, err,
					 sizeof(err)))
			fail_msg("%s: %s", c->data, err);
		if (p.ev[0].kind != c->kind || p.ev[0].state != c->state ||
		    strcmp(p.ev[0].code, c->code) != 0)
			fail_msg("%s: kind %d state %d code %s", c->data,
				 p.ev[0].kind, p.ev[0].state, p.ev[0].code);
	}
	assert_int_equal(
		vigie__sia_cid_parse("1401 02 012", 11, &p, err, sizeof(err)),
		0);
	assert_true(p.ev[0].has_user);
	assert_false(p.ev[0].has_zone);
	assert_int_equal(p.ev[0].user, 12);
	assert_int_equal(p.ev[0].area, 2);
	assert_int_equal(
		vigie__sia_cid_parse("6130 01 015", 11, &p, err, sizeof(err)),
		0);
	assert_true(p.ev[0].still_present);
	assert_int_equal(
		vigie__sia_cid_parse("1999 01 015", 11, &p, err, sizeof(err)),
		VIGIE_ENOTFOUND);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vigie__sia_cid_parse(bad[i], strlen(bad[i]), &p, err,
					 sizeof(err)) != VIGIE_EINVAL)
			fail_msg("accepted: \"%s\"", bad[i]);
}

/* ---- the panels: section ---- */

static const char base_yaml[] =
	"site: louvre\n"
	"node: n1\n"
	"outbox: /tmp/unused.db\n"
	"brokers: {primary: {host: 127.0.0.1, port: 1883}}\n"
	"zones:\n"
	"  - {id: gallery}\n"
	"  - {id: balcony}\n"
	"sensors:\n"
	"  - {id: gb-1, kind: glass_break, zones: [gallery, balcony]}\n"
	"  - {id: pir-1, kind: motion, zones: [gallery]}\n";

static int load(const char *panels, struct node_config *cfg, char *err,
		size_t errlen)
{
	char path[] = "/tmp/test_sia_XXXXXX";
	int fd = mkstemp(path);
	FILE *f;
	int rc;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(base_yaml, f);
	fputs(panels, f);
	fclose(f);
	rc = vigie__nodeconf_load(path, cfg, err, errlen);
	unlink(path);
	return rc;
}

static void test_config(void **state)
{
	struct node_config cfg;
	const struct sia_account_conf *a;
	char err[512];

	(void)state;
	assert_int_equal(
		load("panels:\n"
		     "  listen:\n"
		     "    - {protocol: tcp, host: 127.0.0.1, port: 9500}\n"
		     "    - {protocol: udp, host: 127.0.0.1, port: 9501}\n"
		     "  time_window: {past: 30s, future: 10s}\n"
		     "  accounts:\n"
		     "    - id: 12ab\n"
		     "      name: apollo-panel\n"
		     "      key: 000102030405060708090a0b0c0d0e0f\n"
		     "      supervision: 90s\n"
		     "      zone: gallery\n"
		     "      map:\n"
		     "        - {panel_zone: 3, zone: balcony, sensor: gb-1}\n"
		     "        - {area: 2, sensor: pir-1}\n"
		     "    - {id: 5678}\n",
		     &cfg, err, sizeof(err)),
		0);
	assert_non_null(cfg.panels);
	assert_int_equal(cfg.panels->n_listen, 2);
	assert_true(cfg.panels->listen[1].udp);
	assert_int_equal(cfg.panels->listen[0].port, 9500);
	assert_int_equal(cfg.panels->past_ms, 30000);
	assert_int_equal(cfg.panels->future_ms, 10000);
	a = vigie__sia_conf_account(cfg.panels, "12AB");
	assert_non_null(a);
	assert_string_equal(a->name, "apollo-panel");
	assert_int_equal(a->key_len, 16);
	assert_int_equal(a->key[15], 0x0f);
	assert_int_equal(a->supervision_ms, 90000);
	assert_string_equal(a->dflt.vzone, "gallery");
	assert_int_equal(a->n_map, 2);
	assert_int_equal(a->map[0].sensor_kind, K(GLASS_BREAK));
	a = vigie__sia_conf_account(cfg.panels, "5678");
	assert_non_null(a);
	assert_string_equal(a->name, "5678");
	assert_int_equal(a->key_len, 0);
	vigie__nodeconf_free(&cfg);

	/* Defaults, and no section at all. */
	assert_int_equal(load("", &cfg, err, sizeof(err)), 0);
	assert_null(cfg.panels);
	vigie__nodeconf_free(&cfg);
}

static void test_config_errors(void **state)
{
	static const struct {
		const char *yaml;
		const char *want;
	} cases[] = {
		{"panels:\n  accounts: [{id: 1234}]\n", "missing required key"},
		{"panels:\n  listen: [{protocol: sctp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234}]\n",
		 "expected tcp or udp"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 12}]\n",
		 "3 to 16 hex digits"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 12G4}]\n",
		 "3 to 16 hex digits"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234, key: 0011}]\n",
		 "32, 48 or 64 hex digits"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234, key: "
		 "000102030405060708090a0b0c0d0e0g}]\n",
		 "hex digits only"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234}, {id: 01234}, {id: 1234}]\n",
		 "duplicate account \"1234\""},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234, zone: attic}]\n",
		 "zone \"attic\" is not in zones"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234, map: [{panel_zone: 1, zone: balcony, "
		 "sensor: pir-1}]}]\n",
		 "sensor pir-1 does not cover zone balcony"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234, map: [{zone: balcony}]}]\n",
		 "give panel_zone, area or both"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234, map: [{area: 1}]}]\n",
		 "give the Vigie zone, sensor or both"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234, supervison: 10s}]\n",
		 "supervison"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "1}]\n"
		 "  accounts: [{id: 1234, supervision: 10ms}]\n",
		 "supervision: expected a duration"},
		{"panels:\n  listen: [{protocol: tcp, host: 0.0.0.0, port: "
		 "70000}]\n"
		 "  accounts: [{id: 1234}]\n",
		 "port"},
		{"panels:\n  listen: []\n  accounts: [{id: 1234}]\n",
		 "at least one listener"},
	};
	struct node_config cfg;
	char err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (load(cases[i].yaml, &cfg, err, sizeof(err)) !=
		    VIGIE_ECONFIG)
			fail_msg("accepted: %s", cases[i].yaml);
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err,
				 cases[i].want);
	}
}

static void test_random_frames_never_crash(void **state)
{
	static const char alphabet[] =
		"\n\r\"*#[]|_^/:,-0123456789ABCDEFLRNaZri ";
	char buf[300], err[160], plain[SIA_BODY_MAX];
	struct sia_frame f;
	struct sia_content c;
	struct sia_payload p;
	uint32_t x = 11;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		size_t len, skip, flen, plen;

		x = x * 1664525u + 1013904223u;
		len = (x >> 8) % sizeof(buf);
		for (size_t i = 0; i < len; i++) {
			x = x * 1664525u + 1013904223u;
			buf[i] = alphabet[(x >> 16) % (sizeof(alphabet) - 1)];
		}
		(void)vigie__sia_scan(buf, len, &skip, &flen, err, sizeof(err));
		if (vigie__sia_frame_parse(buf, len, &f, err, sizeof(err)) ==
		    0) {
			(void)vigie__sia_content_parse(f.rest, f.rest_len,
						       false, &c, err,
						       sizeof(err));
			if (vigie__sia_decrypt(key16, 16, f.rest, f.rest_len,
					       plain, sizeof(plain),
					       &plen) == 0)
				(void)vigie__sia_content_parse(plain, plen,
							       true, &c, err,
							       sizeof(err));
		}
		(void)vigie__sia_dcs_parse(buf, len, &p, err, sizeof(err));
		(void)vigie__sia_cid_parse(buf, len, &p, err, sizeof(err));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc),
		cmocka_unit_test(test_standard_examples),
		cmocka_unit_test(test_lower_case_hex),
		cmocka_unit_test(test_nak_matches_a_captured_one),
		cmocka_unit_test(test_build_parse_round_trip),
		cmocka_unit_test(test_encryption_round_trip),
		cmocka_unit_test(test_decrypts_a_panel_null),
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_framing_rejections),
		cmocka_unit_test(test_header_rejections),
		cmocka_unit_test(test_content_rejections),
		cmocka_unit_test(test_decrypt_rejections),
		cmocka_unit_test(test_dcs_table),
		cmocka_unit_test(test_dcs_parse),
		cmocka_unit_test(test_cid),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_random_frames_never_crash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
