// SPDX-License-Identifier: GPL-2.0
/*
 * tzmk_probe: asks the EL3 monitor's SiP service who it is and how it answers, once, at load.
 *
 * Every call goes through the kernel's SMCCC 1.1 helper (arm_smccc_1_1_invoke), which uses the
 * conduit that the PSCI driver found in the device tree ("smc") and confirmed with SMCCC_VERSION.
 * The tzmk-specific calls are made only when SiP Call UID names tzmk: on other firmware those
 * function numbers may mean something else. The results are read-only module parameters under
 * /sys/module/tzmk_probe/parameters/ (read by tzmk-init) and pr_info lines. Loading never fails
 * because of what the firmware answered: the answers are the result.
 *
 * The doorbell: the DT node `compatible = "tzmk,ports"` (written by `tzmk dtb`) names the SPI the
 * monitor pends when the secure world calls NOTIFY_NORMAL. Its interrupt is requested before
 * NOTIFY_SECURE; when NOTIFY_SECURE answers SUCCESS, the init waits up to TZMK_DOORBELL_WAIT_MS for a
 * doorbell after that call (a bare kick makes comm-pd publish its status page and ring it). No
 * node, or an interrupt that cannot be had, is reported, never a reason to fail loading.
 *
 * The SMC and device-tree code is the driver's own (linux-side/driver/tzmk_firmware.h): the probe
 * identifies the firmware and rings the secure world exactly as tzmk.ko does. Function ids, the
 * UID and the status codes come from tzmk_abi.h (tzmk-abi-header, from pds/interface); the two
 * constants of this test alone, from tzmk_probe.h (tzmk-probe-header, tests/linux/src/lib.rs).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/arm-smccc.h>
#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/of.h>
#include <linux/of_irq.h>
#include <linux/io.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/workqueue.h>
#include <uapi/linux/psci.h>
#include <linux/wait.h>
#include <asm/barrier.h>

#include "tzmk_abi.h"
#include "tzmk_firmware.h"
#include "tzmk_probe.h"

/*
 * Calls a hostile normal world might make, and the refusal each must get: the monitor must check
 * the caller's world and every argument on the real SMC path too, not only in its host tests.
 */
static char refusals[384] = "not called";
module_param_string(refusals, refusals, sizeof(refusals), 0444);
MODULE_PARM_DESC(refusals, "name=x0 of each refused call; '!' marks an answer that is not the expected refusal");
static bool refusals_ok;
module_param(refusals_ok, bool, 0444);
MODULE_PARM_DESC(refusals_ok, "every refused call got its expected answer");

struct refusal {
	const char *name;
	u32 fid;
	unsigned long a1, a2;
	long expected;
};

static const struct refusal refusal_calls[] = {
	/* MPIDR 0 is the secure core: Linux may not start it, nor ask about it. */
	{ "cpu_on(secure core)", PSCI_0_2_FN64_CPU_ON, 0, 0, PSCI_RET_DENIED },
	/* Address 0 is secure flash, not Linux's RAM. */
	{ "cpu_on(entry outside Linux's RAM)", PSCI_0_2_FN64_CPU_ON, 3, 0, PSCI_RET_INVALID_ADDRESS },
	{ "affinity_info(secure core)", PSCI_0_2_FN64_AFFINITY_INFO, 0, 0, PSCI_RET_INVALID_PARAMS },
	{ "notify_normal from Linux", TZMK_NOTIFY_NORMAL, 1, 0, TZMK_SMC_DENIED },
	{ "notify_secure(port 4096)", TZMK_NOTIFY_SECURE, 4096, 0, TZMK_SMC_INVALID_PARAMETER },
	/* Bit 31 clear: a yielding call, which tzmk has none of. */
	{ "yielding sip call", TZMK_NOTIFY_SECURE & ~0x80000000U, 0, 0, TZMK_SMC_NOT_SUPPORTED },
};

static void call_refusals(void)
{
	size_t i, used = 0;

	refusals_ok = true;
	refusals[0] = '\0';
	for (i = 0; i < ARRAY_SIZE(refusal_calls); i++) {
		const struct refusal *r = &refusal_calls[i];
		long got = tzmk_fw_call(r->fid, r->a1, r->a2);

		if (got != r->expected)
			refusals_ok = false;
		used += scnprintf(refusals + used, sizeof(refusals) - used, "%s%s=%ld%s", i ? ", " : "", r->name, got,
				  got == r->expected ? "" : "!");
	}
	pr_info("refusals: %s\n", refusals);
}

static char *conduit = "none";
module_param(conduit, charp, 0444);
MODULE_PARM_DESC(conduit, "SMCCC conduit the kernel uses: smc, hvc or none");

static unsigned int smccc_version;
module_param(smccc_version, uint, 0444);
MODULE_PARM_DESC(smccc_version, "SMCCC version the firmware reported (major << 16 | minor)");

static char sip_uid[40] = "not called";
module_param_string(sip_uid, sip_uid, sizeof(sip_uid), 0444);
MODULE_PARM_DESC(sip_uid, "x0..x3 of SiP Call UID, as four hex words");

static bool tzmk;
module_param(tzmk, bool, 0444);
MODULE_PARM_DESC(tzmk, "SiP Call UID is tzmk's: the calls below were made");

static long revision_major = -1;
module_param(revision_major, long, 0444);
static long revision_minor = -1;
module_param(revision_minor, long, 0444);
MODULE_PARM_DESC(revision_major, "x0 of SiP Revision (-1: not called)");
MODULE_PARM_DESC(revision_minor, "x1 of SiP Revision (-1: not called)");

/* x0 of each call; 1 (no SMCCC status is positive) until the call is made. */
static long notify_secure = 1;
module_param(notify_secure, long, 0444);
MODULE_PARM_DESC(notify_secure, "x0 of NOTIFY_SECURE(port 0)");
static long go = 1;
module_param(go, long, 0444);
MODULE_PARM_DESC(go, "x0 of GO from the normal world (a secure-only function)");
static long unknown = 1;
module_param(unknown, long, 0444);
MODULE_PARM_DESC(unknown, "x0 of a SiP function id no service owns");

static int doorbell_irq = -1;
module_param(doorbell_irq, int, 0444);
MODULE_PARM_DESC(doorbell_irq, "Linux irq of the tzmk,ports doorbell, requested (-1: no tzmk monitor or "
			       "no tzmk,ports node; 0: its interrupt could not be mapped or requested)");
static long doorbell_hwirq = -1;
module_param(doorbell_hwirq, long, 0444);
MODULE_PARM_DESC(doorbell_hwirq, "GIC INTID of the doorbell (-1: no doorbell)");
static unsigned int doorbells;
module_param(doorbells, uint, 0444);
MODULE_PARM_DESC(doorbells, "doorbells taken by the end of the init (after the wait, if any)");
static long doorbell_wait_us = -1;
module_param(doorbell_wait_us, long, 0444);
MODULE_PARM_DESC(doorbell_wait_us,
		 "us from NOTIFY_SECURE to the first doorbell after it (-1: not waited for, or none within the timeout)");

static atomic_t doorbell_count = ATOMIC_INIT(0);
/* Set just before NOTIFY_SECURE: the handler then stamps the first doorbell after it. */
static atomic_t doorbell_armed = ATOMIC_INIT(0);
static atomic64_t doorbell_first_ns = ATOMIC64_INIT(0);
static DECLARE_WAIT_QUEUE_HEAD(doorbell_wait);
static bool doorbell_requested;

static irqreturn_t doorbell_handler(int irq, void *dev_id)
{
	if (atomic_read(&doorbell_armed))
		atomic64_cmpxchg(&doorbell_first_ns, 0, ktime_get_ns());
	atomic_inc(&doorbell_count);
	wake_up(&doorbell_wait);
	return IRQ_HANDLED;
}

/* Finds the tzmk,ports node and requests its interrupt; sets doorbell_irq and doorbell_hwirq. */
static void doorbell_request(void)
{
	struct device_node *node;
	struct irq_data *data;
	unsigned int irq;
	int err;

	node = tzmk_fw_node();
	if (!node) {
		pr_info("no " TZMK_DT_COMPATIBLE " node in the device tree: no doorbell\n");
		return;
	}
	irq = irq_of_parse_and_map(node, 0);
	of_node_put(node);
	doorbell_irq = 0;
	if (!irq) {
		pr_err("tzmk,ports: its interrupt could not be mapped\n");
		return;
	}
	err = request_irq(irq, doorbell_handler, IRQF_TRIGGER_RISING, "tzmk-doorbell", NULL);
	if (err) {
		pr_err("tzmk,ports: request_irq(%u) failed: %d\n", irq, err);
		irq_dispose_mapping(irq);
		return;
	}
	doorbell_requested = true;
	doorbell_irq = irq;
	data = irq_get_irq_data(irq);
	if (data)
		doorbell_hwirq = (long)irqd_to_hwirq(data);
	pr_info("doorbell: irq %d (hwirq %ld), edge\n", doorbell_irq, doorbell_hwirq);
}

/*
 * The notification bench (tzmk.expect=bench loads the probe with bench_rounds=N): on Linux's
 * CPU 0, interrupts masked, N rounds of: read the counter, NOTIFY_SECURE(0) through the driver's
 * own helper, `wfi` until comm-pd's doorbell stamp moves, read the counter. A bare kick makes
 * comm-pd publish its status page and ring the monitor's choice of core, Linux's CPU 0, with no
 * spinning. With comm-pd's stamps (port_ctrl, docs/ports.md) each round gives the normal ->
 * secure leg (smc to comm-pd's handler) and the secure -> normal leg (notify_normal to this core
 * running again). Under QEMU -icount the waiting core executes nothing while it waits, so each
 * leg counts the instructions on the path, whichever core ran them (docs/system-bench.md). Results
 * in counter ticks, as sorted samples' p50/min/max and sums, in the `bench` parameter.
 */
static unsigned int bench_rounds;
module_param(bench_rounds, uint, 0444);
MODULE_PARM_DESC(bench_rounds, "rounds of the notification bench at load (0: none)");
static char bench[256] = "not run";
module_param_string(bench, bench, sizeof(bench), 0444);
MODULE_PARM_DESC(bench, "the notification bench's result, in counter ticks (or why it did not run)");

/* A round that has not seen the doorbell after this many ticks (~1 s at 62.5 MHz) is dropped. */
#define BENCH_GIVE_UP_TICKS 62500000ULL

static int bench_cmp(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

struct bench_legs {
	u64 *ns, *sn;
	unsigned int samples, dropped;
};

static long bench_on_cpu0(void *data)
{
	struct bench_legs *legs = data;
	struct device_node *node = tzmk_fw_node();
	phys_addr_t base, size;
	const char *why = "";
	unsigned int i;
	void *ctrl;

	if (!node)
		return -ENODEV;
	if (tzmk_fw_region(node, "port_ctrl", &base, &size, &why) || size < TZMK_PORT_CTRL_SIZE) {
		of_node_put(node);
		pr_err("bench: memory-region port_ctrl %s\n", why);
		return -EINVAL;
	}
	of_node_put(node);
	ctrl = memremap(base, size, MEMREMAP_WB);
	if (!ctrl)
		return -ENOMEM;
	for (i = 0; i < bench_rounds; i++) {
		u64 *seen_word = (u64 *)((u8 *)ctrl + TZMK_KICK_SEEN_OFFSET);
		u64 *rung_word = (u64 *)((u8 *)ctrl + TZMK_DOORBELL_RUNG_OFFSET);
		u64 rung_before = READ_ONCE(*rung_word), t0, t1, seen, rung;
		unsigned long flags;

		local_irq_save(flags);
		t0 = tzmk_fw_counter();
		tzmk_fw_notify_secure(0);
		do {
			wfi();
			rung = READ_ONCE(*rung_word);
			t1 = tzmk_fw_counter();
		} while (rung == rung_before && t1 - t0 < BENCH_GIVE_UP_TICKS);
		local_irq_restore(flags);
		seen = READ_ONCE(*seen_word);
		if (seen > t0 && rung >= seen && t1 >= rung) {
			legs->ns[legs->samples] = seen - t0;
			legs->sn[legs->samples] = t1 - rung;
			legs->samples++;
		} else {
			legs->dropped++;
		}
		/* comm-pd finishes the round (its status page, its wait) before the next kick. */
		usleep_range(500, 1000);
	}
	memunmap(ctrl);
	return 0;
}

static void notify_bench(void)
{
	struct bench_legs legs = { 0 };
	u64 ns_sum = 0, sn_sum = 0;
	unsigned int i, n;
	long err;

	legs.ns = kcalloc(bench_rounds, sizeof(u64), GFP_KERNEL);
	legs.sn = kcalloc(bench_rounds, sizeof(u64), GFP_KERNEL);
	if (!legs.ns || !legs.sn) {
		snprintf(bench, sizeof(bench), "failed: no memory for %u rounds", bench_rounds);
		goto out;
	}
	err = work_on_cpu(0, bench_on_cpu0, &legs);
	n = legs.samples;
	if (err || !n) {
		snprintf(bench, sizeof(bench), "failed: error %ld, %u samples, %u dropped", err, n, legs.dropped);
		goto out;
	}
	for (i = 0; i < n; i++) {
		ns_sum += legs.ns[i];
		sn_sum += legs.sn[i];
	}
	sort(legs.ns, n, sizeof(u64), bench_cmp, NULL);
	sort(legs.sn, n, sizeof(u64), bench_cmp, NULL);
	snprintf(bench, sizeof(bench),
		 "samples=%u dropped=%u cntfrq=%u ns_sum=%llu ns_p50=%llu ns_min=%llu ns_max=%llu sn_sum=%llu "
		 "sn_p50=%llu sn_min=%llu sn_max=%llu",
		 n, legs.dropped, arch_timer_get_cntfrq(), ns_sum, legs.ns[n / 2], legs.ns[0], legs.ns[n - 1], sn_sum,
		 legs.sn[n / 2], legs.sn[0], legs.sn[n - 1]);
out:
	pr_info("bench: %s\n", bench);
	kfree(legs.ns);
	kfree(legs.sn);
}

static int __init tzmk_probe_init(void)
{
	enum tzmk_fw_verdict verdict;
	struct tzmk_fw fw;
	u64 start, first;

	verdict = tzmk_fw_identify(&fw);
	conduit = (char *)tzmk_fw_conduit_name(fw.conduit);
	smccc_version = fw.smccc_version;
	pr_info("smccc %u.%u, conduit %s\n", smccc_version >> 16, smccc_version & 0xffff, conduit);
	snprintf(sip_uid, sizeof(sip_uid), "%08x %08x %08x %08x", fw.uid[0], fw.uid[1], fw.uid[2], fw.uid[3]);
	revision_major = fw.revision_major;
	revision_minor = fw.revision_minor;
	/* A revision this code does not speak is still tzmk's: its calls are reported, not made less. */
	tzmk = verdict == TZMK_FW_TZMK || verdict == TZMK_FW_REVISION;
	if (!tzmk) {
		pr_info("no tzmk monitor: SiP Call UID answered %s\n", sip_uid);
		return 0;
	}

	/* Before the kick, so that the answer cannot be missed. */
	doorbell_request();
	start = ktime_get_ns();
	atomic_set(&doorbell_armed, 1);
	notify_secure = tzmk_fw_notify_secure(0);
	if (notify_secure == TZMK_SMC_SUCCESS && doorbell_requested) {
		if (wait_event_timeout(doorbell_wait, atomic64_read(&doorbell_first_ns) != 0,
				       msecs_to_jiffies(TZMK_DOORBELL_WAIT_MS))) {
			first = atomic64_read(&doorbell_first_ns);
			doorbell_wait_us = first > start ? (long)div_u64(first - start, NSEC_PER_USEC) : 0;
		} else {
			pr_err("no doorbell within %d ms after notify_secure\n", TZMK_DOORBELL_WAIT_MS);
		}
	}
	doorbells = atomic_read(&doorbell_count);
	go = tzmk_fw_call(TZMK_GO, 0, 0);
	unknown = tzmk_fw_call(TZMK_UNKNOWN_SIP, 0, 0);
	call_refusals();
	if (bench_rounds && notify_secure == TZMK_SMC_SUCCESS)
		notify_bench();

	pr_info("tzmk monitor: uid %s, revision %ld.%ld\n", sip_uid, revision_major, revision_minor);
	pr_info("notify_secure(0) = %ld, go = %ld, unknown sip = %ld\n", notify_secure, go, unknown);
	if (doorbell_wait_us >= 0)
		pr_info("doorbell irq %d: %u doorbells, the first %ld us after notify_secure\n", doorbell_irq,
			doorbells, doorbell_wait_us);
	else
		pr_info("doorbell irq %d: %u doorbells\n", doorbell_irq, doorbells);
	return 0;
}

static void __exit tzmk_probe_exit(void)
{
	if (doorbell_requested) {
		free_irq(doorbell_irq, NULL);
		irq_dispose_mapping(doorbell_irq);
	}
}

module_init(tzmk_probe_init);
module_exit(tzmk_probe_exit);

MODULE_DESCRIPTION("tzmk: probe the EL3 monitor's SiP service through SMCCC 1.1");
MODULE_LICENSE("GPL");
