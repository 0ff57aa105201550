// SPDX-License-Identifier: GPL-2.0
/*
 * Wrappers of the static inline helpers, bitfields and macros dm-bow needs.
 * Each is one line of C so that all the policy stays in Rust.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <kunit/test.h>
#include "glue.h"

unsigned int bow_bio_op(const struct bio *bio) { return bio_op(bio); }
bool bow_bio_is_preflush(const struct bio *bio) { return bio->bi_opf & REQ_PREFLUSH; }
bool bow_bio_is_fua(const struct bio *bio) { return bio->bi_opf & REQ_FUA; }
sector_t bow_bio_sector(const struct bio *bio) { return bio->bi_iter.bi_sector; }
unsigned int bow_bio_size(const struct bio *bio) { return bio->bi_iter.bi_size; }

void bow_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector)
{
	bio_set_dev(bio, bdev);
	bio->bi_iter.bi_sector = sector;
}

void bow_bio_endio(struct bio *bio, int errno_value)
{
	bio->bi_status = errno_to_blk_status(errno_value);
	bio_endio(bio);
}

const unsigned int BOW_OP_READ = REQ_OP_READ;
const unsigned int BOW_OP_WRITE = REQ_OP_WRITE;
const unsigned int BOW_OP_FLUSH = REQ_OP_FLUSH;
const unsigned int BOW_OP_DISCARD = REQ_OP_DISCARD;
const unsigned int BOW_OP_WRITE_ZEROES = REQ_OP_WRITE_ZEROES;

unsigned int bow_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}
sector_t bow_bdev_nr_sectors(struct block_device *bdev) { return bdev_nr_sectors(bdev); }
bool bow_bdev_read_only(struct block_device *bdev) { return bdev_read_only(bdev); }
bool bow_bdev_discard_supported(struct block_device *bdev)
{
	return bdev_max_discard_sectors(bdev) > 0;
}

void bow_ti_setup(struct dm_target *ti, unsigned int num_discard_bios,
		  bool discards_supported)
{
	ti->num_flush_bios = 1;
	ti->num_discard_bios = num_discard_bios;
	ti->discards_supported = discards_supported;
}

bool bow_ti_table_writable(struct dm_target *ti)
{
	return dm_table_get_mode(ti->table) & BLK_OPEN_WRITE;
}
sector_t bow_ti_begin(struct dm_target *ti) { return ti->begin; }
sector_t bow_ti_len(struct dm_target *ti) { return ti->len; }
struct block_device *bow_dm_dev_bdev(struct dm_dev *dev) { return dev->bdev; }

void bow_limits_set_block_size(struct queue_limits *limits, unsigned int bs)
{
	limits->logical_block_size = bs;
	limits->physical_block_size = bs;
	limits->io_min = bs;
	limits->discard_granularity = bs;
}

void bow_kunit_fail(struct kunit *test, const char *msg)
{
	KUNIT_FAIL(test, "%s", msg);
}
