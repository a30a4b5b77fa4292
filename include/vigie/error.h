/* Vigie error codes. Every libvigie function that can fail returns 0 on
 * success or one of these negative codes; vigie_strerror() names it. Codes of
 * the libraries we wrap (MOSQ_ERR_*, SQLite, protobuf-c) are translated where
 * they enter our code. */
#ifndef VIGIE_ERROR_H
#define VIGIE_ERROR_H

#define VIGIE_OK        0
#define VIGIE_ENOMEM    (-1)  /* allocation failed */
#define VIGIE_EINVAL    (-2)  /* bad argument or bad input data */
#define VIGIE_EIO       (-3)  /* file or database I/O failed */
#define VIGIE_ENOCONN   (-4)  /* not connected to the broker */
#define VIGIE_EPROTO    (-5)  /* MQTT protocol error */
#define VIGIE_ETLS      (-6)  /* TLS setup or handshake failed */
#define VIGIE_ETOOBIG   (-7)  /* input over its size cap */
#define VIGIE_EFULL     (-8)  /* a capped queue is full */
#define VIGIE_EDECODE   (-9)  /* payload does not decode */
#define VIGIE_ECONFIG   (-10) /* configuration invalid */
#define VIGIE_ENOTFOUND (-11)
#define VIGIE_ECLOSED   (-12) /* object is closing */
#define VIGIE_EAUTH     (-13) /* refused by the broker: not authorised */
#define VIGIE_ESYS      (-14) /* a system call failed; see errno */

/* vigie_strerror: text for a VIGIE_E* code (never NULL). */
const char *vigie_strerror(int code);

#endif
