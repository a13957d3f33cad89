//! The secure world's status page: the first bytes of `port_ctrl`, written by comm-pd whenever the
//! normal world kicks it, read by Linux (tzctl status). Secure writes, normal reads: the page is
//! information for the normal world, never trusted input for the secure one.

use crate::rt::RtStats;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `StatusPage::magic`: "TZMK".
pub const STATUS_MAGIC: u32 = 0x545a_4d4b;
/// Layout version of [`StatusPage`].
pub const STATUS_VERSION: u32 = 2;

/// Where the page's sequence word is in `port_ctrl`; the page follows at [`STATUS_OFFSET`].
pub const STATUS_SEQUENCE_OFFSET: usize = 0;
pub const STATUS_OFFSET: usize = 8;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StatusPage {
    pub magic: u32,
    pub version: u32,
    /// Kicks comm-pd has taken from the normal world.
    pub kicks: u64,
    /// attestation-pd's interface version, asked by protected procedure call at boot.
    pub attestation_version: u64,
    /// rt-task's latest statistics.
    pub rt: RtStats,
    /// rt-task's events comm-pd forwarded to the `rt` port, and those it took while no one had
    /// the port open (unheard).
    pub rt_events_forwarded: u64,
    pub rt_events_unheard: u64,
}
