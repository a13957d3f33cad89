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
 * Function ids, the UID and the status codes come from tzmk_smc.h, which build.mk generates from
 * pds/interface/src/smc.rs (tzmk-smc-header).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/arm-smccc.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "tzmk_smc.h"

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

static const char *conduit_name(enum arm_smccc_conduit method)
{
	switch (method) {
	case SMCCC_CONDUIT_SMC:
		return "smc";
	case SMCCC_CONDUIT_HVC:
		return "hvc";
	default:
		return "none";
	}
}

static int __init tzmk_probe_init(void)
{
	static const u32 expected_uid[4] = { TZMK_UID_0, TZMK_UID_1, TZMK_UID_2, TZMK_UID_3 };
	struct arm_smccc_res res;
	u32 uid[4];

	conduit = (char *)conduit_name(arm_smccc_1_1_get_conduit());
	smccc_version = arm_smccc_get_version();
	pr_info("smccc %u.%u, conduit %s\n", smccc_version >> 16, smccc_version & 0xffff, conduit);

	/* SMC32 call: the UID words are the low 32 bits of x0..x3 (SMCCC 6.2). */
	arm_smccc_1_1_invoke(TZMK_SIP_CALL_UID, &res);
	uid[0] = lower_32_bits(res.a0);
	uid[1] = lower_32_bits(res.a1);
	uid[2] = lower_32_bits(res.a2);
	uid[3] = lower_32_bits(res.a3);
	snprintf(sip_uid, sizeof(sip_uid), "%08x %08x %08x %08x", uid[0], uid[1], uid[2], uid[3]);
	tzmk = memcmp(uid, expected_uid, sizeof(uid)) == 0;
	if (!tzmk) {
		pr_info("no tzmk monitor: SiP Call UID answered %s\n", sip_uid);
		return 0;
	}

	arm_smccc_1_1_invoke(TZMK_SIP_REVISION, &res);
	revision_major = (s32)lower_32_bits(res.a0);
	revision_minor = (s32)lower_32_bits(res.a1);

	arm_smccc_1_1_invoke(TZMK_NOTIFY_SECURE, 0, &res);
	notify_secure = (long)res.a0;
	arm_smccc_1_1_invoke(TZMK_GO, &res);
	go = (long)res.a0;
	arm_smccc_1_1_invoke(TZMK_UNKNOWN_SIP, &res);
	unknown = (long)res.a0;

	pr_info("tzmk monitor: uid %s, revision %ld.%ld\n", sip_uid, revision_major, revision_minor);
	pr_info("notify_secure(0) = %ld, go = %ld, unknown sip = %ld\n", notify_secure, go, unknown);
	return 0;
}

static void __exit tzmk_probe_exit(void)
{
}

module_init(tzmk_probe_init);
module_exit(tzmk_probe_exit);

MODULE_DESCRIPTION("tzmk: probe the EL3 monitor's SiP service through SMCCC 1.1");
MODULE_LICENSE("GPL");
