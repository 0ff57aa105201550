// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite of dm-bow. The cases are written in Rust (kunit_cases.rs) and
 * run the module's own code inside the kernel; this file only lists them.
 */
#include <kunit/test.h>
#include "glue.h"

static struct kunit_case bow_kunit_cases[] = {
	KUNIT_CASE(bow_kunit_crc_matches_kernel),
	KUNIT_CASE(bow_kunit_table_grammar),
	KUNIT_CASE(bow_kunit_log_block_roundtrip),
	KUNIT_CASE(bow_kunit_state_machine),
	KUNIT_CASE(bow_kunit_status_buffer),
	KUNIT_CASE(bow_kunit_range_tree_walk),
	{}
};

static struct kunit_suite bow_kunit_suite = {
	.name = "dm-bow",
	.test_cases = bow_kunit_cases,
};
kunit_test_suite(bow_kunit_suite);
