/*
 * sdnotify.c - the sd_notify datagram protocol, without libsystemd.
 *
 * systemd documents it as stable (sd_notify(3), "Notes"): connect an
 * AF_UNIX SOCK_DGRAM socket to $NOTIFY_SOCKET and send the state lines in
 * one datagram. systemd learns the sender's PID from the credentials the
 * kernel attaches, so with NotifyAccess=main (the default for Type=notify)
 * the message must come from lbd's own process, which it does (any thread:
 * the kernel reports the process id).
 *
 * The socket is blocking, as libsystemd's is, so READY=1 is not lost to a
 * full queue; a send timeout bounds how long the event loop can wait on a
 * stuck supervisor.
 */
#include "common/sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Fills *sun from $NOTIFY_SOCKET. Returns the address length, 0 when the
 * variable is unset or empty, -1 (errno) when it is not a usable name. */
static socklen_t notify_addr(struct sockaddr_un *sun)
{
	const char *e = getenv("NOTIFY_SOCKET");
	size_t n;

	if (!e || !*e)
		return 0;
	n = strlen(e);
	/* Paths must be absolute; '@' names an abstract socket. (systemd also
	 * knows vsock: addresses, for VMs; lbd does not run there.) */
	if ((e[0] != '/' && e[0] != '@') || n < 2 || n > sizeof(sun->sun_path)) {
		errno = EINVAL;
		return (socklen_t)-1;
	}
	if (e[0] == '/' && n == sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG; /* no room for the terminating NUL */
		return (socklen_t)-1;
	}
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, e, n);
	if (sun->sun_path[0] == '@')
		sun->sun_path[0] = '\0'; /* abstract: the length says where it ends */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (e[0] == '/'));
}

int sdnotify(const char *msg)
{
	struct sockaddr_un sun;
	socklen_t len = notify_addr(&sun);
	struct timeval tv = {.tv_sec = 1};
	int fd, saved;
	ssize_t w;

	if (len == 0)
		return 0;
	if (len == (socklen_t)-1)
		return -1;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	do {
		w = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun, len);
	} while (w < 0 && errno == EINTR);
	saved = errno;
	close(fd);
	if (w < 0) {
		errno = saved;
		return -1;
	}
	return 1;
}

int sdnotifyf(const char *fmt, ...)
{
	char msg[2048]; /* a STATUS longer than this is cut, which is harmless */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sdnotify(msg);
}

int sdnotify_ready(const char *status)
{
	return status ? sdnotifyf("READY=1\nSTATUS=%s", status) : sdnotify("READY=1");
}

int sdnotify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return sdnotifyf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the config",
			 (unsigned long long)ts.tv_sec * 1000000ULL +
			     (unsigned long long)ts.tv_nsec / 1000ULL);
}

int sdnotify_stopping(const char *status)
{
	return status ? sdnotifyf("STOPPING=1\nSTATUS=%s", status) : sdnotify("STOPPING=1");
}

int sdnotify_status(const char *status)
{
	return sdnotifyf("STATUS=%s", status);
}
