/* unit.h - what every Check suite's main() shares: run, report, exit code. */
#ifndef LBD_TEST_UNIT_H
#define LBD_TEST_UNIT_H

#include <check.h>

/* Runs s (fork mode, as CK_FORK says), prints Check's summary, returns the
 * exit status: 0 if every test passed. */
static inline int unit_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

#endif
