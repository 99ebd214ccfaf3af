/*
 * sock.h - listening sockets, opened the same way by every listener that is
 * not the relay's (admin, metrics, gate): non-blocking, close-on-exec,
 * SO_REUSEADDR, and, for IPv6, IPV6_V6ONLY as given.
 */
#ifndef LBD_COMMON_SOCK_H
#define LBD_COMMON_SOCK_H

#include <sys/socket.h>

/* Binds and listens on sa. Returns the fd, or -1 with *err ("what ADDR: why",
 * caller frees). text is the address as the user wrote it, for the error. */
int sock_listen_tcp(const struct sockaddr *sa, socklen_t len, int backlog, const char *what,
		    const char *text, char **err);

#endif
