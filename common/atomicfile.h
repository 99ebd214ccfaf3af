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

/* Returns 0, or -1 with *err ("PATH: step: reason", caller frees) and
 * *err_no (errno of the failed step, e.g. ENOSPC; err_no may be NULL).
 * A failure before the rename removes the temp file and leaves PATH as it
 * was; a failed directory fsync comes after the rename (the new version is
 * in place, its durability is in doubt) and is reported all the same. */
int atomic_write_file(const char *path, const void *data, size_t len, mode_t mode, char **err,
		      int *err_no);

#endif
