/* libFuzzer: event payload decoding, topic parsing and formatting. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vigie/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Vigie__V1__SignedEvent *se;
	Vigie__V1__Event *ev;
	struct vigie_topic t;
	char buf[VIGIE_TOPIC_MAX + 2];
	char line[1024];

	if (vigie_event_decode(data, size, &se, &ev) == 0) {
		vigie_event_format(ev, line, sizeof(line));
		vigie_event_free(se, ev);
	}
	if (size < sizeof(buf)) {
		memcpy(buf, data, size);
		buf[size] = '\0';
		(void)vigie_topic_parse(buf, &t);
	}
	return 0;
}
