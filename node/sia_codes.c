/* Panel payloads: SIA DCS (SIA DC-03) and Ademco Contact ID (SIA DC-05) as
 * DC-09 carries them inside the brackets, mapped to Vigie kinds and states.
 *
 * Sources: the DC-03 code list as published with eavanvalkenburg/pysiaalarm
 * (src/pysiaalarm/data/sia_codes.json: "BA Burglary Alarm, zone or point",
 * "BH Burglary Alarm Restore", "OP Opening Report, user number", ...), its
 * Contact ID to DCS table (data/adm_mapping.json: 130 -> BA/BH, 137 ->
 * TA/TR, 301 -> AT/AR, 350 -> YC/YK, 570 -> BB/BU, 602 -> RP), the
 * appendix examples "#12345A|NFA129" (DCS: N new event, FA, zone 129) and
 * "#12345A|1110 00 129" (Contact ID: qualifier 1, event 110, group 00,
 * zone 129), and panel traffic kept in the same tests ("Nri1/CL501",
 * "#123456|Nri1CL0^VX FRONTE ^": ri = area, ^..^ = free text). Contact ID
 * qualifiers (DC-05): 1 new event or opening, 3 restore or closing, 6
 * previously reported condition still present.
 *
 * Mapping choices: a burglary code becomes KIND_INTRUSION unless the panel
 * zone is mapped to a sensor of the intrusion family, whose kind is used
 * instead (sia.c); a tamper is KIND_NODE_TAMPER (the system's equipment
 * was tampered with); openings and closings are KIND_OPEN_CLOSE with
 * STATE_ALARM for an opening and STATE_RESTORE for a closing, Contact ID's
 * own E401/R401 convention, plus an "action" attribute. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sia.h"
#include "vigie/error.h"

#define K(x) VIGIE__V1__EVENT_KIND__KIND_##x
#define S(x) VIGIE__V1__EVENT_STATE__STATE_##x

/* What the number after a code counts. */
enum addr { A_ZONE, A_USER, A_AREA, A_NONE };

struct dcs_code {
	char code[3];
	int kind, state;
	enum addr addr;
	const char *name;
};

static const struct dcs_code dcs_codes[] = {
	{"BA", K(INTRUSION), S(ALARM), A_ZONE, "Burglary Alarm"},
	{"BH", K(INTRUSION), S(RESTORE), A_ZONE, "Burglary Alarm Restore"},
	{"BR", K(INTRUSION), S(RESTORE), A_ZONE, "Burglary Restoral"},
	{"BT", K(INTRUSION), S(TROUBLE), A_ZONE, "Burglary Trouble"},
	{"BJ", K(INTRUSION), S(RESTORE), A_ZONE, "Burglary Trouble Restore"},
	{"BV", K(INTRUSION), S(ALARM), A_AREA, "Burglary Verified"},
	{"BB", K(BYPASS), S(TROUBLE), A_ZONE, "Burglary Bypass"},
	{"BU", K(BYPASS), S(RESTORE), A_ZONE, "Burglary Unbypass"},
	{"UA", K(INTRUSION), S(ALARM), A_ZONE, "Untyped Zone Alarm"},
	{"UH", K(INTRUSION), S(RESTORE), A_ZONE, "Untyped Alarm Restore"},
	{"UR", K(INTRUSION), S(RESTORE), A_ZONE, "Untyped Zone Restoral"},
	{"DF", K(DOOR_CONTACT), S(ALARM), A_ZONE, "Door Forced"},
	{"DR", K(DOOR_CONTACT), S(RESTORE), A_ZONE, "Door Restoral"},
	{"TA", K(NODE_TAMPER), S(ALARM), A_ZONE, "Tamper Alarm"},
	{"TR", K(NODE_TAMPER), S(RESTORE), A_ZONE, "Tamper Restoral"},
	{"PA", K(DURESS), S(ALARM), A_ZONE, "Panic Alarm"},
	{"PH", K(DURESS), S(RESTORE), A_ZONE, "Panic Alarm Restore"},
	{"PR", K(DURESS), S(RESTORE), A_ZONE, "Panic Restoral"},
	{"HA", K(DURESS), S(ALARM), A_ZONE, "Holdup Alarm"},
	{"HH", K(DURESS), S(RESTORE), A_ZONE, "Holdup Alarm Restore"},
	{"HR", K(DURESS), S(RESTORE), A_ZONE, "Holdup Restoral"},
	{"FA", K(FIRE), S(ALARM), A_ZONE, "Fire Alarm"},
	{"FH", K(FIRE), S(RESTORE), A_ZONE, "Fire Alarm Restore"},
	{"FR", K(FIRE), S(RESTORE), A_ZONE, "Fire Restoral"},
	{"FT", K(FIRE), S(TROUBLE), A_ZONE, "Fire Trouble"},
	{"FJ", K(FIRE), S(RESTORE), A_ZONE, "Fire Trouble Restore"},
	{"AT", K(POWER_LOSS), S(TROUBLE), A_NONE, "AC Trouble"},
	{"AR", K(POWER_LOSS), S(RESTORE), A_NONE, "AC Restoral"},
	{"YT", K(BATTERY), S(TROUBLE), A_NONE, "System Battery Trouble"},
	{"YM", K(BATTERY), S(TROUBLE), A_NONE, "System Battery Missing"},
	{"YR", K(BATTERY), S(RESTORE), A_NONE, "System Battery Restoral"},
	{"YC", K(COMM_LOSS), S(TROUBLE), A_NONE, "Communications Fail"},
	{"YS", K(COMM_LOSS), S(TROUBLE), A_NONE, "Communications Trouble"},
	{"YK", K(COMM_LOSS), S(RESTORE), A_NONE, "Communications Restoral"},
	{"RP", K(TEST), S(TEST), A_NONE, "Automatic Test"},
	{"RX", K(TEST), S(TEST), A_USER, "Manual Test"},
	{"OP", K(OPEN_CLOSE), S(ALARM), A_USER, "Opening Report"},
	{"CL", K(OPEN_CLOSE), S(RESTORE), A_USER, "Closing Report"},
	{"OA", K(OPEN_CLOSE), S(ALARM), A_AREA, "Automatic Opening"},
	{"CA", K(OPEN_CLOSE), S(RESTORE), A_AREA, "Automatic Closing"},
};

/* Contact ID: the state for qualifier 1 (new); qualifier 3 is a restore
 * (a closing for 40x) and 6 repeats qualifier 1 as a status report. */
struct cid_code {
	unsigned event;
	int kind, state;
	enum addr addr;
	const char *name;
};

static const struct cid_code cid_codes[] = {
	{110, K(FIRE), S(ALARM), A_ZONE, "Fire"},
	{111, K(FIRE), S(ALARM), A_ZONE, "Smoke"},
	{114, K(FIRE), S(ALARM), A_ZONE, "Heat"},
	{120, K(DURESS), S(ALARM), A_ZONE, "Panic"},
	{121, K(DURESS), S(ALARM), A_USER, "Duress"},
	{122, K(DURESS), S(ALARM), A_ZONE, "Silent Panic"},
	{123, K(DURESS), S(ALARM), A_ZONE, "Audible Panic"},
	{130, K(INTRUSION), S(ALARM), A_ZONE, "Burglary"},
	{131, K(PERIMETER), S(ALARM), A_ZONE, "Perimeter"},
	{132, K(INTRUSION), S(ALARM), A_ZONE, "Interior"},
	{133, K(INTRUSION), S(ALARM), A_ZONE, "24 Hour"},
	{134, K(DOOR_CONTACT), S(ALARM), A_ZONE, "Entry/Exit"},
	{135, K(INTRUSION), S(ALARM), A_ZONE, "Day/Night"},
	{136, K(PERIMETER), S(ALARM), A_ZONE, "Outdoor"},
	{137, K(NODE_TAMPER), S(ALARM), A_ZONE, "Tamper"},
	{138, K(INTRUSION), S(ALARM), A_ZONE, "Near Alarm"},
	{139, K(INTRUSION), S(ALARM), A_ZONE, "Intrusion Verifier"},
	{140, K(INTRUSION), S(ALARM), A_ZONE, "General Alarm"},
	{144, K(NODE_TAMPER), S(ALARM), A_ZONE, "Sensor Tamper"},
	{145, K(NODE_TAMPER), S(ALARM), A_ZONE, "Expansion Module Tamper"},
	{301, K(POWER_LOSS), S(TROUBLE), A_ZONE, "AC Loss"},
	{302, K(BATTERY), S(TROUBLE), A_ZONE, "Low System Battery"},
	{309, K(BATTERY), S(TROUBLE), A_ZONE, "Battery Test Failure"},
	{311, K(BATTERY), S(TROUBLE), A_ZONE, "Battery Missing"},
	{350, K(COMM_LOSS), S(TROUBLE), A_ZONE, "Communication Trouble"},
	{351, K(COMM_LOSS), S(TROUBLE), A_ZONE, "Telco 1 Fault"},
	{352, K(COMM_LOSS), S(TROUBLE), A_ZONE, "Telco 2 Fault"},
	{354, K(COMM_LOSS), S(TROUBLE), A_ZONE, "Failure to Communicate"},
	{383, K(NODE_TAMPER), S(ALARM), A_ZONE, "Sensor Tamper"},
	{400, K(OPEN_CLOSE), S(ALARM), A_USER, "Open/Close"},
	{401, K(OPEN_CLOSE), S(ALARM), A_USER, "Open/Close by User"},
	{402, K(OPEN_CLOSE), S(ALARM), A_USER, "Group Open/Close"},
	{403, K(OPEN_CLOSE), S(ALARM), A_USER, "Automatic Open/Close"},
	{407, K(OPEN_CLOSE), S(ALARM), A_USER, "Remote Arm/Disarm"},
	{409, K(OPEN_CLOSE), S(ALARM), A_USER, "Keyswitch Open/Close"},
	{570, K(BYPASS), S(TROUBLE), A_ZONE, "Zone Bypass"},
	{573, K(BYPASS), S(TROUBLE), A_ZONE, "Burglary Bypass"},
	{601, K(TEST), S(TEST), A_ZONE, "Manual Trigger Test"},
	{602, K(TEST), S(TEST), A_ZONE, "Periodic Test Report"},
};

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static const struct dcs_code *dcs_find(const char *code)
{
	for (size_t i = 0; i < sizeof(dcs_codes) / sizeof(dcs_codes[0]); i++)
		if (code[0] == dcs_codes[i].code[0] &&
		    code[1] == dcs_codes[i].code[1])
			return &dcs_codes[i];
	return NULL;
}

static const struct cid_code *cid_find(unsigned event)
{
	for (size_t i = 0; i < sizeof(cid_codes) / sizeof(cid_codes[0]); i++)
		if (cid_codes[i].event == event)
			return &cid_codes[i];
	return NULL;
}

int vigie__sia_dcs_map(const char *code, int *kind, int *state,
		       const char **name)
{
	const struct dcs_code *d;

	if (!code || strlen(code) != 2)
		return VIGIE_ENOTFOUND;
	d = dcs_find(code);
	if (!d)
		return VIGIE_ENOTFOUND;
	*kind = d->kind;
	*state = d->state;
	*name = d->name;
	return 0;
}

int vigie__sia_cid_map(unsigned event, unsigned qualifier, int *kind,
		       int *state, const char **name)
{
	const struct cid_code *c = cid_find(event);

	if (!c || (qualifier != 1 && qualifier != 3 && qualifier != 6))
		return VIGIE_ENOTFOUND;
	*kind = c->kind;
	*name = c->name;
	if (c->state == S(TEST))
		*state = S(TEST);
	else if (qualifier == 3)
		*state = S(RESTORE);
	else
		*state = c->state;
	return 0;
}

/* "#acct|" or "|" opening the data: the account, if any, into p->account. */
static int take_account(const char **pp, const char *end, struct sia_payload *p,
			char *err, size_t errlen)
{
	const char *s = *pp;
	size_t n = 0;

	if (s < end && *s == '#') {
		s++;
		while (s < end && isxdigit((unsigned char)*s) &&
		       n < SIA_ACCOUNT_MAX)
			p->account[n++] = (char)toupper((unsigned char)*s++);
		p->account[n] = '\0';
		if (n < 3 || s >= end || *s != '|')
			return fail(
				err, errlen, VIGIE_EINVAL,
				"account in the data: expected #<3-16 hex>|");
	}
	if (s < end && *s == '|')
		s++;
	*pp = s;
	return 0;
}

/* Decimal digits at *pp, at most `max` of them; -1 when there are none. */
static long number(const char **pp, const char *end, int max)
{
	const char *s = *pp;
	long v = 0;
	int n = 0;

	while (s < end && *s >= '0' && *s <= '9' && n < max) {
		v = v * 10 + (*s++ - '0');
		n++;
	}
	*pp = s;
	return n ? v : -1;
}

static void set_addr(struct sia_event *e, enum addr a, long v)
{
	if (v < 0)
		return;
	switch (a) {
	case A_ZONE:
		e->has_zone = true;
		e->zone = (unsigned)v;
		break;
	case A_USER:
		e->has_user = true;
		e->user = (unsigned)v;
		break;
	case A_AREA:
		e->has_area = true;
		e->area = (unsigned)v;
		break;
	case A_NONE:
		break;
	}
}

int vigie__sia_dcs_parse(const char *data, size_t len, struct sia_payload *p,
			 char *err, size_t errlen)
{
	const char *s = data, *end = data + len;
	bool has_area = false;
	unsigned area = 0;
	int rc;

	memset(p, 0, sizeof(*p));
	rc = take_account(&s, end, p, err, errlen);
	if (rc)
		return rc;
	/* 'N' (new event) before the first field; a code that starts with N
	 * ("NA01") is followed by a digit, not by a second capital. */
	if (end - s >= 3 && s[0] == 'N' &&
	    (islower((unsigned char)s[1]) || s[1] == '/' ||
	     (isupper((unsigned char)s[1]) && isupper((unsigned char)s[2]))))
		s++;
	while (s < end) {
		if (*s == '/') {
			s++;
			continue;
		}
		if (end - s >= 2 && islower((unsigned char)s[0]) &&
		    islower((unsigned char)s[1])) {
			/* A modifier: ri (area), id (user), ti (time) ... */
			bool ri = s[0] == 'r' && s[1] == 'i';
			long v;

			s += 2;
			if (ri) {
				v = number(&s, end, 6);
				has_area = v >= 0;
				area = v >= 0 ? (unsigned)v : 0;
			}
			while (s < end &&
			       ((*s >= '0' && *s <= '9') || *s == ':'))
				s++;
			continue;
		}
		if (end - s >= 2 && isupper((unsigned char)s[0]) &&
		    isupper((unsigned char)s[1])) {
			const struct dcs_code *d = dcs_find(s);
			struct sia_event *e;
			long v;

			if (!d)
				return fail(err, errlen, VIGIE_ENOTFOUND,
					    "unknown SIA DCS code \"%c%c\"",
					    s[0], s[1]);
			if (p->n == SIA_EVENTS_MAX)
				return fail(
					err, errlen, VIGIE_EINVAL,
					"more than %d events in one message",
					SIA_EVENTS_MAX);
			e = &p->ev[p->n++];
			memset(e, 0, sizeof(*e));
			e->kind = d->kind;
			e->state = d->state;
			e->name = d->name;
			memcpy(e->code, d->code, 3);
			e->has_area = has_area;
			e->area = area;
			s += 2;
			v = number(&s, end, 6);
			set_addr(e, d->addr, v);
			if (s < end && *s == '^') {
				const char *t = ++s;
				size_t n;

				while (s < end && *s != '^')
					s++;
				if (s >= end)
					return fail(
						err, errlen, VIGIE_EINVAL,
						"text of %s has no closing '^'",
						e->code);
				n = (size_t)(s - t);
				if (n > SIA_PANEL_TEXT_MAX)
					n = SIA_PANEL_TEXT_MAX;
				memcpy(e->text, t, n);
				e->text[n] = '\0';
				s++;
			}
			if (s < end && *s != '/')
				return fail(err, errlen, VIGIE_EINVAL,
					    "unexpected '%c' after event %s",
					    *s, e->code);
			continue;
		}
		return fail(err, errlen, VIGIE_EINVAL,
			    "unexpected '%c' in SIA DCS data",
			    isprint((unsigned char)*s) ? *s : '?');
	}
	if (!p->n)
		return fail(err, errlen, VIGIE_EINVAL,
			    "no event code in SIA DCS data");
	return 0;
}

int vigie__sia_cid_parse(const char *data, size_t len, struct sia_payload *p,
			 char *err, size_t errlen)
{
	const char *s = data, *end = data + len, *t;
	const struct cid_code *c;
	struct sia_event *e;
	long q, ev, group, addr;
	int rc;

	memset(p, 0, sizeof(*p));
	rc = take_account(&s, end, p, err, errlen);
	if (rc)
		return rc;
	t = s;
	q = number(&s, end, 1);
	ev = s - t == 1 ? number(&s, end, 3) : -1;
	if (q < 0 || ev < 0 || s - t != 4)
		return fail(err, errlen, VIGIE_EINVAL,
			    "Contact ID: expected QEEE GG ZZZ");
	if (s < end && *s == ' ')
		s++;
	t = s;
	group = number(&s, end, 2);
	if (s - t != 2)
		return fail(err, errlen, VIGIE_EINVAL,
			    "Contact ID: expected a 2-digit group");
	if (s < end && *s == ' ')
		s++;
	t = s;
	addr = number(&s, end, 3);
	if (s - t != 3 || s != end)
		return fail(err, errlen, VIGIE_EINVAL,
			    "Contact ID: expected a 3-digit zone or user at "
			    "the end");
	if (q != 1 && q != 3 && q != 6)
		return fail(err, errlen, VIGIE_EINVAL,
			    "Contact ID: qualifier %ld is not 1, 3 or 6", q);
	c = cid_find((unsigned)ev);
	if (!c)
		return fail(err, errlen, VIGIE_ENOTFOUND,
			    "unknown Contact ID event %03ld", ev);
	e = &p->ev[0];
	p->n = 1;
	vigie__sia_cid_map((unsigned)ev, (unsigned)q, &e->kind, &e->state,
			   &e->name);
	snprintf(e->code, sizeof(e->code), "%c%03u",
		 q == 1   ? 'E'
		 : q == 3 ? 'R'
			  : 'P',
		 (unsigned)ev % 1000u);
	e->still_present = q == 6;
	e->has_area = true;
	e->area = (unsigned)group;
	set_addr(e, c->addr, addr);
	return 0;
}
