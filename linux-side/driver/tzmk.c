// SPDX-License-Identifier: GPL-2.0
/*
 * tzmk: the normal world's driver of tzmk's communication ports (/dev/tzmk/<port>).
 *
 * The secure world (comm-pd under seL4, on its own core) publishes a port directory and a control
 * mailbox in the shared region port_ctrl, and one ring per direction per port in port_rx and
 * port_tx (pds/interface/src/port.rs, pds/ring/src/lib.rs). This driver is the normal world's
 * end: the producer of each port's rx ring, the consumer of its tx ring, the only user of the
 * mailbox. It kicks the secure world with the EL3 monitor's NOTIFY_SECURE SiP call (SMCCC 1.1,
 * Arm DEN 0028) and hears it through the doorbell interrupt of the DT node "tzmk,ports".
 *
 * Everything read from shared memory is an allegation: every index and record is copied once and
 * checked exactly as pds/ring checks it, and a broken ring is -EPIPE, never an access outside the
 * ring. Every number of the wire format comes from tzmk_abi.h, which build.mk generates from the
 * Rust definitions (tzmk-abi-header); none is restated here.
 *
 * Modelled on drivers/tee/optee (SMCCC probing, asynchronous notification) and rpmsg_char (one
 * character device per endpoint, whole messages per read and write).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/arm-smccc.h>
#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/cdev.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/kref.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/of_reserved_mem.h>
#include <linux/percpu.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <asm/cputype.h>

#include "tzmk_abi.h"
#include "tzmk_firmware.h"

/* How long a control request may take (as tzcomm's CONTROL_TIMEOUT). */
#define TZMK_CONTROL_TIMEOUT (5 * HZ)
/* A control waiter looks at the reply slot at least this often, doorbell or not. */
#define TZMK_CONTROL_POLL (HZ / 50)
/* A blocked read or write re-checks its ring and the directory this often. */
#define TZMK_RECHECK (HZ / 2)
/* Attempts at a consistent copy of a block under a sequence lock. */
#define TZMK_SNAPSHOT_TRIES 1000
/* Rounds of TZMK_SNAPSHOT_TRIES, a short sleep apart, before a directory read gives up (~50 ms). */
#define TZMK_SNAPSHOT_ROUNDS 100
/* How long probe waits for the secure world's first directory. */
#define TZMK_DIRECTORY_WAIT_MS 2000

/* Region indices, in the order of the binding's memory-region-names. */
enum tzmk_region { TZMK_CTRL, TZMK_RX, TZMK_TX, TZMK_REGIONS };
static const char *const tzmk_region_names[TZMK_REGIONS] = { "port_ctrl", "port_rx", "port_tx" };

struct tzmk_region_map {
	void *base;
	phys_addr_t phys;
	size_t size;
};

/* The normal world's producing end of a port's rx ring (pds/ring's Producer). */
struct tzmk_producer {
	u8 *base;
	u32 capacity;
	u32 producer;
	/* The consumer index last seen, to refuse it moving backwards. */
	u32 consumer_seen;
	/* The index last made visible to the consumer. */
	u32 published;
};

/* The normal world's consuming end of a port's tx ring (pds/ring's Consumer). */
struct tzmk_consumer {
	u8 *base;
	u32 capacity;
	u32 consumer;
	/* The producer index last seen, to refuse it moving backwards. */
	u32 producer_seen;
};

struct tzmk_device;

/*
 * One control request on its way through the control worker (tzmk_control_work), which alone
 * uses the mailbox, one request at a time, in the order they were queued. Its caller waits
 * killably for it and may give up (`abandoned`); the worker then finishes it alone, and ends the
 * session of an open nobody waits for any more. Two references: the caller's and the worker's.
 */
struct tzmk_control_call {
	struct work_struct work;
	struct kref ref;
	struct completion done;
	struct tzmk_device *tz;
	u32 operation, port, command, payload_length;
	/* Results, written by the worker before `finished`. */
	int err;
	u32 out_length, value;
	/* Under tz->control_handoff. */
	bool abandoned, finished;
	u8 payload[TZMK_MAX_CONTROL_PAYLOAD];
	u8 out[TZMK_MAX_CONTROL_MESSAGE];
};

struct tzmk_port {
	struct tzmk_device *tz;
	/* The port's index in the directory: its pending bit and reader_core slot. */
	unsigned int index;
	/* Geometry from the directory at probe, validated; the open reply must agree. */
	u16 id;
	u8 service;
	char name[TZMK_NAME_LEN + 1];
	u32 rx_offset, rx_capacity, tx_offset, tx_capacity;
	/* Page-rounded sizes of the rings (header and data): what mmap may map. */
	size_t rx_map_size, tx_map_size;

	struct cdev cdev;
	struct device *device;
	wait_queue_head_t wait;
	/* Doorbells that woke this port: a waiter sleeps until it changes. */
	atomic_t events;
	/* Per CPU: doorbells aimed at that CPU's core that woke this port there. */
	unsigned long __percpu *doorbells;
	/* Per CPU: doorbells that woke this port there, aimed at another core or at none. */
	unsigned long __percpu *doorbells_other;

	/* Bit 0: the port is open (exclusive). */
	unsigned long busy;
	/* The open's session; valid while busy. */
	u32 session;
	/* A ring was found broken or revoked: every read and write fails from now on. */
	bool broken;
	/* User space has mapped a ring: re-attach at the indices found before every use. */
	bool mapped;
	/* rx_lock: the producer (write, poll's EPOLLOUT); tx_lock: the consumer (read, EPOLLIN). */
	struct mutex rx_lock, tx_lock;
	/*
	 * At most one control call or status of this port's file queued at a time, however many
	 * threads share the file: one file cannot fill the control queue ahead of the others.
	 */
	struct mutex call_lock;
	/* The close that release queues (allocated at open: release cannot fail or wait). */
	struct tzmk_control_call *close;
	struct tzmk_producer rx;
	struct tzmk_consumer tx;
};

struct tzmk_device {
	struct device *dev;
	struct tzmk_region_map region[TZMK_REGIONS];
	int irq;
	dev_t devt;
	/* Ports of the directory; the doorbell handler looks at the first `count`. */
	unsigned int count;
	/* Minors allocated (0: none). */
	unsigned int minors;
	struct tzmk_port ports[TZMK_MAX_PORTS];

	/*
	 * The control mailbox: the control worker's alone (an ordered workqueue: one request at a
	 * time, first queued first served). Callers never hold a lock across the secure side's
	 * answer, so a request the secure side is slow to answer delays only the requests queued
	 * behind it, each caller can be killed while it waits, and release never waits at all.
	 */
	struct workqueue_struct *control_queue;
	/* Hands a finished or abandoned request between the worker and its caller. */
	spinlock_t control_handoff;
	wait_queue_head_t control_wait;
	atomic_t control_events;
	u32 sequence;
	/* Private copies of a request and a reply: the worker's. */
	u8 request[TZMK_MAX_CONTROL_MESSAGE];
	u8 reply[TZMK_MAX_CONTROL_MESSAGE];

	/*
	 * The counter just before the latest NOTIFY_SECURE and as the latest doorbell was taken,
	 * and the kicks made: with comm-pd's stamps in port_ctrl, the sysfs `stamps` attribute
	 * (docs/system-bench.md). Hints, written without ordering.
	 */
	atomic64_t kick_smc, doorbell_taken, kicks;
};

static struct class *tzmk_class;

/* ---- Shared words -------------------------------------------------------------------------- */

static u32 *tzmk_word32(void *base, size_t offset)
{
	return (u32 *)((u8 *)base + offset);
}

static u64 *tzmk_word64(void *base, size_t offset)
{
	return (u64 *)((u8 *)base + offset);
}

/*
 * The spin hint (TZMK_SPIN_HINT_OFFSET): how long comm-pd may look for more messages before it
 * sleeps, in microseconds; -1 leaves comm-pd's own window, and comm-pd never spins longer than
 * that whatever this says. Writable at run time (/sys/module/tzmk/parameters/secure_spin_us).
 */
static int secure_spin_us = -1;
static DEFINE_MUTEX(tzmk_bound_lock);
/* The bound device, for the parameter's setter; under tzmk_bound_lock. */
static struct tzmk_device *tzmk_bound;

static void tzmk_write_spin_hint(struct tzmk_device *tz, int micros)
{
	u32 *word = tzmk_word32(tz->region[TZMK_CTRL].base, TZMK_SPIN_HINT_OFFSET);

	WRITE_ONCE(*word, micros < 0 ? TZMK_SPIN_DEFAULT : (u32)micros);
}

static int tzmk_set_spin(const char *value, const struct kernel_param *kp)
{
	int micros, err = kstrtoint(value, 0, &micros);

	if (err)
		return err;
	if (micros < -1)
		return -EINVAL;
	mutex_lock(&tzmk_bound_lock);
	secure_spin_us = micros;
	if (tzmk_bound)
		tzmk_write_spin_hint(tzmk_bound, micros);
	mutex_unlock(&tzmk_bound_lock);
	return 0;
}

static const struct kernel_param_ops tzmk_spin_ops = {
	.set = tzmk_set_spin,
	.get = param_get_int,
};
module_param_cb(secure_spin_us, &tzmk_spin_ops, &secure_spin_us, 0644);
MODULE_PARM_DESC(secure_spin_us, "how long comm-pd may spin for more messages, us (-1: its own window, the most)");

/* Kicks the secure world; the counter just before the SMC is the system bench's "kick smc". */
static void tzmk_notify_secure(struct tzmk_device *tz, unsigned int port)
{
	atomic64_set(&tz->kick_smc, tzmk_fw_counter());
	atomic64_inc(&tz->kicks);
	tzmk_fw_notify_secure(port);
}

/*
 * Copies `length` bytes at `offset` of port_ctrl, published under the sequence word at
 * `sequence` (odd while the secure side writes). 0, or -EAGAIN when no consistent copy was had.
 */
static int tzmk_snapshot(struct tzmk_device *tz, size_t sequence, size_t offset, void *out, size_t length)
{
	u64 *word = tzmk_word64(tz->region[TZMK_CTRL].base, sequence);
	int i;

	for (i = 0; i < TZMK_SNAPSHOT_TRIES; i++) {
		u64 before = smp_load_acquire(word);

		memcpy(out, (u8 *)tz->region[TZMK_CTRL].base + offset, length);
		smp_rmb();
		if (!(before & 1) && READ_ONCE(*word) == before)
			return 0;
		cpu_relax();
	}
	return -EAGAIN;
}

/*
 * The directory's entry of `port` now; 0 or -EAGAIN. Sleeps between rounds of tries (callers are
 * all in process context): comm-pd republishes the directory whenever a port opens, closes or is
 * reset, and on QEMU TCG it can be descheduled for milliseconds in the middle of a publication
 * (rt-task preempts it, or its budget runs out), which a busy loop of a thousand tries does not
 * outlast: under a storm of resets of one port, every other port's open read as closed.
 */
static int tzmk_directory_snapshot(struct tzmk_device *tz, size_t offset, void *out, size_t length)
{
	int round;

	for (round = 0; round < TZMK_SNAPSHOT_ROUNDS; round++) {
		if (!tzmk_snapshot(tz, TZMK_DIRECTORY_SEQUENCE_OFFSET, offset, out, length))
			return 0;
		usleep_range(200, 500);
	}
	return -EAGAIN;
}

static int tzmk_entry_now(struct tzmk_port *port, struct tzmk_port_entry *entry)
{
	size_t offset = TZMK_DIRECTORY_OFFSET + offsetof(struct tzmk_directory, ports) +
			port->index * sizeof(*entry);

	return tzmk_directory_snapshot(port->tz, offset, entry, sizeof(*entry));
}

/*
 * 0, or -EPIPE when the directory says the port is no longer this open's (closed, reset,
 * reopened). A directory that cannot be read now says nothing: 0 (the rings' own checks and the
 * secure side's revocation still catch a reset).
 */
static int tzmk_port_check(struct tzmk_port *port)
{
	struct tzmk_port_entry entry;

	if (tzmk_entry_now(port, &entry))
		return 0;
	if (entry.id != port->id || entry.state != TZMK_PORT_OPEN || entry.session != port->session)
		return -EPIPE;
	return 0;
}

/* ---- The ring, as pds/ring speaks it -------------------------------------------------------- */

static u32 tzmk_padded(u32 length)
{
	return (length + 7) & ~7U;
}

static u32 tzmk_max_message(u32 capacity)
{
	return TZMK_RING_MAX_MESSAGE(capacity);
}

/* A record header: length in the low word, reserved in the high one (little-endian). */
static void tzmk_write_header(u8 *data, u32 at, u32 length)
{
	WRITE_ONCE(*(u64 *)(data + at), (u64)length);
}

static void tzmk_read_header(const u8 *data, u32 at, u32 *length, u32 *reserved)
{
	u64 header = READ_ONCE(*(const u64 *)(data + at));

	*length = lower_32_bits(header);
	*reserved = upper_32_bits(header);
}

/* Producer::attach: at the indices found, checked. */
static int tzmk_producer_attach(struct tzmk_producer *p, u8 *base, u32 capacity)
{
	u32 producer = smp_load_acquire(tzmk_word32(base, TZMK_RING_PRODUCER_OFFSET));
	u32 consumer = smp_load_acquire(tzmk_word32(base, TZMK_RING_CONSUMER_OFFSET));

	if (producer - consumer > capacity || producer % TZMK_RING_RECORD_HEADER)
		return -EPIPE;
	p->base = base;
	p->capacity = capacity;
	p->producer = producer;
	p->consumer_seen = consumer;
	p->published = producer;
	return 0;
}

/* The consumer's index, checked: at most a capacity behind ours and never backwards. */
static int tzmk_producer_consumer(struct tzmk_producer *p, u32 *consumer_out)
{
	u32 consumer = smp_load_acquire(tzmk_word32(p->base, TZMK_RING_CONSUMER_OFFSET));

	if (p->producer - consumer > p->capacity)
		return -EPIPE;
	if (consumer - p->consumer_seen > p->producer - p->consumer_seen)
		return -EPIPE;
	p->consumer_seen = consumer;
	*consumer_out = consumer;
	return 0;
}

/* Ring bytes a message of `length` bytes takes at the current position, pad included. */
static u32 tzmk_needed(const struct tzmk_producer *p, u32 length)
{
	u32 record = TZMK_RING_RECORD_HEADER + tzmk_padded(length);
	u32 to_end = p->capacity - (p->producer & (p->capacity - 1));

	return record <= to_end ? record : to_end + record;
}

/* 1 when a message of `length` bytes fits now, 0 when not, or -EPIPE. */
static int tzmk_producer_fits(struct tzmk_producer *p, u32 length)
{
	u32 consumer;
	int err;

	if (length > tzmk_max_message(p->capacity))
		return 0;
	err = tzmk_producer_consumer(p, &consumer);
	if (err)
		return err;
	return p->capacity - (p->producer - consumer) >= tzmk_needed(p, length);
}

/*
 * Appends one message straight from user memory: 0, -EAGAIN when it does not fit now, -EFAULT
 * (nothing appended), -EPIPE. It becomes visible at the next tzmk_producer_publish.
 */
static int tzmk_producer_send(struct tzmk_producer *p, const char __user *buf, u32 length)
{
	u32 record = TZMK_RING_RECORD_HEADER + tzmk_padded(length);
	u32 at = p->producer & (p->capacity - 1);
	u32 to_end = p->capacity - at;
	u8 *data = p->base + TZMK_RING_HEADER_SIZE;
	u32 producer = p->producer;
	int fits = tzmk_producer_fits(p, length);

	if (fits <= 0)
		return fits ? fits : -EAGAIN;
	if (record > to_end) {
		/* Records are 8-aligned, so to_end >= 8: room for the pad header. */
		tzmk_write_header(data, at, TZMK_RING_PAD);
		producer += to_end;
		at = 0;
	}
	/* at + record <= capacity: the record fits before the end of the data area. */
	if (copy_from_user(data + at + TZMK_RING_RECORD_HEADER, buf, length))
		return -EFAULT;
	tzmk_write_header(data, at, length);
	p->producer = producer + record;
	return 0;
}

/* Makes everything sent visible; true when the consumer must be notified (sDDF's rule). */
static bool tzmk_producer_publish(struct tzmk_producer *p)
{
	u32 *signalled = tzmk_word32(p->base, TZMK_RING_SIGNALLED_OFFSET);

	if (p->published == p->producer)
		return false;
	p->published = p->producer;
	smp_store_release(tzmk_word32(p->base, TZMK_RING_PRODUCER_OFFSET), p->producer);
	/* The flag is read after the index is visible (pds/ring's publish). */
	smp_mb();
	if (READ_ONCE(*signalled) == 0) {
		WRITE_ONCE(*signalled, 1);
		return true;
	}
	return false;
}

/* Before waiting for space: 1 when `length` fits meanwhile (request withdrawn), 0, or -EPIPE. */
static int tzmk_producer_request_space_signal(struct tzmk_producer *p, u32 length)
{
	u32 *waiting = tzmk_word32(p->base, TZMK_RING_PRODUCER_WAITING_OFFSET);
	int fits;

	WRITE_ONCE(*waiting, 1);
	smp_mb();
	fits = tzmk_producer_fits(p, length);
	if (fits > 0)
		WRITE_ONCE(*waiting, 0);
	return fits;
}

/* Bytes published and not consumed, checked: at most a capacity ahead and never backwards. */
static int tzmk_consumer_pending(struct tzmk_consumer *c, u32 *pending)
{
	u32 producer = smp_load_acquire(tzmk_word32(c->base, TZMK_RING_PRODUCER_OFFSET));

	if (producer - c->consumer > c->capacity)
		return -EPIPE;
	if (producer - c->consumer < c->producer_seen - c->consumer)
		return -EPIPE;
	c->producer_seen = producer;
	*pending = producer - c->consumer;
	return 0;
}

/* Consumer::attach: at the index found, checked. */
static int tzmk_consumer_attach(struct tzmk_consumer *c, u8 *base, u32 capacity)
{
	u32 consumer = smp_load_acquire(tzmk_word32(base, TZMK_RING_CONSUMER_OFFSET));
	u32 pending;

	if (consumer % TZMK_RING_RECORD_HEADER)
		return -EPIPE;
	c->base = base;
	c->capacity = capacity;
	c->consumer = consumer;
	c->producer_seen = consumer;
	return tzmk_consumer_pending(c, &pending);
}

/*
 * The next message's record, checked (pds/ring's peek without the copy): 1 with its data offset
 * and length, 0 when the ring is empty, or -EPIPE. Pads are consumed as they are seen.
 */
static int tzmk_consumer_peek(struct tzmk_consumer *c, u32 *data_at, u32 *length_out)
{
	const u8 *data = c->base + TZMK_RING_HEADER_SIZE;
	u32 capacity = c->capacity;
	u32 available, at, length, reserved, record;
	int err;

	for (;;) {
		err = tzmk_consumer_pending(c, &available);
		if (err)
			return err;
		if (available == 0)
			return 0;
		if (available < TZMK_RING_RECORD_HEADER)
			return -EPIPE;
		at = c->consumer & (capacity - 1);
		if (at % TZMK_RING_RECORD_HEADER)
			return -EPIPE;
		tzmk_read_header(data, at, &length, &reserved);
		if (length == TZMK_RING_PAD) {
			u32 to_end = capacity - at;

			if (reserved != 0 || available < to_end)
				return -EPIPE;
			c->consumer += to_end;
			continue;
		}
		if (reserved != 0)
			return -EPIPE;
		if (length > tzmk_max_message(capacity))
			return -EPIPE;
		record = TZMK_RING_RECORD_HEADER + tzmk_padded(length);
		if (record > available || record > capacity - at)
			return -EPIPE;
		*data_at = at + TZMK_RING_RECORD_HEADER;
		*length_out = length;
		return 1;
	}
}

/* Hands consumed space back; true when the producer waits for it and must be notified. */
static bool tzmk_consumer_release(struct tzmk_consumer *c)
{
	u32 *waiting = tzmk_word32(c->base, TZMK_RING_PRODUCER_WAITING_OFFSET);

	smp_store_release(tzmk_word32(c->base, TZMK_RING_CONSUMER_OFFSET), c->consumer);
	smp_mb();
	if (READ_ONCE(*waiting) != 0) {
		WRITE_ONCE(*waiting, 0);
		return true;
	}
	return false;
}

/* Before waiting for data: 1 when data arrived meanwhile (request withdrawn), 0, or -EPIPE. */
static int tzmk_consumer_request_signal(struct tzmk_consumer *c)
{
	u32 *signalled = tzmk_word32(c->base, TZMK_RING_SIGNALLED_OFFSET);
	u32 pending;
	int err;

	WRITE_ONCE(*signalled, 0);
	smp_mb();
	err = tzmk_consumer_pending(c, &pending);
	if (err)
		return err;
	if (pending > 0) {
		WRITE_ONCE(*signalled, 1);
		return 1;
	}
	return 0;
}

/* ---- The control mailbox -------------------------------------------------------------------- */

static int tzmk_control_errno(u32 error)
{
	switch (error) {
	case TZMK_CONTROL_MALFORMED:
		return -EPROTO;
	case TZMK_CONTROL_NO_SUCH_PORT:
		return -ENODEV;
	case TZMK_CONTROL_NOT_OPEN:
		return -EPIPE;
	case TZMK_CONTROL_UNKNOWN_COMMAND:
		return -EOPNOTSUPP;
	case TZMK_CONTROL_BAD_ARGUMENT:
		return -EINVAL;
	case TZMK_CONTROL_SERVICE_UNAVAILABLE:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

static bool tzmk_reply_ready(struct tzmk_device *tz, u32 sequence)
{
	u64 answer = smp_load_acquire(tzmk_word64(tz->region[TZMK_CTRL].base, TZMK_REPLY_OFFSET));

	return lower_32_bits(answer) == sequence;
}

/*
 * One exchange through the mailbox, by the control worker only: `call`'s request, its reply's
 * payload (at most TZMK_MAX_CONTROL_MESSAGE bytes kept) in call->out, its length and value. 0 or
 * a negative errno: the secure world's refusal mapped by tzmk_control_errno, -ETIMEDOUT, -EIO for
 * a reply that breaks the protocol. Waits without a signal or the load average (TASK_IDLE): the
 * worker is a kernel thread, no user process is in this wait.
 */
static int tzmk_control_exchange(struct tzmk_device *tz, struct tzmk_control_call *call)
{
	u8 *ctrl = tz->region[TZMK_CTRL].base;
	struct tzmk_request request = {
		.operation = call->operation, .port = call->port, .command = call->command,
		.length = call->payload_length,
	};
	struct tzmk_reply reply;
	unsigned long deadline;
	u32 length, sequence;
	u64 answer;

	sequence = ++tz->sequence;
	memcpy(tz->request, &request, sizeof(request));
	if (call->payload_length)
		memcpy(tz->request + sizeof(request), call->payload, call->payload_length);
	length = sizeof(request) + call->payload_length;
	/*
	 * (sequence, length 0) first: "a request being written" (docs/ports.md). comm-pd may still
	 * be copying the previous request after a timeout; the header it re-reads after its copy has
	 * then changed, and it drops the copy instead of running a torn request.
	 */
	smp_store_release(tzmk_word64(ctrl, TZMK_REQUEST_OFFSET), (u64)sequence);
	smp_wmb();
	memcpy(ctrl + TZMK_REQUEST_OFFSET + sizeof(u64), tz->request, length);
	/* The header word last: the body is complete before the secure side may look. */
	smp_store_release(tzmk_word64(ctrl, TZMK_REQUEST_OFFSET), (u64)sequence | (u64)length << 32);
	tzmk_notify_secure(tz, 0);

	deadline = jiffies + TZMK_CONTROL_TIMEOUT;
	while (!tzmk_reply_ready(tz, sequence)) {
		long left = (long)(deadline - jiffies);

		if (left <= 0) {
			dev_warn_ratelimited(tz->dev, "control request %u (operation %u) not answered within %d s\n",
					     sequence, call->operation, TZMK_CONTROL_TIMEOUT / HZ);
			return -ETIMEDOUT;
		}
		wait_event_idle_timeout(tz->control_wait, tzmk_reply_ready(tz, sequence),
					min(left, (long)TZMK_CONTROL_POLL));
	}
	answer = smp_load_acquire(tzmk_word64(ctrl, TZMK_REPLY_OFFSET));
	length = upper_32_bits(answer);
	if (length < sizeof(reply) || length > TZMK_MAX_CONTROL_MESSAGE)
		return -EIO;
	/* Copied once: everything below looks at the private copy. */
	memcpy(tz->reply, ctrl + TZMK_REPLY_OFFSET + sizeof(u64), length);
	memcpy(&reply, tz->reply, sizeof(reply));
	if (reply.length != length - sizeof(reply))
		return -EIO;
	if (reply.error)
		return tzmk_control_errno(reply.error);
	memcpy(call->out, tz->reply + sizeof(reply), reply.length);
	call->out_length = reply.length;
	call->value = reply.value;
	return 0;
}

static void tzmk_control_free(struct kref *ref)
{
	kfree(container_of(ref, struct tzmk_control_call, ref));
}

/* The control worker: one request, in queue order (tz->control_queue is ordered). */
static void tzmk_control_work(struct work_struct *work)
{
	struct tzmk_control_call *call = container_of(work, struct tzmk_control_call, work);
	struct tzmk_device *tz = call->tz;
	bool abandoned;
	int err;

	err = tzmk_control_exchange(tz, call);
	spin_lock(&tz->control_handoff);
	call->err = err;
	call->finished = true;
	abandoned = call->abandoned;
	spin_unlock(&tz->control_handoff);
	if (abandoned && call->operation == TZMK_OP_OPEN_ID && !err) {
		/* Its opener was killed while it waited: end the session nobody will hold. */
		call->operation = TZMK_OP_CLOSE;
		call->command = call->value;
		call->payload_length = 0;
		tzmk_control_exchange(tz, call);
	}
	complete(&call->done);
	kref_put(&call->ref, tzmk_control_free);
}

/* A request ready to queue (both references held), or NULL when out of memory. */
static struct tzmk_control_call *tzmk_control_alloc(struct tzmk_device *tz, u32 operation, u32 port, u32 command)
{
	struct tzmk_control_call *call = kzalloc(sizeof(*call), GFP_KERNEL);

	if (!call)
		return NULL;
	INIT_WORK(&call->work, tzmk_control_work);
	kref_init(&call->ref);
	kref_get(&call->ref);
	init_completion(&call->done);
	call->tz = tz;
	call->operation = operation;
	call->port = port;
	call->command = command;
	return call;
}

/*
 * Queues a request nobody waits for (release's close): the worker sends it in its turn and frees
 * it. Never blocks.
 */
static void tzmk_control_post(struct tzmk_device *tz, struct tzmk_control_call *call)
{
	call->abandoned = true;
	kref_put(&call->ref, tzmk_control_free);
	queue_work(tz->control_queue, &call->work);
}

/*
 * One control request and its reply, through the control worker. The reply's payload (at most
 * `out_size` bytes are kept) is copied to `out`, its length to `*out_length`, its value to
 * `*value`. 0 or a negative errno: the secure world's refusal mapped by tzmk_control_errno,
 * -ETIMEDOUT, -EIO for a reply that breaks the protocol, -ENOMEM, or -EINTR when a fatal signal
 * ended the wait (the worker then finishes the request alone).
 */
static int tzmk_control(struct tzmk_device *tz, u32 operation, u32 port, u32 command, const void *payload,
			u32 payload_length, void *out, u32 out_size, u32 *out_length, u32 *value)
{
	struct tzmk_control_call *call;
	bool finished;
	int err;

	if (payload_length > TZMK_MAX_CONTROL_PAYLOAD)
		return -EMSGSIZE;
	call = tzmk_control_alloc(tz, operation, port, command);
	if (!call)
		return -ENOMEM;
	call->payload_length = payload_length;
	if (payload_length)
		memcpy(call->payload, payload, payload_length);
	queue_work(tz->control_queue, &call->work);
	if (wait_for_completion_killable(&call->done)) {
		spin_lock(&tz->control_handoff);
		finished = call->finished;
		if (!finished)
			call->abandoned = true;
		spin_unlock(&tz->control_handoff);
		if (!finished) {
			kref_put(&call->ref, tzmk_control_free);
			return -EINTR;
		}
		/* Finished meanwhile: its results are there (written before `finished`, under the lock). */
	}
	err = call->err;
	if (!err) {
		if (out)
			memcpy(out, call->out, min(call->out_length, out_size));
		if (out_length)
			*out_length = call->out_length;
		if (value)
			*value = call->value;
	}
	kref_put(&call->ref, tzmk_control_free);
	return err;
}

/* ---- Notification ---------------------------------------------------------------------------- */

/* Pending word `index` of port_ctrl (a core's, or TZMK_PENDING_ANY), taken: swapped with 0. */
static u64 tzmk_take_pending(struct tzmk_device *tz, unsigned int index)
{
	return xchg(tzmk_word64(tz->region[TZMK_CTRL].base, TZMK_PENDING_OFFSET + 8 * index), 0);
}

/*
 * Wakes the waiters of the ports in `pending`; counts each on this CPU in `doorbells` (aimed
 * here) or `doorbells_other` (aimed at another core, or at none).
 */
static void tzmk_wake(struct tzmk_device *tz, u64 pending, bool aimed_here)
{
	unsigned int i;

	for (i = 0; i < READ_ONCE(tz->count); i++) {
		struct tzmk_port *port = &tz->ports[i];

		if (!(pending & BIT_ULL(i)))
			continue;
		if (pending != ~0ULL && test_bit(0, &port->busy))
			this_cpu_inc(*(aimed_here ? port->doorbells : port->doorbells_other));
		atomic_inc(&port->events);
		wake_up_interruptible(&port->wait);
	}
	if (pending & TZMK_PENDING_CONTROL) {
		atomic_inc(&tz->control_events);
		wake_up(&tz->control_wait);
	}
}

/*
 * The doorbell. comm-pd puts each port's bit in the pending word of the core it aimed the
 * doorbell at (the port's reader_core), the rest in the any word. This CPU's own word first: the
 * ports whose reader waits here (counted in `doorbells`); then the any word and the other cores'
 * words: the one doorbell SPI is retargeted for every notification, so a doorbell raised for
 * another core may arrive here instead (counted in `doorbells_other`), and must not be lost.
 */
static irqreturn_t tzmk_doorbell(int irq, void *data)
{
	struct tzmk_device *tz = data;
	unsigned int core = MPIDR_AFFINITY_LEVEL(read_cpuid_mpidr(), 0);
	unsigned int index;
	u64 mine = 0, others = 0;

	atomic64_set(&tz->doorbell_taken, tzmk_fw_counter());
	if (core < TZMK_PENDING_CORES)
		mine = tzmk_take_pending(tz, core);
	for (index = 0; index <= TZMK_PENDING_ANY; index++) {
		if (index != core)
			others |= tzmk_take_pending(tz, index);
	}
	/* Nothing pending: a spurious doorbell, or a secure side that sets no bits: wake everyone. */
	if (!mine && !others)
		others = ~0ULL;
	tzmk_wake(tz, mine, true);
	tzmk_wake(tz, others == ~0ULL ? others : others & ~mine, false);
	return IRQ_HANDLED;
}

/* Aims the port's doorbell at this CPU (MPIDR affinity 0, the monitor's core numbering). */
static void tzmk_set_reader_core(struct tzmk_port *port, bool waiting)
{
	u32 *slot = tzmk_word32(port->tz->region[TZMK_CTRL].base, TZMK_READER_CORE_OFFSET) + port->index;
	u32 core = TZMK_ANY_CORE;

	if (waiting) {
		/*
		 * cpu_logical_map() is not exported to modules in 6.1; MPIDR_EL1 of the CPU we run on
		 * is the same value for this CPU. A hint only: we may migrate before we sleep.
		 */
		core = MPIDR_AFFINITY_LEVEL(read_cpuid_mpidr(), 0);
	}
	WRITE_ONCE(*slot, core);
}

/* ---- The character device ------------------------------------------------------------------- */

/* After user space mapped a ring it may have moved our indices: take them as found, checked. */
static int tzmk_reattach_rx(struct tzmk_port *port)
{
	if (port->broken)
		return -EPIPE;
	if (READ_ONCE(port->mapped) && tzmk_producer_attach(&port->rx, port->rx.base, port->rx_capacity))
		port->broken = true;
	return port->broken ? -EPIPE : 0;
}

static int tzmk_reattach_tx(struct tzmk_port *port)
{
	if (port->broken)
		return -EPIPE;
	if (READ_ONCE(port->mapped) && tzmk_consumer_attach(&port->tx, port->tx.base, port->tx_capacity))
		port->broken = true;
	return port->broken ? -EPIPE : 0;
}

static int tzmk_broken(struct tzmk_port *port)
{
	port->broken = true;
	return -EPIPE;
}

/*
 * Waits (interruptibly) for a doorbell of this port after `seen`, at most TZMK_RECHECK, then
 * re-checks the directory: 0, -ERESTARTSYS, or -EPIPE when the port is no longer this open's.
 */
static int tzmk_wait(struct tzmk_port *port, int seen)
{
	long left = wait_event_interruptible_timeout(port->wait, atomic_read(&port->events) != seen, TZMK_RECHECK);

	if (left < 0)
		return left;
	if (left == 0 && tzmk_port_check(port))
		return tzmk_broken(port);
	return 0;
}

static ssize_t tzmk_read(struct file *file, char __user *buf, size_t count, loff_t *ppos)
{
	struct tzmk_port *port = file->private_data;
	u32 at, length, before;
	ssize_t ret;
	int seen;

	for (;;) {
		if (mutex_lock_interruptible(&port->tx_lock))
			return -ERESTARTSYS;
		seen = atomic_read(&port->events);
		ret = tzmk_reattach_tx(port);
		if (ret)
			goto unlock;
		before = port->tx.consumer;
		ret = tzmk_consumer_peek(&port->tx, &at, &length);
		if (ret < 0) {
			ret = tzmk_broken(port);
			goto unlock;
		}
		if (ret > 0) {
			if (length > count) {
				ret = -EMSGSIZE;
				goto unlock;
			}
			if (copy_to_user(buf, port->tx.base + TZMK_RING_HEADER_SIZE + at, length)) {
				ret = -EFAULT;
				goto unlock;
			}
			port->tx.consumer += TZMK_RING_RECORD_HEADER + tzmk_padded(length);
			if (tzmk_consumer_release(&port->tx))
				tzmk_notify_secure(port->tz, port->index);
			ret = length;
			goto unlock;
		}
		/* Pads consumed while looking are space the producer may wait for. */
		if (port->tx.consumer != before && tzmk_consumer_release(&port->tx))
			tzmk_notify_secure(port->tz, port->index);
		if (file->f_flags & O_NONBLOCK) {
			ret = tzmk_port_check(port) ? tzmk_broken(port) : -EAGAIN;
			goto unlock;
		}
		tzmk_set_reader_core(port, true);
		ret = tzmk_consumer_request_signal(&port->tx);
		mutex_unlock(&port->tx_lock);
		if (ret < 0)
			return tzmk_broken(port);
		if (ret > 0)
			continue;
		ret = tzmk_wait(port, seen);
		if (ret)
			return ret;
	}
unlock:
	mutex_unlock(&port->tx_lock);
	return ret;
}

static ssize_t tzmk_write(struct file *file, const char __user *buf, size_t count, loff_t *ppos)
{
	struct tzmk_port *port = file->private_data;
	ssize_t ret;
	int seen;

	if (count > tzmk_max_message(port->rx_capacity))
		return -EMSGSIZE;
	for (;;) {
		if (mutex_lock_interruptible(&port->rx_lock))
			return -ERESTARTSYS;
		seen = atomic_read(&port->events);
		ret = tzmk_reattach_rx(port);
		if (ret)
			goto unlock;
		ret = tzmk_producer_send(&port->rx, buf, count);
		if (ret == 0) {
			if (tzmk_producer_publish(&port->rx))
				tzmk_notify_secure(port->tz, port->index);
			ret = count;
			goto unlock;
		}
		if (ret == -EPIPE)
			ret = tzmk_broken(port);
		if (ret != -EAGAIN)
			goto unlock;
		if (file->f_flags & O_NONBLOCK) {
			ret = tzmk_port_check(port) ? tzmk_broken(port) : -EAGAIN;
			goto unlock;
		}
		ret = tzmk_producer_request_space_signal(&port->rx, count);
		mutex_unlock(&port->rx_lock);
		if (ret < 0)
			return tzmk_broken(port);
		if (ret > 0)
			continue;
		ret = tzmk_wait(port, seen);
		if (ret)
			return ret;
	}
unlock:
	mutex_unlock(&port->rx_lock);
	return ret;
}

static __poll_t tzmk_poll(struct file *file, poll_table *wait)
{
	struct tzmk_port *port = file->private_data;
	__poll_t mask = 0;
	u32 at, length;
	int ret;

	poll_wait(file, &port->wait, wait);

	mutex_lock(&port->tx_lock);
	ret = tzmk_reattach_tx(port);
	if (!ret)
		ret = tzmk_consumer_peek(&port->tx, &at, &length);
	if (ret == 0) {
		/* Arm the flag before reporting "not readable", as a blocking read does. */
		tzmk_set_reader_core(port, true);
		ret = tzmk_consumer_request_signal(&port->tx);
	}
	if (ret > 0)
		mask |= EPOLLIN | EPOLLRDNORM;
	else if (ret < 0)
		port->broken = true;
	mutex_unlock(&port->tx_lock);

	mutex_lock(&port->rx_lock);
	ret = tzmk_reattach_rx(port);
	if (!ret)
		ret = tzmk_producer_fits(&port->rx, tzmk_max_message(port->rx_capacity));
	if (ret == 0)
		ret = tzmk_producer_request_space_signal(&port->rx, tzmk_max_message(port->rx_capacity));
	if (ret > 0)
		mask |= EPOLLOUT | EPOLLWRNORM;
	else if (ret < 0)
		port->broken = true;
	mutex_unlock(&port->rx_lock);

	if (port->broken || tzmk_port_check(port)) {
		port->broken = true;
		mask |= EPOLLERR | EPOLLHUP;
	}
	return mask;
}

static int tzmk_open(struct inode *inode, struct file *file)
{
	struct tzmk_port *port = container_of(inode->i_cdev, struct tzmk_port, cdev);
	struct tzmk_device *tz = port->tz;
	struct tzmk_port_entry entry;
	u32 length, session = 0;
	int err;

	if (test_and_set_bit(0, &port->busy))
		return -EBUSY;
	/* Release's close, ready now: release must neither fail nor wait. */
	port->close = tzmk_control_alloc(tz, TZMK_OP_CLOSE, port->id, 0);
	err = -ENOMEM;
	if (!port->close)
		goto fail;
	/* Killable: a killed opener leaves at once, and the worker closes what the open got. */
	err = tzmk_control(tz, TZMK_OP_OPEN_ID, port->id, 0, NULL, 0, &entry, sizeof(entry), &length, &session);
	if (err)
		goto free;
	err = -EIO;
	if (length != sizeof(entry) || entry.id != port->id || entry.rx_offset != port->rx_offset ||
	    entry.rx_capacity != port->rx_capacity || entry.tx_offset != port->tx_offset ||
	    entry.tx_capacity != port->tx_capacity) {
		dev_err(tz->dev, "port %s: the open reply describes another port or other rings\n", port->name);
		goto close;
	}
	port->session = session;
	port->broken = false;
	port->mapped = false;
	if (tzmk_producer_attach(&port->rx, (u8 *)tz->region[TZMK_RX].base + port->rx_offset, port->rx_capacity) ||
	    tzmk_consumer_attach(&port->tx, (u8 *)tz->region[TZMK_TX].base + port->tx_offset, port->tx_capacity)) {
		dev_err(tz->dev, "port %s: its rings are broken after open\n", port->name);
		goto close;
	}
	file->private_data = port;
	stream_open(inode, file);
	return 0;
close:
	port->close->command = session;
	tzmk_control_post(tz, port->close);
	port->close = NULL;
free:
	if (port->close) {
		/* Never queued: both references are ours. */
		kfree(port->close);
		port->close = NULL;
	}
fail:
	clear_bit(0, &port->busy);
	return err;
}

static int tzmk_release(struct inode *inode, struct file *file)
{
	struct tzmk_port *port = file->private_data;
	struct tzmk_control_call *close = port->close;

	tzmk_set_reader_core(port, false);
	/*
	 * Queued, not waited for: an exiting process never waits on the secure side. The worker sends
	 * it before any later request, a new open of this port included. Refused (NotOpen) when the
	 * secure side ended the session already: nothing to do then.
	 */
	close->command = port->session;
	port->close = NULL;
	tzmk_control_post(port->tz, close);
	clear_bit(0, &port->busy);
	return 0;
}

static int tzmk_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct tzmk_port *port = file->private_data;
	struct tzmk_device *tz = port->tz;
	unsigned long size = vma->vm_end - vma->vm_start;
	u64 offset = (u64)vma->vm_pgoff << PAGE_SHIFT;
	phys_addr_t phys;
	size_t limit;
	int err;

	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (offset == 0) {
		phys = tz->region[TZMK_RX].phys + port->rx_offset;
		limit = port->rx_map_size;
	} else if (offset == TZMK_TX_MMAP_OFFSET) {
		phys = tz->region[TZMK_TX].phys + port->tx_offset;
		limit = port->tx_map_size;
	} else {
		return -EINVAL;
	}
	if (size > limit)
		return -EINVAL;
	/* 6.1: vm_flags is written directly (vm_flags_set is 6.3's). */
	vma->vm_flags &= ~VM_MAYEXEC;
	vma->vm_flags |= VM_DONTEXPAND | VM_DONTDUMP;
	/*
	 * From now on user space may move our indices: every read and write re-attaches. No ring
	 * lock here: mmap runs under mmap_lock, which a read or write holding its ring lock may
	 * take in a page fault of its copy. A read or write already past its re-attach sees the
	 * flag next time; until then user space's indices are checked like the secure side's.
	 */
	WRITE_ONCE(port->mapped, true);
	/* Write-back cacheable, as the secure side maps the rings: the vma's normal protection. */
	err = remap_pfn_range(vma, vma->vm_start, PHYS_PFN(phys), size, vma->vm_page_prot);
	return err;
}

/* 0, or -EAGAIN when the directory cannot be read now (never a made-up state). */
static int tzmk_port_info(struct tzmk_port *port, struct tzmk_port_info *info)
{
	struct tzmk_port_entry entry;

	if (tzmk_entry_now(port, &entry))
		return -EAGAIN;
	memset(info, 0, sizeof(*info));
	info->id = port->id;
	info->service = port->service;
	info->state = entry.state;
	info->session = port->session;
	info->rx_capacity = port->rx_capacity;
	info->tx_capacity = port->tx_capacity;
	info->rx_max_message = tzmk_max_message(port->rx_capacity);
	info->tx_max_message = tzmk_max_message(port->tx_capacity);
	info->rx_mmap_offset = 0;
	info->rx_mmap_size = port->rx_map_size;
	info->tx_mmap_offset = TZMK_TX_MMAP_OFFSET;
	info->tx_mmap_size = port->tx_map_size;
	memcpy(info->name, port->name, sizeof(info->name));
	return 0;
}

static long tzmk_ioctl_call(struct tzmk_port *port, void __user *argument)
{
	struct tzmk_call *call;
	u32 length;
	long err;

	call = kmalloc(sizeof(*call), GFP_KERNEL);
	if (!call)
		return -ENOMEM;
	/* Copied in once; only the copy is looked at. */
	err = -EFAULT;
	if (copy_from_user(call, argument, sizeof(*call)))
		goto out;
	err = -EINVAL;
	if (call->input_length > TZMK_MAX_CONTROL_PAYLOAD || call->reserved != 0)
		goto out;
	err = -ERESTARTSYS;
	if (mutex_lock_interruptible(&port->call_lock))
		goto out;
	err = tzmk_control(port->tz, TZMK_OP_CALL, port->id, call->command, call->data, call->input_length,
			   call->data, sizeof(call->data), &length, NULL);
	mutex_unlock(&port->call_lock);
	if (err)
		goto out;
	err = -EIO;
	if (length > sizeof(call->data))
		goto out;
	call->output_length = length;
	err = copy_to_user(argument, call, sizeof(*call)) ? -EFAULT : 0;
out:
	kfree(call);
	return err;
}

static long tzmk_ioctl(struct file *file, unsigned int command, unsigned long argument)
{
	struct tzmk_port *port = file->private_data;
	void __user *user = (void __user *)argument;
	struct tzmk_port_status status;
	struct tzmk_port_info info;
	u32 length;
	int err;

	switch (command) {
	case TZMK_IOC_PORT_INFO:
		err = tzmk_port_info(port, &info);
		if (err)
			return err;
		return copy_to_user(user, &info, sizeof(info)) ? -EFAULT : 0;
	case TZMK_IOC_CALL:
		return tzmk_ioctl_call(port, user);
	case TZMK_IOC_KICK:
		tzmk_notify_secure(port->tz, port->index);
		return 0;
	case TZMK_IOC_STATUS:
		if (mutex_lock_interruptible(&port->call_lock))
			return -ERESTARTSYS;
		err = tzmk_control(port->tz, TZMK_OP_STATUS, port->id, 0, NULL, 0, &status, sizeof(status), &length,
				   NULL);
		mutex_unlock(&port->call_lock);
		if (err)
			return err;
		if (length != sizeof(status))
			return -EIO;
		return copy_to_user(user, &status, sizeof(status)) ? -EFAULT : 0;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations tzmk_fops = {
	.owner = THIS_MODULE,
	.open = tzmk_open,
	.release = tzmk_release,
	.read = tzmk_read,
	.write = tzmk_write,
	.poll = tzmk_poll,
	.mmap = tzmk_mmap,
	.unlocked_ioctl = tzmk_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

/* ---- sysfs ----------------------------------------------------------------------------------- */

static const char *tzmk_service_name(u8 service)
{
	switch (service) {
	case TZMK_SERVICE_ECHO:
		return "echo";
	case TZMK_SERVICE_SINK:
		return "sink";
	case TZMK_SERVICE_ATTESTATION:
		return "attestation";
	case TZMK_SERVICE_RT:
		return "rt";
	case TZMK_SERVICE_FORWARD:
		return "forward";
	default:
		return "unknown";
	}
}

static const char *tzmk_state_name(u8 state)
{
	switch (state) {
	case TZMK_PORT_CLOSED:
		return "closed";
	case TZMK_PORT_OPEN:
		return "open";
	case TZMK_PORT_FAULTED:
		return "faulted";
	default:
		return "unknown";
	}
}

#define TZMK_PORT_ATTR(field, format, value)                                                        \
	static ssize_t field##_show(struct device *device, struct device_attribute *attr, char *buf) \
	{                                                                                            \
		struct tzmk_port *port = dev_get_drvdata(device);                                    \
		return sysfs_emit(buf, format "\n", value);                                          \
	}                                                                                            \
	static DEVICE_ATTR_RO(field)

TZMK_PORT_ATTR(id, "%u", port->id);
TZMK_PORT_ATTR(name, "%s", port->name);
TZMK_PORT_ATTR(service, "%s", tzmk_service_name(port->service));
TZMK_PORT_ATTR(rx_capacity, "%u", port->rx_capacity);
TZMK_PORT_ATTR(tx_capacity, "%u", port->tx_capacity);
TZMK_PORT_ATTR(max_message, "%u", min(tzmk_max_message(port->rx_capacity), tzmk_max_message(port->tx_capacity)));

/*
 * An attribute read live from the port's directory entry: one snapshot of the entry per read.
 * `mode`: 0444, or 0400 for what tells when other users' ports are active.
 */
#define TZMK_ENTRY_ATTR(field, mode, format, value)                                                 \
	static ssize_t field##_show(struct device *device, struct device_attribute *attr, char *buf) \
	{                                                                                            \
		struct tzmk_port *port = dev_get_drvdata(device);                                    \
		struct tzmk_port_entry entry;                                                        \
                                                                                                     \
		if (tzmk_entry_now(port, &entry))                                                    \
			return -EAGAIN;                                                              \
		return sysfs_emit(buf, format "\n", value);                                          \
	}                                                                                            \
	static DEVICE_ATTR(field, mode, field##_show, NULL)

TZMK_ENTRY_ATTR(state, 0444, "%s", tzmk_state_name(entry.state));
/* A session number changes at every open: root's only. */
TZMK_ENTRY_ATTR(session, 0400, "%u", entry.session);
TZMK_ENTRY_ATTR(faults, 0444, "%u", entry.faults);
/* The last fault's code (ring << 8 | misbehaviour, tzmk-interface PortFault; 0: none). */
TZMK_ENTRY_ATTR(last_fault, 0444, "%#x", entry.last_fault);

/*
 * A per-CPU counter as `cpu0 N cpu1 N ...`, each CPU's count read once. Root's only (0400): a
 * count that moves tells when a port is in use.
 */
static ssize_t tzmk_emit_per_cpu(char *buf, unsigned long __percpu *counter)
{
	unsigned int cpu;
	int used = 0;

	for_each_possible_cpu(cpu)
		used += sysfs_emit_at(buf, used, "%scpu%u %lu", used ? " " : "", cpu,
				      READ_ONCE(*per_cpu_ptr(counter, cpu)));
	used += sysfs_emit_at(buf, used, "\n");
	return used;
}

static ssize_t doorbells_show(struct device *device, struct device_attribute *attr, char *buf)
{
	return tzmk_emit_per_cpu(buf, ((struct tzmk_port *)dev_get_drvdata(device))->doorbells);
}
static DEVICE_ATTR_ADMIN_RO(doorbells);

static ssize_t doorbells_other_show(struct device *device, struct device_attribute *attr, char *buf)
{
	return tzmk_emit_per_cpu(buf, ((struct tzmk_port *)dev_get_drvdata(device))->doorbells_other);
}
static DEVICE_ATTR_ADMIN_RO(doorbells_other);

static struct attribute *tzmk_port_attrs[] = {
	&dev_attr_id.attr,	    &dev_attr_name.attr,	&dev_attr_service.attr,	    &dev_attr_state.attr,
	&dev_attr_session.attr,	    &dev_attr_rx_capacity.attr, &dev_attr_tx_capacity.attr, &dev_attr_max_message.attr,
	&dev_attr_doorbells.attr,   &dev_attr_doorbells_other.attr, &dev_attr_faults.attr, &dev_attr_last_fault.attr,
	NULL,
};
ATTRIBUTE_GROUPS(tzmk_port);

/*
 * One line per port, from one snapshot of the whole directory per read (not one per port).
 * Root's only (0400): it shows each port's session.
 */
static ssize_t ports_show(struct device *device, struct device_attribute *attr, char *buf)
{
	struct tzmk_device *tz = dev_get_drvdata(device);
	struct tzmk_directory *directory;
	unsigned int i;
	bool known;
	int used = 0;

	directory = kmalloc(sizeof(*directory), GFP_KERNEL);
	if (!directory)
		return -ENOMEM;
	known = !tzmk_directory_snapshot(tz, TZMK_DIRECTORY_OFFSET, directory, sizeof(*directory));
	for (i = 0; i < tz->count; i++) {
		const struct tzmk_port *port = &tz->ports[i];
		/* The entry at the index probe found the port at; its id must still say so. */
		const struct tzmk_port_entry *entry = &directory->ports[i];
		bool valid = known && entry->id == port->id;

		used += sysfs_emit_at(buf, used, "%u %s %s %s session %u rx %u tx %u faults %u\n", port->id,
				      port->name, tzmk_service_name(port->service),
				      valid ? tzmk_state_name(entry->state) : "unknown", valid ? entry->session : 0,
				      port->rx_capacity, port->tx_capacity, valid ? entry->faults : 0);
	}
	kfree(directory);
	return used;
}
static DEVICE_ATTR_ADMIN_RO(ports);

static ssize_t status_show(struct device *device, struct device_attribute *attr, char *buf)
{
	struct tzmk_device *tz = dev_get_drvdata(device);
	struct tzmk_status_page page;

	if (tzmk_snapshot(tz, TZMK_STATUS_SEQUENCE_OFFSET, TZMK_STATUS_OFFSET, &page, sizeof(page)))
		return -EAGAIN;
	if (page.magic != TZMK_STATUS_MAGIC)
		return sysfs_emit(buf, "no status page\n");
	return sysfs_emit(buf,
			  "version %u kicks %llu attestation_version %llu rt_periods %llu rt_overruns %llu "
			  "rt_max_lateness_ns %llu rt_events_sent %llu rt_events_refused %llu "
			  "rt_events_forwarded %llu rt_events_unheard %llu\n",
			  page.version, page.kicks, page.attestation_version, page.rt.periods, page.rt.overruns,
			  page.rt.max_lateness_ns, page.rt.events_sent, page.rt.events_refused,
			  page.rt_events_forwarded, page.rt_events_unheard);
}
static DEVICE_ATTR_RO(status);

/*
 * Where the latest notifications' time went, in counter ticks (docs/system-bench.md): this
 * driver's readings just before its latest NOTIFY_SECURE and as it took the latest doorbell,
 * comm-pd's as its handler took the latest kick and just before its latest NOTIFY_NORMAL, and
 * the kicks this driver made. comm-pd's words are allegations, shown as read.
 */
static ssize_t stamps_show(struct device *device, struct device_attribute *attr, char *buf)
{
	struct tzmk_device *tz = dev_get_drvdata(device);
	void *ctrl = tz->region[TZMK_CTRL].base;

	return sysfs_emit(buf, "kick_smc %lld kick_seen %llu doorbell_rung %llu doorbell_taken %lld kicks %lld\n",
			  atomic64_read(&tz->kick_smc), READ_ONCE(*tzmk_word64(ctrl, TZMK_KICK_SEEN_OFFSET)),
			  READ_ONCE(*tzmk_word64(ctrl, TZMK_DOORBELL_RUNG_OFFSET)), atomic64_read(&tz->doorbell_taken),
			  atomic64_read(&tz->kicks));
}
/* Root's only: the stamps move whenever any port is used. */
static DEVICE_ATTR_ADMIN_RO(stamps);

/* The status page's bytes (struct tzmk_status_page), a stable copy: what tzcomm reads. */
static ssize_t status_page_read(struct file *file, struct kobject *kobj, struct bin_attribute *attr, char *buf,
				loff_t offset, size_t count)
{
	struct tzmk_device *tz = dev_get_drvdata(kobj_to_dev(kobj));
	struct tzmk_status_page page;

	if (offset < 0 || offset >= sizeof(page))
		return 0;
	if (tzmk_snapshot(tz, TZMK_STATUS_SEQUENCE_OFFSET, TZMK_STATUS_OFFSET, &page, sizeof(page)))
		return -EAGAIN;
	count = min_t(size_t, count, sizeof(page) - offset);
	memcpy(buf, (const u8 *)&page + offset, count);
	return count;
}
static BIN_ATTR_RO(status_page, sizeof(struct tzmk_status_page));

static struct attribute *tzmk_device_attrs[] = { &dev_attr_ports.attr, &dev_attr_status.attr, &dev_attr_stamps.attr,
						 NULL };
static struct bin_attribute *tzmk_device_bin_attrs[] = { &bin_attr_status_page, NULL };
static const struct attribute_group tzmk_device_group = {
	.attrs = tzmk_device_attrs,
	.bin_attrs = tzmk_device_bin_attrs,
};
static const struct attribute_group *tzmk_device_groups[] = { &tzmk_device_group, NULL };

/* ---- Probe ----------------------------------------------------------------------------------- */

static bool tzmk_name_valid(const u8 *name)
{
	size_t i, length = strnlen((const char *)name, TZMK_NAME_LEN);

	if (length == 0)
		return false;
	for (i = 0; i < length; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
			return false;
	for (; i < TZMK_NAME_LEN; i++)
		if (name[i])
			return false;
	return true;
}

/* Whether [a, a + a_size) and [b, b + b_size) share a byte. */
static bool tzmk_overlap(u64 a, u64 a_size, u64 b, u64 b_size)
{
	return a < b + b_size && b < a + a_size;
}

static size_t tzmk_ring_map_size(u32 capacity)
{
	return PAGE_ALIGN((size_t)TZMK_RING_HEADER_SIZE + capacity);
}

/* A ring of the directory inside its region, page aligned, with a capacity pds/ring accepts. */
static int tzmk_ring_valid(struct tzmk_device *tz, enum tzmk_region region, u32 offset, u32 capacity,
			   size_t *map_size)
{
	u64 end;

	if (capacity < TZMK_RING_MIN_CAPACITY || capacity > TZMK_RING_MAX_CAPACITY || !is_power_of_2(capacity))
		return -EINVAL;
	if (!PAGE_ALIGNED(offset))
		return -EINVAL;
	*map_size = tzmk_ring_map_size(capacity);
	end = (u64)offset + *map_size;
	if (end > tz->region[region].size)
		return -EINVAL;
	return 0;
}

/*
 * Entries i and j (both valid rings) share no page of a ring: defence in depth (only the secure
 * side writes the directory), since two ports over the same bytes would let one port's user
 * write into another's messages.
 */
static bool tzmk_rings_disjoint(const struct tzmk_port_entry *a, const struct tzmk_port_entry *b)
{
	return !tzmk_overlap(a->rx_offset, tzmk_ring_map_size(a->rx_capacity), b->rx_offset,
			     tzmk_ring_map_size(b->rx_capacity)) &&
	       !tzmk_overlap(a->tx_offset, tzmk_ring_map_size(a->tx_capacity), b->tx_offset,
			     tzmk_ring_map_size(b->tx_capacity));
}

static int tzmk_read_directory(struct tzmk_device *tz, struct tzmk_directory *directory)
{
	unsigned int i, j;

	if (tzmk_snapshot(tz, TZMK_DIRECTORY_SEQUENCE_OFFSET, TZMK_DIRECTORY_OFFSET, directory, sizeof(*directory)))
		return -EAGAIN;
	if (directory->magic != TZMK_DIRECTORY_MAGIC)
		return -ENOENT;
	if (directory->count > TZMK_MAX_PORTS) {
		dev_err(tz->dev, "the directory lists %u ports, more than %u\n", directory->count, TZMK_MAX_PORTS);
		return -EINVAL;
	}
	for (i = 0; i < directory->count; i++) {
		const struct tzmk_port_entry *entry = &directory->ports[i];
		size_t size;

		if (!tzmk_name_valid(entry->name)) {
			dev_err(tz->dev, "directory entry %u: a name outside [a-z0-9-]\n", i);
			return -EINVAL;
		}
		if (tzmk_ring_valid(tz, TZMK_RX, entry->rx_offset, entry->rx_capacity, &size) ||
		    tzmk_ring_valid(tz, TZMK_TX, entry->tx_offset, entry->tx_capacity, &size)) {
			dev_err(tz->dev, "directory entry %u: a ring that is not page aligned inside its region with a capacity of 64..2^30, a power of two\n",
				i);
			return -EINVAL;
		}
		for (j = 0; j < i; j++)
			if (directory->ports[j].id == entry->id ||
			    !memcmp(directory->ports[j].name, entry->name, TZMK_NAME_LEN)) {
				dev_err(tz->dev, "directory entries %u and %u: the same id or name\n", j, i);
				return -EINVAL;
			}
		for (j = 0; j < i; j++)
			if (!tzmk_rings_disjoint(&directory->ports[j], entry)) {
				dev_err(tz->dev, "directory entries %u and %u: their rings overlap\n", j, i);
				return -EINVAL;
			}
	}
	return 0;
}

static int tzmk_map_regions(struct tzmk_device *tz)
{
	unsigned int i, j;

	for (i = 0; i < TZMK_REGIONS; i++) {
		const char *name = tzmk_region_names[i], *why = NULL;
		phys_addr_t base, size;

		if (tzmk_fw_region(tz->dev->of_node, name, &base, &size, &why)) {
			pr_err("memory-region \"%s\" %s: no ports\n", name, why);
			return -EINVAL;
		}
		if (i == TZMK_CTRL && size < TZMK_PORT_CTRL_SIZE) {
			pr_err("memory-region \"%s\" (%pa bytes) is smaller than port_ctrl's %#x: no ports\n", name, &size,
			       TZMK_PORT_CTRL_SIZE);
			return -EINVAL;
		}
		for (j = 0; j < i; j++)
			if (tzmk_overlap(base, size, tz->region[j].phys, tz->region[j].size)) {
				pr_err("memory-regions \"%s\" and \"%s\" overlap: no ports\n", tzmk_region_names[j], name);
				return -EINVAL;
			}
		tz->region[i].phys = base;
		tz->region[i].size = size;
		tz->region[i].base = devm_memremap(tz->dev, base, size, MEMREMAP_WB);
		if (IS_ERR(tz->region[i].base)) {
			pr_err("memory-region \"%s\" cannot be mapped: no ports\n", name);
			return PTR_ERR(tz->region[i].base);
		}
	}
	return 0;
}

static void tzmk_destroy_queue(void *queue)
{
	destroy_workqueue(queue);
}

/* SMCCC conduit, SiP Call UID and Revision, NOTIFY_SECURE: is there a tzmk secure world? */
static int tzmk_check_firmware(void)
{
	struct tzmk_fw fw;
	long answer;

	switch (tzmk_fw_identify(&fw)) {
	case TZMK_FW_TZMK:
		break;
	case TZMK_FW_NO_SMC:
		pr_err("the SMCCC 1.1 conduit is %s, not smc: no tzmk monitor, no ports\n",
		       tzmk_fw_conduit_name(fw.conduit));
		return -ENODEV;
	case TZMK_FW_NOT_TZMK:
		pr_err("SiP Call UID is not tzmk's (%08x %08x %08x %08x): no ports\n", fw.uid[0], fw.uid[1], fw.uid[2],
		       fw.uid[3]);
		return -ENODEV;
	case TZMK_FW_REVISION:
		pr_err("the monitor's SiP revision is %ld.%ld, this driver speaks %u.x: no ports\n", fw.revision_major,
		       fw.revision_minor, TZMK_REVISION_MAJOR);
		return -ENODEV;
	}
	answer = tzmk_fw_notify_secure(0);
	if (answer == TZMK_SMC_NO_SECURE_WORLD) {
		pr_err("the secure world answers \"no secure world\": no ports\n");
		return -ENODEV;
	}
	if (answer != TZMK_SMC_SUCCESS) {
		pr_err("notify_secure(0) answered %ld: no ports\n", answer);
		return -ENODEV;
	}
	return 0;
}

static void tzmk_remove_ports(struct tzmk_device *tz)
{
	unsigned int i, count = tz->count;

	WRITE_ONCE(tz->count, 0);
	for (i = 0; i < count; i++) {
		struct tzmk_port *port = &tz->ports[i];

		if (port->device)
			device_destroy(tzmk_class, port->device->devt);
		if (port->cdev.ops)
			cdev_del(&port->cdev);
		free_percpu(port->doorbells);
		free_percpu(port->doorbells_other);
	}
	if (tz->minors)
		unregister_chrdev_region(tz->devt, tz->minors);
	tz->minors = 0;
}

static int tzmk_add_ports(struct tzmk_device *tz, const struct tzmk_directory *directory)
{
	unsigned int i;
	int err;

	/* Every port's state first: the doorbell handler may look at it as soon as count is set. */
	for (i = 0; i < directory->count; i++) {
		const struct tzmk_port_entry *entry = &directory->ports[i];
		struct tzmk_port *port = &tz->ports[i];
		size_t size;

		port->tz = tz;
		port->index = i;
		port->id = entry->id;
		port->service = entry->service;
		memcpy(port->name, entry->name, TZMK_NAME_LEN);
		port->rx_offset = entry->rx_offset;
		port->rx_capacity = entry->rx_capacity;
		port->tx_offset = entry->tx_offset;
		port->tx_capacity = entry->tx_capacity;
		tzmk_ring_valid(tz, TZMK_RX, port->rx_offset, port->rx_capacity, &size);
		port->rx_map_size = size;
		tzmk_ring_valid(tz, TZMK_TX, port->tx_offset, port->tx_capacity, &size);
		port->tx_map_size = size;
		init_waitqueue_head(&port->wait);
		mutex_init(&port->rx_lock);
		mutex_init(&port->tx_lock);
		mutex_init(&port->call_lock);
		tzmk_set_reader_core(port, false);
		port->doorbells = alloc_percpu(unsigned long);
		port->doorbells_other = alloc_percpu(unsigned long);
		if (!port->doorbells || !port->doorbells_other) {
			/* tzmk_remove_ports frees those allocated so far, this port's included. */
			WRITE_ONCE(tz->count, i + 1);
			return -ENOMEM;
		}
	}
	WRITE_ONCE(tz->count, directory->count);

	err = alloc_chrdev_region(&tz->devt, 0, tz->count, "tzmk");
	if (err)
		return err;
	tz->minors = tz->count;
	for (i = 0; i < tz->count; i++) {
		struct tzmk_port *port = &tz->ports[i];

		cdev_init(&port->cdev, &tzmk_fops);
		port->cdev.owner = THIS_MODULE;
		err = cdev_add(&port->cdev, tz->devt + i, 1);
		if (err) {
			port->cdev.ops = NULL;
			return err;
		}
		/* "tzmk!echo": devtmpfs makes /dev/tzmk/echo. */
		port->device = device_create_with_groups(tzmk_class, tz->dev, tz->devt + i, port, tzmk_port_groups,
							 "tzmk!%s", port->name);
		if (IS_ERR(port->device)) {
			err = PTR_ERR(port->device);
			port->device = NULL;
			return err;
		}
	}
	return 0;
}

static int tzmk_probe(struct platform_device *pdev)
{
	struct tzmk_directory *directory;
	struct tzmk_device *tz;
	int err, waited;

	err = tzmk_check_firmware();
	if (err)
		return err;
	tz = devm_kzalloc(&pdev->dev, sizeof(*tz), GFP_KERNEL);
	directory = kzalloc(sizeof(*directory), GFP_KERNEL);
	if (!tz || !directory) {
		kfree(directory);
		return -ENOMEM;
	}
	tz->dev = &pdev->dev;
	spin_lock_init(&tz->control_handoff);
	init_waitqueue_head(&tz->control_wait);
	platform_set_drvdata(pdev, tz);
	err = tzmk_map_regions(tz);
	if (err)
		goto out;
	/*
	 * After the regions' devm mappings, so that it is released before them: destroying the queue
	 * first sends the closes still queued (release returns before they are sent).
	 */
	tz->control_queue = alloc_ordered_workqueue("tzmk-control", 0);
	err = -ENOMEM;
	if (!tz->control_queue)
		goto out;
	err = devm_add_action_or_reset(&pdev->dev, tzmk_destroy_queue, tz->control_queue);
	if (err)
		goto out;
	/* Requests continue after the last one a previous load made: never a sequence replayed. */
	tz->sequence = lower_32_bits(READ_ONCE(*tzmk_word64(tz->region[TZMK_CTRL].base, TZMK_REQUEST_OFFSET)));

	for (waited = 0;; waited += 10) {
		err = tzmk_read_directory(tz, directory);
		if (err != -ENOENT && err != -EAGAIN)
			break;
		if (waited >= TZMK_DIRECTORY_WAIT_MS) {
			pr_err("no port directory in port_ctrl after %d ms: no ports\n", TZMK_DIRECTORY_WAIT_MS);
			goto out;
		}
		msleep(10);
	}
	if (err) {
		pr_err("the port directory is malformed: no ports\n");
		goto out;
	}

	tz->irq = platform_get_irq(pdev, 0);
	if (tz->irq < 0) {
		err = tz->irq;
		pr_err("the tzmk,ports node has no doorbell interrupt: no ports\n");
		goto out;
	}
	err = devm_request_irq(&pdev->dev, tz->irq, tzmk_doorbell, 0, "tzmk-doorbell", tz);
	if (err) {
		pr_err("the doorbell interrupt %d cannot be had (%d): no ports\n", tz->irq, err);
		goto out;
	}
	err = tzmk_add_ports(tz, directory);
	if (err) {
		disable_irq(tz->irq);
		tzmk_remove_ports(tz);
		pr_err("creating the port devices failed (%d): no ports\n", err);
		goto out;
	}
	mutex_lock(&tzmk_bound_lock);
	tzmk_bound = tz;
	tzmk_write_spin_hint(tz, secure_spin_us);
	mutex_unlock(&tzmk_bound_lock);
	dev_info(&pdev->dev, "%u ports, doorbell irq %d\n", tz->count, tz->irq);
out:
	kfree(directory);
	return err;
}

static int tzmk_remove(struct platform_device *pdev)
{
	struct tzmk_device *tz = platform_get_drvdata(pdev);

	/* No file is open: each holds a reference to this module, and unbinding by hand is off. */
	mutex_lock(&tzmk_bound_lock);
	tzmk_bound = NULL;
	mutex_unlock(&tzmk_bound_lock);
	disable_irq(tz->irq);
	tzmk_remove_ports(tz);
	return 0;
}

static const struct of_device_id tzmk_of_match[] = {
	{ .compatible = TZMK_DT_COMPATIBLE },
	{},
};
MODULE_DEVICE_TABLE(of, tzmk_of_match);

static struct platform_driver tzmk_driver = {
	.probe = tzmk_probe,
	.remove = tzmk_remove,
	.driver = {
		.name = "tzmk",
		.of_match_table = tzmk_of_match,
		.dev_groups = tzmk_device_groups,
		/* The regions stay mapped while a port is open: no unbinding under an open file. */
		.suppress_bind_attrs = true,
	},
};

static char *tzmk_devnode(struct device *device, umode_t *mode)
{
	if (mode)
		*mode = 0600;
	return NULL;
}

static int __init tzmk_init(void)
{
	int err;

	tzmk_class = class_create(THIS_MODULE, "tzmk");
	if (IS_ERR(tzmk_class))
		return PTR_ERR(tzmk_class);
	tzmk_class->devnode = tzmk_devnode;
	err = platform_driver_register(&tzmk_driver);
	if (err)
		class_destroy(tzmk_class);
	return err;
}

static void __exit tzmk_exit(void)
{
	platform_driver_unregister(&tzmk_driver);
	class_destroy(tzmk_class);
}

module_init(tzmk_init);
module_exit(tzmk_exit);

MODULE_DESCRIPTION("tzmk: the normal world's communication ports to an seL4 secure world");
MODULE_LICENSE("GPL");
