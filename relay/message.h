/* Outgoing messages of the relay (proto/vigie.proto), built from the
 * incident engine's state and the configuration. Each returns 0 with a
 * malloc'd buffer in *out (free() it), VIGIE_ENOMEM or VIGIE_ETOOBIG. */
#ifndef VIGIE_RELAY_MESSAGE_H
#define VIGIE_RELAY_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "incident.h"
#include "relay.h"

/* Where a zone is: from the relay's config, else from what the site's
 * nodes advertised in their birth. */
struct zone_info {
	const char *id, *name, *floor, *facade, *kind, *action_plan;
	bool has_location;
	double lat, lon;
	char **cameras;
	size_t n_cameras;
};

int vigie__msg_receipt(const char *site, const char *node, uint64_t boot_id,
		       uint64_t seq, uint64_t now_us, const char *relay,
		       uint8_t **out, size_t *len);

/* The retained Incident. */
int vigie__msg_incident(const struct incident *inc, const char *level_name,
			const char *region, uint8_t **out, size_t *len);

/* Restore an incident from its stored Incident message and the columns
 * kept beside it. Returns 0 or VIGIE_EDECODE. */
int vigie__msg_incident_restore(const void *data, size_t len,
				const char *detectors, struct incident *inc);

/* "id@us;id@us" for the detectors column. */
void vigie__msg_detectors_format(const struct incident *inc, char *buf,
				 size_t len);

struct dispatch_in {
	const char *id;
	const struct incident *inc;
	const char *post, *backup_for;
	const struct relay_site *site; /* may be NULL: unconfigured site */
	const struct zone_info *zone;  /* may be NULL */
	uint32_t level;
	const char *level_name;
	uint32_t attempt;
	uint64_t sent_us;
};
int vigie__msg_dispatch(const struct dispatch_in *in, uint8_t **out,
			size_t *len);

struct alert_in {
	const char *id;
	const struct incident *inc;
	const struct relay_level *level;
	uint32_t level_index;
	const struct zone_info *zone; /* may be NULL */
	uint64_t now_us;
};
int vigie__msg_alert(const struct alert_in *in, uint8_t **out, size_t *len);

/* One line saying what happened and where, for dispatches and alerts:
 * "CONFIRMED intrusion, Galerie d'Apollon (floor 1, facade seine):
 *  glass_break gb-w2, vibration seismic-w2 - 3 events". */
void vigie__msg_summary(const struct incident *inc, const struct zone_info *z,
			char *buf, size_t len);

#endif
