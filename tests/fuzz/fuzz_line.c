/* libFuzzer: the node's event line parser (socket and scenario input). */
#include <stddef.h>
#include <stdint.h>

#include "node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct node_event ev;
	char err[200];

	(void)vigie__line_parse((const char *)data, size, &ev, err,
				sizeof(err));
	return 0;
}
