/* vigie-post's terminal screen: no escape sequence from a payload reaches
 * the terminal, widths hold, the selection follows an id; key decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "post.h"
#include "vigie/error.h"

static const char *clean(struct post_buf *b, const char *s, size_t cols,
			 size_t expect_cols)
{
	vigie__postbuf_reset(b);
	assert_int_equal(vigie__postterm_clean(b, s, cols), expect_cols);
	return b->data ? b->data : "";
}

static void test_clean(void **state)
{
	struct post_buf b;

	(void)state;
	vigie__postbuf_init(&b, 4096);
	assert_string_equal(clean(&b, "Galerie", 80, 7), "Galerie");
	assert_string_equal(clean(&b, "Galerie", 3, 3), "Gal");
	assert_string_equal(clean(&b, "\x1b[2J\x1b]0;x\x07", 80, 10),
			    "?[2J?]0;x?");
	/* C1 CSI, DEL, invalid bytes, a bidi override. */
	assert_string_equal(clean(&b,
				  "a\xc2\x9b"
				  "2Jb",
				  80, 5),
			    "a?2Jb");
	assert_string_equal(clean(&b, "\x7f\xff", 80, 2), "??");
	assert_string_equal(clean(&b,
				  "abc\xe2\x80\xae"
				  "cba",
				  80, 7),
			    "abc?cba");
	/* UTF-8 counts by character; wide ones take two columns. */
	assert_string_equal(clean(&b, "Musée", 80, 5), "Musée");
	assert_string_equal(clean(&b, "美術館x", 80, 7), "美術館x");
	assert_string_equal(clean(&b, "美術館", 5, 4), "美術");
	assert_string_equal(clean(&b, NULL, 5, 0), "");
	vigie__postbuf_free(&b);
}

static void add(struct post_queue *q, const char *id, const char *incident,
		uint32_t level, const char *zone_name)
{
	Vigie__V1__Dispatch d = VIGIE__V1__DISPATCH__INIT;
	Vigie__V1__Zone z = VIGIE__V1__ZONE__INIT;
	struct post_entry *e;
	enum post_upsert what;

	z.id = (char *)"apollo-gallery";
	z.name = (char *)zone_name;
	z.action_plan = (char *)"\x1b[?1049l close the grille";
	d.id = (char *)id;
	d.incident = (char *)incident;
	d.site = (char *)"louvre";
	d.site_name = (char *)"Mus\xc3\xa9"
			      "e \x1b]0;pwned\x07";
	d.text = (char *)"\xc2\x9b"
			 "31m";
	d.pattern = (char *)(level == 9 ? "\x1b[5mcampaign" : "");
	d.backup_for = (char *)(level == 9 ? "pp-\x1b[1mlyon" : "");
	d.zone = &z;
	d.priority = VIGIE__V1__PRIORITY__PRIORITY_CRITICAL;
	d.level = level;
	d.attempt = 1;
	d.first_event_us = 1;
	assert_int_equal(vigie__postq_upsert(q, &d, 1000, 1, &what, &e), 0);
}

/* Every escape sequence in the frame must be one we write ourselves:
 * CSI with digits, ';' and '?' only, ending in H, J, K, m, h or l. */
static void assert_only_our_escapes(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == 0x1b) {
			size_t j = i + 1;

			assert_true(j < len && s[j] == '[');
			j++;
			while (j < len &&
			       (strchr("0123456789;?", s[j]) && s[j]))
				j++;
			assert_true(j < len && strchr("HJKmhl", s[j]) && s[j]);
			i = j;
			continue;
		}
		/* No other control character at all (no BEL, no CR/LF). */
		assert_true(c >= 0x20);
		/* No C1 control as UTF-8 (0xc2 0x80..0x9f). */
		if (c == 0xc2 && i + 1 < len)
			assert_false((unsigned char)s[i + 1] >= 0x80 &&
				     (unsigned char)s[i + 1] < 0xa0);
	}
}

static void test_frame_is_safe(void **state)
{
	struct post_queue q;
	struct post_buf b;
	struct post_view v;
	int sizes[][2] = {{24, 80}, {50, 200}, {8, 30}, {3, 10}, {40, 21}};

	(void)state;
	vigie__postq_init(&q, 16);
	add(&q, "a-l1", "a", 1, "Galerie \x1b[31md'Apollon");
	add(&q, "b-l9", "b", 9, "Balcon");
	vigie__postbuf_init(&b, 1 << 20);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (int color = 0; color < 2; color++) {
			memset(&v, 0, sizeof(v));
			v.q = &q;
			/* Both entries in turn, for their details. */
			v.selected = color ? "b-l9" : "a-l1";
			v.rows = sizes[i][0];
			v.cols = sizes[i][1];
			v.now_us = 5000000;
			v.post = "pp-paris";
			v.name = "Pr\xc3\xa9"
				 "fecture \x1b[2J";
			v.operator_name = "Dupont\x1b";
			v.connected = true;
			v.color = color;
			v.message = "log \x1b[31m line\x07";
			v.bad_payloads = 3;
			vigie__postbuf_reset(&b);
			vigie__postterm_render(&b, &v);
			assert_int_equal(b.err, 0);
			assert_only_our_escapes(b.data, b.len);
			if (!color && sizes[i][0] >= 24 && sizes[i][1] >= 80)
				assert_non_null(strstr(b.data, "d'Apollon"));
		}
	}
	/* The prompt path too. */
	v.prompt = "Operator name: ";
	v.input = "Jea\x1bnne";
	vigie__postbuf_reset(&b);
	vigie__postterm_render(&b, &v);
	assert_only_our_escapes(b.data, b.len);
	vigie__postbuf_free(&b);
	vigie__postq_free(&q);
}

static void test_select(void **state)
{
	struct post_queue q;
	const struct post_entry *e;

	(void)state;
	vigie__postq_init(&q, 16);
	assert_null(vigie__postterm_select(&q, NULL, 0));
	add(&q, "a-l1", "a", 1, "A");
	add(&q, "b-l1", "b", 1, "B");
	add(&q, "c-l1", "c", 1, "C");
	/* c-l2 supersedes c-l1, which leaves the view. */
	add(&q, "c-l2", "c", 2, "C");
	e = vigie__postterm_select(&q, NULL, 0);
	assert_string_equal(e->d.id, "a-l1");
	e = vigie__postterm_select(&q, "a-l1", 1);
	assert_string_equal(e->d.id, "b-l1");
	e = vigie__postterm_select(&q, "b-l1", 1);
	assert_string_equal(e->d.id, "c-l2");
	e = vigie__postterm_select(&q, "c-l2", 1);
	assert_string_equal(e->d.id, "c-l2");
	e = vigie__postterm_select(&q, "c-l2", -100);
	assert_string_equal(e->d.id, "a-l1");
	e = vigie__postterm_select(&q, "a-l1", 2147483647);
	assert_string_equal(e->d.id, "c-l2");
	e = vigie__postterm_select(&q, "a-l1", -2147483647 - 1);
	assert_string_equal(e->d.id, "a-l1");
	/* A selected id that left (superseded, pruned): back to the top. */
	e = vigie__postterm_select(&q, "c-l1", 1);
	assert_string_equal(e->d.id, "a-l1");
	vigie__postq_free(&q);
}

static int feed(struct post_keydec *k, const char *bytes)
{
	int key = POST_KEY_NONE;

	for (const char *p = bytes; *p; p++) {
		int got = vigie__postterm_key_feed(k, (unsigned char)*p);

		if (got != POST_KEY_NONE) {
			assert_int_equal(key, POST_KEY_NONE);
			key = got;
		}
	}
	return key;
}

static void test_keys(void **state)
{
	struct post_keydec k;

	(void)state;
	memset(&k, 0, sizeof(k));
	assert_int_equal(feed(&k, "\x1b[A"), POST_KEY_UP);
	assert_int_equal(feed(&k, "\x1b[B"), POST_KEY_DOWN);
	assert_int_equal(feed(&k, "\x1bOA"), POST_KEY_UP);
	assert_int_equal(feed(&k, "\x1bOB"), POST_KEY_DOWN);
	assert_int_equal(feed(&k, "\x1b[5~"), POST_KEY_PGUP);
	assert_int_equal(feed(&k, "\x1b[6~"), POST_KEY_PGDN);
	assert_int_equal(feed(&k, "\x1b[H"), POST_KEY_HOME);
	assert_int_equal(feed(&k, "\x1b[1~"), POST_KEY_HOME);
	assert_int_equal(feed(&k, "\x1b[4~"), POST_KEY_END);
	assert_int_equal(feed(&k, "\x1b[1;5A"), POST_KEY_UP);
	assert_int_equal(feed(&k, "\x1b[15~"), POST_KEY_NONE);
	assert_int_equal(feed(&k, "\r"), POST_KEY_ENTER);
	assert_int_equal(feed(&k, "\n"), POST_KEY_ENTER);
	assert_int_equal(feed(&k, "\x7f"), POST_KEY_BACKSPACE);
	assert_int_equal(feed(&k, "a"), 'a');
	assert_int_equal(feed(&k, "q"), 'q');
	/* A lone Esc: known only when the read ends. */
	assert_int_equal(feed(&k, "\x1b"), POST_KEY_NONE);
	assert_int_equal(vigie__postterm_key_flush(&k), POST_KEY_ESC);
	assert_int_equal(vigie__postterm_key_flush(&k), POST_KEY_NONE);
	/* Esc then a key: the Esc, and the decoder is back on its feet. */
	assert_int_equal(feed(&k, "\x1bx"), POST_KEY_ESC);
	assert_int_equal(feed(&k, "j"), 'j');
	/* A long garbage parameter list does not overflow. */
	assert_int_equal(feed(&k, "\x1b[1111111111111111111111111A"),
			 POST_KEY_UP);
	/* A control byte inside a sequence aborts it. */
	assert_int_equal(feed(&k, "\x1b[1\x03"), POST_KEY_NONE);
	assert_int_equal(feed(&k, "k"), 'k');
	/* A sequence split across reads still decodes (flush only ends a
	 * lone ESC). */
	assert_int_equal(feed(&k, "\x1b["), POST_KEY_NONE);
	assert_int_equal(vigie__postterm_key_flush(&k), POST_KEY_NONE);
	assert_int_equal(feed(&k, "B"), POST_KEY_DOWN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_frame_is_safe),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
