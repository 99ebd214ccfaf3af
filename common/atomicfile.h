/*
 * atomicfile.h - replace a file so that a crash at any moment leaves the
 * old or the new version, never a torn one: write PATH.tmp, fsync it,
 * rename it over PATH, fsync the directory (without which the rename itself
 * may not survive a power loss). The one way lbd persists anything: runtime
 * edits, gate leases, the upgrade journal.
 */
#ifndef LBD_ATOMICFILE_H
#define LBD_ATOMICFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Returns 0 once the new version is in place, or -1 with *err ("PATH.tmp:
 * step: reason", caller frees) and *err_no (errno of the failed step, e.g.
 * ENOSPC; err_no may be NULL).
 * The rename is the commit point. A failure before it removes the temp file
 * and leaves PATH as it was: -1, nothing changed. After it, the write has
 * happened (PATH holds the new version and the next start reads it), so the
 * call returns 0 even if the directory fsync fails: that fsync is retried
 * once, then the doubt about surviving a power loss is logged (warn). A
 * caller therefore never answers "failed" for a change that is on disk. */
int atomic_write_file(const char *path, const void *data, size_t len, mode_t mode, char **err,
		      int *err_no);

/* The directory fsync, for tests to make it fail; production code never
 * sets it. */
extern int (*atomicfile_fsync_dir)(int fd);

#endif
