/*
 * sock.c - see sock.h.
 */
#include "common/sock.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/xmalloc.h"

int sock_listen_tcp(const struct sockaddr *sa, socklen_t len, int backlog, const char *what,
		    const char *text, char **err)
{
	int one = 1, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		*err = xasprintf("%s %s: socket: %s", what, text, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
		*err = xasprintf("%s: cannot listen on %s: %s", what, text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}
