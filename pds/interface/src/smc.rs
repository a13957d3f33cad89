//! The EL3 monitor's SiP service, as PDs and Linux call it (SMC Calling Convention, Arm DEN 0028).
//!
//! Function ids: bit 31 fast call, bit 30 SMC64, bits 29..24 the owning entity (2: SiP), bits
//! 15..0 the function. Results come back in x0 (a negative SMCCC status or a value) and x1..x3.

/// Owning entity number of SiP (silicon partner) service calls (SMCCC table 6-4).
pub const OWNER_SIP: u32 = 2;

/// `SiP Service Call Count`, `Call UID` and `Revision` (SMCCC 6.2 general service queries).
pub const SIP_CALL_COUNT: u32 = 0x8200_ff00;
pub const SIP_CALL_UID: u32 = 0x8200_ff01;
pub const SIP_REVISION: u32 = 0x8200_ff03;

/// Normal world -> secure: pend the secure world's kick interrupt. x1: the port (a hint for comm-pd).
pub const NOTIFY_SECURE: u32 = 0xc200_0001;
/// Secure (smc-capable PD) -> normal: raise the doorbell at Linux core x1. x2: the port.
pub const NOTIFY_NORMAL: u32 = 0xc200_0002;
/// Secure (attestation-pd) -> monitor: the normal-world kernel is verified; start Linux.
pub const GO: u32 = 0xc200_0003;

/// Secure (attestation-pd) -> monitor: replace the manifest in secure flash by the signed one in
/// the `manifest_update` region (secure RAM) and raise the security-version counter to its
/// security version (docs/trusted-boot.md, "Signed updates"). Answers in x0..x3 as
/// `update::UpdateOutcome` decodes them; the normal world gets `DENIED`.
pub const UPDATE_MANIFEST: u32 = 0xc200_0004;

/// The UID the monitor answers to `SIP_CALL_UID` in x0..x3 (a random UUID, 7e2f1b58-...).
pub const TZMK_UID: [u32; 4] = [0x7e2f_1b58, 0x4a3c_9d0e, 0x8b61_f2a4, 0x1c5e_d937];
/// Revision of this SiP interface: major in x0, minor in x1.
pub const REVISION: (u32, u32) = (0, 1);

/// SMCCC return codes (SMCCC table 5-2), as the signed value in x0.
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const NOT_REQUIRED: i64 = -2;
pub const INVALID_PARAMETER: i64 = -3;
/// tzmk's own status for `NOTIFY_SECURE` when no secure image runs (SMCCC leaves values below
/// -3 to the service): the call is valid but nobody can take the kick.
pub const NO_SECURE_WORLD: i64 = -0x100;
/// A secure-only function called from the normal world, a normal-world function called from the
/// secure world, or `GO` a second time.
pub const DENIED: i64 = -0x101;
/// `GO` before the secure world initialised the GIC distributor: nothing was handed over.
pub const GIC_NOT_INITIALISED: i64 = -0x102;
/// `NOTIFY_NORMAL` before `GO`: Linux is not running, and its interrupts are still the secure
/// world's.
pub const NORMAL_WORLD_NOT_STARTED: i64 = -0x103;

/// `NOTIFY_NORMAL`'s core argument meaning "the monitor's choice" (the first Linux core).
pub const ANY_NORMAL_CORE: u64 = u64::MAX;
/// `NOTIFY_SECURE` and `NOTIFY_NORMAL` take a port number below this (the port directory's size);
/// a larger one is `INVALID_PARAMETER`.
pub const PORT_LIMIT: u64 = crate::port::MAX_PORTS as u64;

/// A function id's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionId(pub u32);

impl FunctionId {
    pub const fn is_fast(self) -> bool {
        self.0 & (1 << 31) != 0
    }

    pub const fn is_smc64(self) -> bool {
        self.0 & (1 << 30) != 0
    }

    pub const fn owner(self) -> u32 {
        (self.0 >> 24) & 0x3f
    }

    pub const fn number(self) -> u32 {
        self.0 & 0xffff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fast_sip_calls() {
        for id in [NOTIFY_SECURE, NOTIFY_NORMAL, GO, UPDATE_MANIFEST] {
            let f = FunctionId(id);
            assert!(f.is_fast() && f.is_smc64() && f.owner() == OWNER_SIP, "{id:#x}");
        }
        for id in [SIP_CALL_COUNT, SIP_CALL_UID, SIP_REVISION] {
            let f = FunctionId(id);
            assert!(f.is_fast() && !f.is_smc64() && f.owner() == OWNER_SIP, "{id:#x}");
        }
    }
}
