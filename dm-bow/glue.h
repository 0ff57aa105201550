/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers for dm-bow: wrappers of static inline functions, bitfields and
 * macros that bindgen cannot turn into Rust. Nothing here makes decisions.
 */
#ifndef DM_BOW_GLUE_H
#define DM_BOW_GLUE_H

#include <linux/types.h>
#include <linux/blk_types.h>

struct bio;
struct block_device;
struct dm_target;
struct dm_dev;
struct queue_limits;
struct kunit;

/* bio accessors */
unsigned int bow_bio_op(const struct bio *bio);
bool bow_bio_is_preflush(const struct bio *bio);
bool bow_bio_is_fua(const struct bio *bio);
sector_t bow_bio_sector(const struct bio *bio);
unsigned int bow_bio_size(const struct bio *bio);
void bow_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector);
void bow_bio_endio(struct bio *bio, int errno_value);

/* operation codes, as plain numbers */
extern const unsigned int BOW_OP_READ;
extern const unsigned int BOW_OP_WRITE;
extern const unsigned int BOW_OP_FLUSH;
extern const unsigned int BOW_OP_DISCARD;
extern const unsigned int BOW_OP_WRITE_ZEROES;

/* block devices */
unsigned int bow_bdev_logical_block_size(struct block_device *bdev);
sector_t bow_bdev_nr_sectors(struct block_device *bdev);
bool bow_bdev_read_only(struct block_device *bdev);
bool bow_bdev_discard_supported(struct block_device *bdev);

/* dm_target fields that are bitfields, and table facts */
void bow_ti_setup(struct dm_target *ti, unsigned int num_discard_bios,
		  bool discards_supported);
bool bow_ti_table_writable(struct dm_target *ti);
sector_t bow_ti_begin(struct dm_target *ti);
sector_t bow_ti_len(struct dm_target *ti);
struct block_device *bow_dm_dev_bdev(struct dm_dev *dev);

void bow_limits_set_block_size(struct queue_limits *limits, unsigned int bs);

/* KUnit */
void bow_kunit_fail(struct kunit *test, const char *msg);

#endif
