//! The Linux driver's user-space ABI (`/dev/tzmk/<port>`), and the words in `port_ctrl` that the
//! driver and comm-pd share for notification.
//!
//! linux-side/driver/ (C) includes `tzmk_abi.h`, which `tzmk-abi-header` prints from this module
//! with a static assertion of every size and offset, so the C and Rust views cannot drift apart.
//! tzcomm's driver backend uses these types directly.
//!
//! ioctl numbers follow Linux's asm-generic encoding (`include/uapi/asm-generic/ioctl.h`, which
//! arm64 uses): direction in bits 31..30 (1 write, 2 read), argument size in 29..16, the type
//! (the driver's magic) in 15..8, the number in 7..0.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::port::{MAX_CONTROL_PAYLOAD, MAX_PORTS, NAME_LEN};

/// The driver's ioctl type byte. Not among the types Linux 6.1's
/// Documentation/userspace-api/ioctl/ioctl-number.rst lists.
pub const IOCTL_MAGIC: u8 = 0xb7;

const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(direction: u32, number: u32, size: usize) -> u32 {
    assert!(size < 1 << 14, "an ioctl argument fits in 14 bits of size");
    direction << 30 | (size as u32) << 16 | (IOCTL_MAGIC as u32) << 8 | number
}

/// `_IOR(IOCTL_MAGIC, 1, struct tzmk_port_info)`: the port's geometry and session.
pub const IOC_PORT_INFO: u32 = ioc(IOC_READ, 1, core::mem::size_of::<PortInfo>());
/// `_IOWR(IOCTL_MAGIC, 2, struct tzmk_call)`: a typed control call to the port's service.
pub const IOC_CALL: u32 = ioc(IOC_READ | IOC_WRITE, 2, core::mem::size_of::<Call>());
/// `_IO(IOCTL_MAGIC, 3)`: `notify_secure(port)`, for a client that produces through the mapping.
pub const IOC_KICK: u32 = ioc(0, 3, 0);
/// `_IOR(IOCTL_MAGIC, 4, struct tzmk_port_status)`: the port's counters in the secure world.
pub const IOC_STATUS: u32 = ioc(IOC_READ, 4, core::mem::size_of::<crate::port::PortStatus>());

/// What `IOC_PORT_INFO` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PortInfo {
    pub id: u16,
    /// A [`crate::port::Service`].
    pub service: u8,
    /// A [`crate::port::PortState`], as the directory says now.
    pub state: u8,
    /// This open file's session.
    pub session: u32,
    /// Data capacities of the rx (normal -> secure) and tx (secure -> normal) rings.
    pub rx_capacity: u32,
    pub tx_capacity: u32,
    /// The largest message `write` takes (the rx ring's) and `read` may return (the tx ring's).
    pub rx_max_message: u32,
    pub tx_max_message: u32,
    /// `mmap` offsets and lengths of the two rings (ring header first, page-aligned, whole pages).
    pub rx_mmap_offset: u64,
    pub rx_mmap_size: u64,
    pub tx_mmap_offset: u64,
    pub tx_mmap_size: u64,
    /// NUL-padded.
    pub name: [u8; NAME_LEN],
}

/// `IOC_CALL`'s argument: in, the command and `input_length` bytes of `data`; out,
/// `output_length` bytes of `data`. Fixed size, copied once each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Call {
    pub command: u32,
    pub input_length: u32,
    pub output_length: u32,
    /// 0; anything else is `-EINVAL`.
    pub reserved: u32,
    pub data: [u8; MAX_CONTROL_PAYLOAD],
}

/// `mmap` offset of a port file's tx ring: the rx ring is at 0, the tx ring at this offset (whole
/// pages of each, never anything else: no `port_ctrl`, no other port's ring).
pub const TX_MMAP_OFFSET: u64 = 1 << 32;

/// Where in `port_ctrl` the words below are.
pub const NOTIFY_OFFSET: usize = 0xc00;
/// `pending[PENDING_CORES + 1]`: u64 words that comm-pd ORs bits into before it rings the
/// doorbell, `1 << index` (the port's index in the directory) and [`PENDING_CONTROL`] for a
/// control reply. Word `c` holds what comm-pd aimed at core `c` (the monitor's core numbering,
/// MPIDR affinity 0); the last word, [`PENDING_ANY`], what it left to the monitor's choice. The
/// driver's interrupt handler swaps its own core's word with 0 and wakes only those ports'
/// waiters (OP-TEE's asynchronous notification value plays this part), then the any word, then
/// the other cores' words: the one doorbell interrupt is retargeted for each notification, and a
/// doorbell raised for one core may be taken by another.
pub const PENDING_OFFSET: usize = NOTIFY_OFFSET;
/// Cores with a pending word of their own.
pub const PENDING_CORES: usize = 8;
/// The index of the any-core pending word.
pub const PENDING_ANY: usize = PENDING_CORES;
/// The pending bit of a control reply (the mailbox).
pub const PENDING_CONTROL: u64 = 1 << 63;
/// `reader_core[MAX_PORTS]`: u32s the driver writes, the core (MPIDR affinity 0, the monitor's
/// numbering) where each port's reader waits, [`ANY_CORE`] when none does. comm-pd passes it to
/// `notify_normal`; it is an allegation of the normal world, and the monitor refuses a core that
/// is not a running Linux core (comm-pd then rings the monitor's choice).
pub const READER_CORE_OFFSET: usize = NOTIFY_OFFSET + 0x80;
/// The reader core of a port nobody waits on.
pub const ANY_CORE: u32 = u32::MAX;
/// The end of the notification words.
pub const NOTIFY_END: usize = READER_CORE_OFFSET + 4 * MAX_PORTS;
/// Where comm-pd's notification timestamps are: u64 readings of the generic counter (the secure
/// side's `CNTPCT_EL0`, which is Linux's `CNTVCT_EL0`: tzmk's machines have no EL2 in the normal
/// world, so no virtual offset). Written with plain stores, one at a time; read them as hints
/// (the system bench, docs/system-bench.md, pairs them with the driver's own readings). Nothing
/// in the secure world reads them back.
pub const STAMPS_OFFSET: usize = NOTIFY_END;
/// The counter as comm-pd's handler started on the latest kick (its `notified`, first thing).
pub const KICK_SEEN_OFFSET: usize = STAMPS_OFFSET;
/// The counter just before comm-pd's latest `notify_normal` SMC.
pub const DOORBELL_RUNG_OFFSET: usize = STAMPS_OFFSET + 8;
/// The end of the stamps.
pub const STAMPS_END: usize = STAMPS_OFFSET + 16;
/// How long comm-pd may look for more messages before it sleeps (`comm_pd::SPIN_MICROS`,
/// docs/ports.md "Spinning before sleeping"), as the normal world asks: a u32 of microseconds
/// that the driver writes (tzmk.ko's `secure_spin_us`). comm-pd spins for the smaller of this and
/// its own window; [`SPIN_DEFAULT`] (what comm-pd writes at start) leaves its own. Where the
/// normal world's cores do not run beside the secure core (one time-shared core, QEMU
/// `-icount`), a spin only delays the peer it waits for. An allegation, bounded by comm-pd's own
/// window: it can shorten comm-pd's spinning, never lengthen it.
pub const SPIN_HINT_OFFSET: usize = STAMPS_END;
/// The spin hint that leaves comm-pd's own window.
pub const SPIN_DEFAULT: u32 = u32::MAX;
/// The end of the driver's and comm-pd's words: `port_ctrl` must be at least this big.
pub const CTRL_WORDS_END: usize = SPIN_HINT_OFFSET + 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_linuxs_encoding() {
        // _IO('\xb7', 3) and _IOR/_IOWR with the sizes, as asm-generic/ioctl.h computes them.
        assert_eq!(IOC_KICK, 0x0000_b703);
        assert_eq!(IOC_PORT_INFO, 0x8000_0000 | (core::mem::size_of::<PortInfo>() as u32) << 16 | 0xb701);
        assert_eq!(IOC_CALL >> 30, 3);
        assert_eq!(core::mem::size_of::<PortInfo>(), 80);
        assert_eq!(core::mem::size_of::<Call>(), 16 + MAX_CONTROL_PAYLOAD);
    }

    #[test]
    fn notification_words_fit_after_the_mailbox() {
        const { assert!(NOTIFY_OFFSET >= crate::port::REPLY_OFFSET + crate::port::SLOT_SIZE) };
        const { assert!(CTRL_WORDS_END <= 0x1000) };
        const { assert!(PENDING_OFFSET + 8 * (PENDING_CORES + 1) <= READER_CORE_OFFSET) };
    }
}
