/* atomicfile.c - see atomicfile.h. */
#define _GNU_SOURCE
#include "common/atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h> /* rename */
#include <string.h>
#include <unistd.h>

#include "common/xmalloc.h"

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

int atomic_write_file(const char *path, const void *data, size_t len, mode_t mode, char **err,
		      int *err_no)
{
	char *tmp = xasprintf("%s.tmp", path), *dir = NULL;
	const char *step = "create";
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	int rc = -1, e;

	if (fd < 0)
		goto fail;
	step = "write";
	if (write_all(fd, data, len) < 0)
		goto fail;
	step = "fsync";
	if (fsync(fd) < 0)
		goto fail;
	step = "close";
	e = close(fd);
	fd = -1;
	if (e < 0)
		goto fail;
	step = "rename";
	if (rename(tmp, path) < 0)
		goto fail;
	step = "fsync directory";
	dir = dir_of(path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && fsync(fd) == 0)
		rc = 0;
	e = errno;
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		/* Renamed already: say so, but do not unlink anything. */
		*err = xasprintf("%s: %s %s: %s", path, step, dir, strerror(e));
		if (err_no)
			*err_no = e;
	}
	free(dir);
	free(tmp);
	return rc;
fail:
	e = errno;
	*err = xasprintf("%s: %s: %s", tmp, step, strerror(e));
	if (err_no)
		*err_no = e;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return -1;
}
