/* libFuzzer: the node's SIA DC-09 decoder, as a panel's bytes reach it:
 * stream framing, CRC and length, header, cleartext content, decryption
 * with a fixed account key, the padded content, then the SIA DCS and
 * Contact ID payloads. The seeds (corpus/sia) are valid frames, one of them
 * encrypted with this key. */
#include <stddef.h>
#include <stdint.h>

#include "sia.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* AES-128 key of the encrypted seed: 000102030405060708090A0B0C0D0E0F. */
static const uint8_t key[16] = {0, 1, 2,  3,  4,  5,  6,  7,
				8, 9, 10, 11, 12, 13, 14, 15};

static void payloads(const struct sia_frame *f, const struct sia_content *c)
{
	struct sia_payload p;
	char err[160];

	if (f->token == SIA_TOKEN_CID)
		(void)vigie__sia_cid_parse(c->data, c->data_len, &p, err,
					   sizeof(err));
	else
		(void)vigie__sia_dcs_parse(c->data, c->data_len, &p, err,
					   sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data, *body;
	char err[160], plain[SIA_BODY_MAX];
	size_t off = 0, skip, flen, blen, plen;
	struct sia_content c;
	struct sia_frame f;

	/* Every frame of the stream, as the TCP reader would take them. */
	while (off < size && vigie__sia_scan(buf + off, size - off, &skip,
					     &flen, err, sizeof(err)) == 1) {
		const char *frame = buf + off + skip;

		off += skip + flen;
		if (vigie__sia_frame_check(frame, flen, &body, &blen, err,
					   sizeof(err)) ||
		    vigie__sia_frame_parse(body, blen, &f, err, sizeof(err)))
			continue;
		if (!f.encrypted) {
			if (vigie__sia_content_parse(f.rest, f.rest_len, false,
						     &c, err, sizeof(err)) == 0)
				payloads(&f, &c);
			continue;
		}
		if (vigie__sia_decrypt(key, sizeof(key), f.rest, f.rest_len,
				       plain, sizeof(plain), &plen) == 0 &&
		    vigie__sia_content_parse(plain, plen, true, &c, err,
					     sizeof(err)) == 0)
			payloads(&f, &c);
	}
	/* The parsers also take bodies that never saw a frame around them. */
	if (vigie__sia_frame_parse(buf, size, &f, err, sizeof(err)) == 0 &&
	    vigie__sia_content_parse(f.rest, f.rest_len, false, &c, err,
				     sizeof(err)) == 0)
		payloads(&f, &c);
	return 0;
}
