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
sector_t bow_bio_sector(const struct bio *bio);
unsigned int bow_bio_size(const struct bio *bio);
void bow_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector);
void bow_bio_endio(struct bio *bio, int errno_value);
unsigned long *bow_bio_tag(struct bio *bio);

/* operation codes, as plain numbers */
extern const unsigned int BOW_OPEN_RW;
extern const unsigned int BOW_OP_READ;
extern const unsigned int BOW_OP_WRITE;
extern const unsigned int BOW_OP_FLUSH;
extern const unsigned int BOW_OP_DISCARD;
extern const unsigned int BOW_OP_WRITE_ZEROES;

/* block devices */
unsigned int bow_bdev_logical_block_size(struct block_device *bdev);
bool bow_bdev_read_only(struct block_device *bdev);
dev_t bow_bdev_devt(struct block_device *bdev);
bool bow_bdev_discard_supported(struct block_device *bdev);

/* dm_target fields that are bitfields, and table facts */
void bow_ti_setup(struct dm_target *ti, unsigned int num_discard_bios,
		  bool discards_supported);
bool bow_ti_table_writable(struct dm_target *ti);
sector_t bow_ti_begin(struct dm_target *ti);
sector_t bow_ti_len(struct dm_target *ti);
struct block_device *bow_dm_dev_bdev(struct dm_dev *dev);

void bow_limits_set_block_size(struct queue_limits *limits, unsigned int bs);

/* synchronous I/O through dm-io, on a kmalloc'ed buffer */
struct dm_io_client;
extern const unsigned int BOW_IO_READ;
extern const unsigned int BOW_IO_WRITE;
extern const unsigned int BOW_IO_WRITE_FLUSH_FUA;
int bow_io_sync(struct dm_io_client *client, struct block_device *bdev,
		sector_t sector, void *buf, unsigned int len, unsigned int opf);

/*
 * Asynchronous I/O through dm-io, waited for as a set: each request counts
 * itself in @batch and its completion wakes the waiter when it is the last.
 * @buf is kmalloc'ed or vmalloc'ed memory.
 */
struct bow_io_batch;
struct bow_io_batch *bow_io_batch_create(void);
void bow_io_batch_destroy(struct bow_io_batch *batch);
int bow_io_async(struct bow_io_batch *batch, struct dm_io_client *client,
		 struct block_device *bdev, sector_t sector, void *buf,
		 unsigned int len, unsigned int opf);
int bow_io_batch_wait(struct bow_io_batch *batch);

/* GFP_NOIO scopes for code that allocates on the I/O path */
unsigned int bow_noio_save(void);
void bow_noio_restore(unsigned int flags);

/* bios the target holds on to */
void bow_bio_submit_remapped(struct bio *bio, struct block_device *bdev, sector_t sector);
void bow_bio_accept_partial(struct bio *bio, unsigned int sectors);
void bow_bio_set_next(struct bio *bio, struct bio *next);
struct bio *bow_bio_next(const struct bio *bio);

/*
 * The bow/ sysfs directory under the dm disk. Its show/store callbacks go to
 * @show/@store with the owner pointer given at creation and the file's name.
 */
struct bow_sysfs;
typedef ssize_t (*bow_sysfs_show_fn)(const void *owner, const char *attr, char *buf);
typedef ssize_t (*bow_sysfs_store_fn)(const void *owner, const char *attr,
				      const char *buf, size_t len);
struct bow_sysfs *bow_sysfs_create(struct dm_target *ti, const void *owner,
				   bow_sysfs_show_fn show, bow_sysfs_store_fn store);
void bow_sysfs_destroy(struct bow_sysfs *s);

/* in-flight counters, decremented from bio completion (any context) */
void bow_inflight_dec(atomic_long_t *v);
void bow_inflight_wait_zero(atomic_long_t *v);

/*
 * Work deferred to the flush of the submitting task's block plug, so a batch
 * of bios (one io_submit, one writeback pass) reaches the workers at once.
 * bow_plug_defer returns 0 when the task has no plug (or no memory: act now),
 * 1 when @fn is newly armed for @owner on this plug, 2 when it already was.
 * @fn(@owner) then runs once, from the plug flush (possibly from schedule(),
 * so it must not sleep).
 */
int bow_plug_defer(const void *owner, void (*fn)(const void *owner));

/*
 * device-mapper's release for kobjects embedded in a dm_kobject_holder
 * (exported, but declared only in drivers/md/dm-core.h, which is not a
 * public header)
 */
struct kobject;
void dm_kobject_release(struct kobject *kobj);

/* KUnit */
void bow_kunit_fail(struct kunit *test, const char *msg);

/* the KUnit cases, defined in Rust (kunit_cases.rs), listed in kunit.c */
void bow_kunit_crc_matches_kernel(struct kunit *test);
void bow_kunit_table_grammar(struct kunit *test);
void bow_kunit_log_block_roundtrip(struct kunit *test);
void bow_kunit_state_machine(struct kunit *test);
void bow_kunit_status_buffer(struct kunit *test);
void bow_kunit_range_tree_walk(struct kunit *test);

#endif
