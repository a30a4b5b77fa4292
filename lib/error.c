#include "vigie/error.h"

const char *vigie_strerror(int code)
{
	switch (code) {
	case VIGIE_OK:
		return "success";
	case VIGIE_ENOMEM:
		return "out of memory";
	case VIGIE_EINVAL:
		return "invalid argument or input";
	case VIGIE_EIO:
		return "I/O error";
	case VIGIE_ENOCONN:
		return "not connected";
	case VIGIE_EPROTO:
		return "protocol error";
	case VIGIE_ETLS:
		return "TLS error";
	case VIGIE_ETOOBIG:
		return "too large";
	case VIGIE_EFULL:
		return "queue full";
	case VIGIE_EDECODE:
		return "payload does not decode";
	case VIGIE_ECONFIG:
		return "invalid configuration";
	case VIGIE_ENOTFOUND:
		return "not found";
	case VIGIE_ECLOSED:
		return "closing";
	case VIGIE_EAUTH:
		return "not authorised";
	case VIGIE_ESYS:
		return "system call failed";
	default:
		return "unknown error";
	}
}
