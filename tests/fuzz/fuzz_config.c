/* libFuzzer: the YAML config loader and every typed getter. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vigie/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(struct vigie_conf *c, const struct vigie_conf_node *n,
		 int depth)
{
	const char *s;
	uint64_t u;
	double d;
	bool b;
	const char **list;
	size_t count;

	if (!n || depth > 8)
		return;
	for (size_t i = 0; i < vigie_conf_map_len(n); i++) {
		const char *key = vigie_conf_map_key(n, i);

		(void)vigie_conf_str(c, n, key, VIGIE_CONF_OPTIONAL, &s);
		(void)vigie_conf_id(c, n, key, VIGIE_CONF_OPTIONAL, &s);
		(void)vigie_conf_uint(c, n, key, 0, 1000, VIGIE_CONF_OPTIONAL,
				      &u);
		(void)vigie_conf_double(c, n, key, -1e9, 1e9,
					VIGIE_CONF_OPTIONAL, &d);
		(void)vigie_conf_bool(c, n, key, VIGIE_CONF_OPTIONAL, &b);
		(void)vigie_conf_duration(c, n, key, 0, 1000000,
					  VIGIE_CONF_OPTIONAL, &u);
		/* An absent optional key leaves *out untouched. */
		list = NULL;
		if (vigie_conf_str_list(c, n, key, VIGIE_CONF_OPTIONAL, &list,
					&count) == 0)
			free((void *)list);
		walk(c, vigie_conf_map_value(n, i), depth + 1);
	}
	for (size_t i = 0; i < vigie_conf_seq_len(n); i++) {
		(void)vigie_conf_path(vigie_conf_seq_at(n, i));
		walk(c, vigie_conf_seq_at(n, i), depth + 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vigie_conf *c = NULL;

	if (vigie_conf_parse((const char *)data, size, "fuzz.yaml", &c) == 0)
		walk(c, vigie_conf_root(c), 0);
	vigie_conf_free(c);
	return 0;
}
