/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tzmk_firmware.h: the normal world's view of tzmk's EL3 monitor (its SiP service, SMCCC 1.1,
 * Arm DEN 0028) and of the device-tree node that names the ports.
 *
 * One source for tzmk.ko and for tests/linux's tzmk_probe.ko, so that the probe's hostile SMC
 * checks run the very identification and notification code the driver runs. Static inline: a
 * module of its own for a dozen lines would be one more thing to load and version.
 *
 * Every function number, the UID and the status codes come from tzmk_abi.h (generated from
 * pds/interface by tzmk-abi-header), which must be included first.
 */
#ifndef TZMK_FIRMWARE_H
#define TZMK_FIRMWARE_H

#include <linux/arm-smccc.h>
#include <linux/mm.h>
#include <linux/of.h>
#include <linux/of_reserved_mem.h>
#include <linux/types.h>
#include <asm/arch_timer.h>

#ifndef TZMK_ABI_H
#error "include tzmk_abi.h before tzmk_firmware.h"
#endif

/* The node `tzmk dtb` writes: memory-region per shared region, the doorbell interrupt first. */
#define TZMK_DT_COMPATIBLE "tzmk,ports"

/* What the firmware is, as far as tzmk is concerned. */
enum tzmk_fw_verdict {
	/* SMC conduit, tzmk's UID, a revision this code speaks. */
	TZMK_FW_TZMK,
	/* The kernel's SMCCC conduit is not `smc` (hvc, or none): no EL3 monitor to talk to. */
	TZMK_FW_NO_SMC,
	/* SiP Call UID is someone else's: tzmk's function numbers may mean anything there. */
	TZMK_FW_NOT_TZMK,
	/* tzmk's UID, but a SiP revision whose major differs from TZMK_REVISION_MAJOR. */
	TZMK_FW_REVISION,
};

struct tzmk_fw {
	enum arm_smccc_conduit conduit;
	/* SMCCC_VERSION: major << 16 | minor. */
	u32 smccc_version;
	/* x0..x3 of SiP Call UID (an SMC32 call: the low 32 bits of each, SMCCC 6.2). */
	u32 uid[4];
	/* x0 and x1 of SiP Revision; -1 unless the UID is tzmk's (only then is it asked). */
	long revision_major, revision_minor;
};

/* x0 of one SMCCC call through the kernel's conduit (SMCCC_RET_NOT_SUPPORTED with none). */
static inline long tzmk_fw_call(u32 function, unsigned long a1, unsigned long a2)
{
	struct arm_smccc_res res;

	arm_smccc_1_1_invoke(function, a1, a2, &res);
	return (long)res.a0;
}

/*
 * Asks the firmware who it is. The UID is asked on any conduit (a `hvc` or absent firmware
 * answers NOT_SUPPORTED, which is not tzmk's UID); the revision only of tzmk's UID.
 */
static inline enum tzmk_fw_verdict tzmk_fw_identify(struct tzmk_fw *fw)
{
	static const u32 expected[4] = { TZMK_UID_0, TZMK_UID_1, TZMK_UID_2, TZMK_UID_3 };
	struct arm_smccc_res res;

	fw->conduit = arm_smccc_1_1_get_conduit();
	fw->smccc_version = arm_smccc_get_version();
	fw->revision_major = -1;
	fw->revision_minor = -1;
	arm_smccc_1_1_invoke(TZMK_SIP_CALL_UID, &res);
	fw->uid[0] = lower_32_bits(res.a0);
	fw->uid[1] = lower_32_bits(res.a1);
	fw->uid[2] = lower_32_bits(res.a2);
	fw->uid[3] = lower_32_bits(res.a3);
	if (memcmp(fw->uid, expected, sizeof(expected)))
		return fw->conduit == SMCCC_CONDUIT_SMC ? TZMK_FW_NOT_TZMK : TZMK_FW_NO_SMC;
	arm_smccc_1_1_invoke(TZMK_SIP_REVISION, &res);
	fw->revision_major = (s32)lower_32_bits(res.a0);
	fw->revision_minor = (s32)lower_32_bits(res.a1);
	if (fw->conduit != SMCCC_CONDUIT_SMC)
		return TZMK_FW_NO_SMC;
	return fw->revision_major == TZMK_REVISION_MAJOR ? TZMK_FW_TZMK : TZMK_FW_REVISION;
}

static inline const char *tzmk_fw_conduit_name(enum arm_smccc_conduit conduit)
{
	switch (conduit) {
	case SMCCC_CONDUIT_SMC:
		return "smc";
	case SMCCC_CONDUIT_HVC:
		return "hvc";
	default:
		return "none";
	}
}

/* The generic counter as the normal world reads it (CNTVCT; no EL2, so the secure side's CNTPCT). */
static inline u64 tzmk_fw_counter(void)
{
	return __arch_counter_get_cntvct();
}

/* NOTIFY_SECURE(port): pends the secure world's kick. x0: TZMK_SMC_SUCCESS or a refusal. */
static inline long tzmk_fw_notify_secure(unsigned int port)
{
	return tzmk_fw_call(TZMK_NOTIFY_SECURE, port, 0);
}

/* The tzmk,ports node, with a reference the caller puts (of_node_put); NULL when there is none. */
static inline struct device_node *tzmk_fw_node(void)
{
	return of_find_compatible_node(NULL, NULL, TZMK_DT_COMPATIBLE);
}

/*
 * The reserved-memory region that the node's `memory-region-names` calls `name` (through the
 * `memory-region` phandle at the same index). 0 with *base and *size set, or -EINVAL with *why
 * saying what is wrong with the device tree.
 */
static inline int tzmk_fw_region(struct device_node *np, const char *name, phys_addr_t *base, phys_addr_t *size,
				 const char **why)
{
	struct reserved_mem *rmem;
	struct device_node *node;
	int index = of_property_match_string(np, "memory-region-names", name);

	if (index < 0) {
		*why = "is not in the node's memory-region-names";
		return -EINVAL;
	}
	node = of_parse_phandle(np, "memory-region", index);
	if (!node) {
		*why = "has no phandle in memory-region";
		return -EINVAL;
	}
	rmem = of_reserved_mem_lookup(node);
	of_node_put(node);
	if (!rmem) {
		*why = "is not a reserved-memory node";
		return -EINVAL;
	}
	if (!PAGE_ALIGNED(rmem->base) || !PAGE_ALIGNED(rmem->size)) {
		*why = "is not whole pages";
		return -EINVAL;
	}
	*base = rmem->base;
	*size = rmem->size;
	return 0;
}

#endif /* TZMK_FIRMWARE_H */
