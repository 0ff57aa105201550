// SPDX-License-Identifier: GPL-2.0
/*
 * Wrappers of the static inline helpers, bitfields and macros dm-bow needs.
 * Each is one line of C so that all the policy stays in Rust.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/kobject.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/wait_bit.h>
#include <kunit/test.h>
#include "glue.h"

unsigned int bow_bio_op(const struct bio *bio) { return bio_op(bio); }
sector_t bow_bio_sector(const struct bio *bio) { return bio->bi_iter.bi_sector; }
unsigned int bow_bio_size(const struct bio *bio) { return bio->bi_iter.bi_size; }

void bow_bio_remap(struct bio *bio, struct block_device *bdev, sector_t sector)
{
	bio_set_dev(bio, bdev);
	bio->bi_iter.bi_sector = sector;
}

/* Per-bio data: one word the target uses as a tag (see bow_ti_setup). */
unsigned long *bow_bio_tag(struct bio *bio)
{
	return dm_per_bio_data(bio, sizeof(unsigned long));
}

void bow_bio_endio(struct bio *bio, int errno_value)
{
	bio->bi_status = errno_to_blk_status(errno_value);
	bio_endio(bio);
}

const unsigned int BOW_OPEN_RW = (__force unsigned int)(BLK_OPEN_READ | BLK_OPEN_WRITE);
const unsigned int BOW_OP_READ = REQ_OP_READ;
const unsigned int BOW_OP_WRITE = REQ_OP_WRITE;
const unsigned int BOW_OP_FLUSH = REQ_OP_FLUSH;
const unsigned int BOW_OP_DISCARD = REQ_OP_DISCARD;
const unsigned int BOW_OP_WRITE_ZEROES = REQ_OP_WRITE_ZEROES;

unsigned int bow_bdev_logical_block_size(struct block_device *bdev)
{
	return bdev_logical_block_size(bdev);
}
bool bow_bdev_read_only(struct block_device *bdev) { return bdev_read_only(bdev); }
dev_t bow_bdev_devt(struct block_device *bdev) { return bdev->bd_dev; }
bool bow_bdev_discard_supported(struct block_device *bdev)
{
	return bdev_max_discard_sectors(bdev) > 0;
}

void bow_ti_setup(struct dm_target *ti, unsigned int num_discard_bios,
		  bool discards_supported)
{
	ti->num_flush_bios = 1;
	ti->per_io_data_size = sizeof(unsigned long);
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
	/*
	 * State 0 records discards without passing them down, so the target
	 * takes them even when the device below does not (a committed target
	 * completes them there without passing them down).
	 */
	limits->max_hw_discard_sectors = round_down(UINT_MAX >> SECTOR_SHIFT, bs >> SECTOR_SHIFT);
}

const unsigned int BOW_IO_READ = REQ_OP_READ | REQ_SYNC;
const unsigned int BOW_IO_WRITE = REQ_OP_WRITE | REQ_SYNC;
const unsigned int BOW_IO_WRITE_FLUSH_FUA = REQ_OP_WRITE | REQ_SYNC | REQ_PREFLUSH | REQ_FUA;

/*
 * One dm_io request on @buf, kmalloc'ed or vmalloc'ed memory: synchronous
 * when @fn is NULL (errors in @error_bits), else completed through @fn.
 */
static int bow_dm_io(struct dm_io_client *client, struct block_device *bdev,
		     sector_t sector, void *buf, unsigned int len, unsigned int opf,
		     io_notify_fn fn, void *context, unsigned long *error_bits)
{
	struct dm_io_region where = {
		.bdev = bdev,
		.sector = sector,
		.count = len >> SECTOR_SHIFT,
	};
	struct dm_io_request req = {
		.bi_opf = (__force blk_opf_t)opf,
		.client = client,
		.notify.fn = fn,
		.notify.context = context,
	};

	if (is_vmalloc_addr(buf)) {
		req.mem.type = DM_IO_VMA;
		req.mem.ptr.vma = buf;
	} else {
		req.mem.type = DM_IO_KMEM;
		req.mem.ptr.addr = buf;
	}
	return dm_io(&req, 1, &where, error_bits, IOPRIO_DEFAULT);
}

int bow_io_sync(struct dm_io_client *client, struct block_device *bdev,
		sector_t sector, void *buf, unsigned int len, unsigned int opf)
{
	unsigned long error_bits = 0;
	int r = bow_dm_io(client, bdev, sector, buf, len, opf, NULL, NULL, &error_bits);

	if (!r && error_bits)
		r = -EIO;
	return r;
}

struct bow_io_batch {
	atomic_t pending;	/* requests in flight, plus one while submitting */
	atomic_t error;		/* first error seen, or 0 */
	struct completion done;
};

struct bow_io_batch *bow_io_batch_create(void)
{
	struct bow_io_batch *b = kmalloc(sizeof(*b), GFP_KERNEL);

	if (!b)
		return NULL;
	atomic_set(&b->pending, 1);
	atomic_set(&b->error, 0);
	init_completion(&b->done);
	return b;
}

void bow_io_batch_destroy(struct bow_io_batch *batch)
{
	kfree(batch);
}

static void bow_io_batch_notify(unsigned long error_bits, void *context)
{
	struct bow_io_batch *b = context;

	if (error_bits)
		atomic_cmpxchg(&b->error, 0, -EIO);
	if (atomic_dec_and_test(&b->pending))
		complete(&b->done);
}

int bow_io_async(struct bow_io_batch *batch, struct dm_io_client *client,
		 struct block_device *bdev, sector_t sector, void *buf,
		 unsigned int len, unsigned int opf)
{
	int r;

	atomic_inc(&batch->pending);
	r = bow_dm_io(client, bdev, sector, buf, len, opf, bow_io_batch_notify, batch, NULL);
	if (r)
		atomic_dec(&batch->pending);	/* not sent: no notify comes */
	return r;
}

int bow_io_batch_wait(struct bow_io_batch *batch)
{
	int r;

	if (!atomic_dec_and_test(&batch->pending))
		wait_for_completion_io(&batch->done);
	r = atomic_xchg(&batch->error, 0);
	/* Ready for the next set. */
	reinit_completion(&batch->done);
	atomic_set(&batch->pending, 1);
	return r;
}

unsigned int bow_noio_save(void) { return memalloc_noio_save(); }
void bow_noio_restore(unsigned int flags) { memalloc_noio_restore(flags); }

void bow_bio_submit_remapped(struct bio *bio, struct block_device *bdev, sector_t sector)
{
	bow_bio_remap(bio, bdev, sector);
	dm_submit_bio_remap(bio, NULL);
}
void bow_bio_accept_partial(struct bio *bio, unsigned int sectors)
{
	dm_accept_partial_bio(bio, sectors);
}
void bow_bio_set_next(struct bio *bio, struct bio *next) { bio->bi_next = next; }
struct bio *bow_bio_next(const struct bio *bio) { return bio->bi_next; }

/* Layout-compatible with device-mapper's private struct dm_kobject_holder. */
struct bow_kobject_holder {
	struct kobject kobj;
	struct completion completion;
};

struct bow_sysfs {
	struct bow_kobject_holder holder;
	const void *owner;
	bow_sysfs_show_fn show;
	bow_sysfs_store_fn store;
};

static struct bow_sysfs *bow_sysfs_of(struct kobject *kobj)
{
	return container_of(kobj, struct bow_sysfs, holder.kobj);
}

static ssize_t bow_attr_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct bow_sysfs *s = bow_sysfs_of(kobj);

	return s->show(s->owner, attr->attr.name, buf);
}

static ssize_t bow_attr_store(struct kobject *kobj, struct kobj_attribute *attr,
			      const char *buf, size_t count)
{
	struct bow_sysfs *s = bow_sysfs_of(kobj);

	return s->store(s->owner, attr->attr.name, buf, count);
}

static struct kobj_attribute bow_attr_state = __ATTR(state, 0644, bow_attr_show, bow_attr_store);
static struct kobj_attribute bow_attr_free = __ATTR(free, 0444, bow_attr_show, NULL);

static struct attribute *bow_attrs[] = {
	&bow_attr_state.attr,
	&bow_attr_free.attr,
	NULL,
};
ATTRIBUTE_GROUPS(bow);

static const struct kobj_type bow_ktype = {
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = bow_groups,
	.release = dm_kobject_release,
};

struct bow_sysfs *bow_sysfs_create(struct dm_target *ti, const void *owner,
				   bow_sysfs_show_fn show, bow_sysfs_store_fn store)
{
	struct mapped_device *md = dm_table_get_md(ti->table);
	struct bow_sysfs *s = kzalloc(sizeof(*s), GFP_KERNEL);
	int r;

	if (!s)
		return ERR_PTR(-ENOMEM);
	s->owner = owner;
	s->show = show;
	s->store = store;
	init_completion(&s->holder.completion);
	r = kobject_init_and_add(&s->holder.kobj, &bow_ktype,
				 &disk_to_dev(dm_disk(md))->kobj, "%s", "bow");
	if (r) {
		kobject_put(&s->holder.kobj);
		wait_for_completion(&s->holder.completion);
		kfree(s);
		return ERR_PTR(r);
	}
	return s;
}

void bow_sysfs_destroy(struct bow_sysfs *s)
{
	if (IS_ERR_OR_NULL(s))
		return;
	kobject_put(&s->holder.kobj);
	/* dm_kobject_release completes this once the last sysfs user is gone. */
	wait_for_completion(&s->holder.completion);
	kfree(s);
}

void bow_inflight_dec(atomic_long_t *v)
{
	if (atomic_long_dec_and_test(v))
		wake_up_var(v);
}

void bow_inflight_wait_zero(atomic_long_t *v)
{
	wait_var_event(v, atomic_long_read(v) == 0);
}

struct bow_plug {
	struct blk_plug_cb cb;
	void (*fn)(const void *owner);
};

static void bow_unplug(struct blk_plug_cb *cb, bool from_schedule)
{
	struct bow_plug *p = container_of(cb, struct bow_plug, cb);
	void (*fn)(const void *owner) = p->fn;
	const void *owner = cb->data;

	/* The flush has unlinked @cb already; it is ours to free. */
	kfree(p);
	if (fn)
		fn(owner);
}

int bow_plug_defer(const void *owner, void (*fn)(const void *owner))
{
	struct blk_plug_cb *cb;
	struct bow_plug *p;

	cb = blk_check_plugged(bow_unplug, (void *)owner, sizeof(*p));
	if (!cb)
		return 0;
	p = container_of(cb, struct bow_plug, cb);
	if (p->fn)
		return 2;
	p->fn = fn;
	return 1;
}

void bow_kunit_fail(struct kunit *test, const char *msg)
{
	KUNIT_FAIL(test, "%s", msg);
}
