/* atomicfile.c - see atomicfile.h. */
#define _GNU_SOURCE
#include "common/atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h> /* rename */
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xmalloc.h"

/* Tests point this at a failing stand-in (test_atomicfile.c). */
int (*atomicfile_fsync_dir)(int fd) = fsync;

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

/* Returns 0, or -1 with *e. */
static int fsync_dir(const char *dir, int *e)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0) {
		*e = errno;
		return -1;
	}
	rc = atomicfile_fsync_dir(fd);
	*e = errno;
	close(fd);
	return rc < 0 ? -1 : 0;
}

int atomic_write_file(const char *path, const void *data, size_t len, mode_t mode, char **err,
		      int *err_no)
{
	char *tmp = xasprintf("%s.tmp", path), *dir;
	const char *step = "create";
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	int e;

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
	/* The rename is the commit point: from here the new version is what
	 * PATH holds and what the next start reads, so the write has happened
	 * whatever follows. A failed directory fsync only leaves its survival
	 * of a power loss in doubt: retried once, then logged, never reported
	 * as a failure (the caller would answer 5xx for an edit that is in
	 * place). The next write's directory fsync covers this rename too. */
	dir = dir_of(path);
	if (fsync_dir(dir, &e) < 0 && fsync_dir(dir, &e) < 0)
		log_warn("%s: written and renamed into place, but fsync of directory %s failed: "
			 "%s; the change is applied, its survival of a power loss is not certain",
			 path, dir, strerror(e));
	free(dir);
	free(tmp);
	return 0;
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
