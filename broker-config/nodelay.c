/* libvigie-nodelay: TCP_NODELAY on the sockets Mosquitto 2.0 connects out.
 *
 * `set_tcp_nodelay true` applies only to the connections a Mosquitto 2.0.11
 * broker accepts; its bridges connect out with Nagle's algorithm on (strace
 * shows no setsockopt on the bridge socket). A bridge carries events up and
 * receipts down at once, so Nagle holds each event until the peer's delayed
 * ACK: 17 ms p99 from node to central here instead of well under 1 ms.
 * Preloaded into the broker (LD_PRELOAD=.../libvigie-nodelay.so mosquitto
 * -c ...), this wraps connect() and disables Nagle on every TCP socket the
 * process connects; it changes nothing else. */
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len);

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	static int (*real_connect)(int, const struct sockaddr *, socklen_t);
	int type = 0;
	socklen_t tlen = sizeof(type);

	if (!real_connect) {
		*(void **)&real_connect = dlsym(RTLD_NEXT, "connect");
		if (!real_connect)
			return -1;
	}
	if (addr &&
	    (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) &&
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 &&
	    type == SOCK_STREAM) {
		int one = 1;

		/* Best effort: a failure leaves the socket as it was. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				 sizeof(one));
	}
	return real_connect(fd, addr, len);
}
