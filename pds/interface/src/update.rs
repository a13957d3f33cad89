//! A signed update of the security assets (docs/trusted-boot.md, "Signed updates"): the monitor's
//! answer to `smc::UPDATE_MANIFEST`, carried unchanged to Linux (`tzctl update FILE`).
//!
//! The answer is four numbers: a status and three details. In the monitor's registers they are
//! x0 (the status, an SMCCC-style signed value) and x1..x3; on the attestation port they are an
//! [`UpdateReply`]. [`UpdateOutcome`] is the one decoding and the one message for each.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Accepted: the manifest is in flash. Details: the counter now, the previous counter.
pub const ACCEPTED: i64 = 0;
/// The manifest is refused by its own checks (tzmk-trust's `ManifestError`). Details: the
/// error's code; for a rollback (code 16) the manifest's security version and the stored one.
pub const REFUSED_MANIFEST: i64 = -0x110;
/// The manifest names images stage 1 would refuse at the next boot. Details: the kind, the
/// reason (1 missing, 2 load address not the platform's, 3 outside its window, 4 the set of kinds
/// differs from the running manifest's).
pub const REFUSED_IMAGES: i64 = -0x111;
/// Secure flash failed (the old value stays). Details: the flash error's code, the offset.
pub const FLASH_FAILED: i64 = -0x112;
/// The counter's log is full. No details.
pub const COUNTER_FULL: i64 = -0x113;
/// Nothing to update: the monitor has no verified manifest or no writable flash (booted with
/// `-bios`, or no secure world). No details.
pub const UNAVAILABLE: i64 = -0x114;
/// The manifest's security version equals the counter and has been written as often as the
/// monitor allows (docs/trusted-boot.md, "Flash wear"): only a higher one is accepted. Details:
/// the security version, the limit.
pub const REWRITE_LIMIT: i64 = -0x115;
/// The call came from the normal world (`smc::DENIED`).
pub const DENIED: i64 = crate::smc::DENIED;

/// tzmk-trust's `ManifestError` codes the messages name.
pub const MANIFEST_LENGTH: u32 = 1;
pub const MANIFEST_WRONG_KEY_ID: u32 = 13;
pub const MANIFEST_BAD_SIGNATURE: u32 = 15;
pub const MANIFEST_ROLLBACK: u32 = 16;

/// The reasons of [`REFUSED_IMAGES`].
pub const IMAGE_MISSING: u32 = 1;
pub const IMAGE_WRONG_ADDRESS: u32 = 2;
pub const IMAGE_OUTSIDE_WINDOW: u32 = 3;
pub const IMAGE_KINDS_DIFFER: u32 = 4;

/// A manifest's size (tzmk-trust's `manifest::MANIFEST_SIZE`, checked there).
pub const MANIFEST_BYTES: usize = crate::attestation::HANDOFF_MANIFEST_SIZE;

/// An attestation port's update request: `attestation::OP_UPDATE`, the manifest's length (an
/// allegation: only [`MANIFEST_BYTES`] can be one) and its bytes. The reply is an
/// `AttestationReply` whose label is `attestation::OK` and whose first two words are the
/// [`UpdateReply`]'s bytes (little-endian), or an error label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct UpdateRequest {
    pub operation: u64,
    pub length: u64,
    pub manifest: [u8; MANIFEST_BYTES],
}

impl UpdateReply {
    /// The reply as two message registers (or reply words).
    pub fn to_words(&self) -> [u64; 2] {
        let bytes = self.as_bytes();
        [
            u64::from_le_bytes(bytes[..8].try_into().expect("16 bytes")),
            u64::from_le_bytes(bytes[8..].try_into().expect("16 bytes")),
        ]
    }

    /// The reply from two words.
    pub fn from_words(words: [u64; 2]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&words[0].to_le_bytes());
        bytes[8..].copy_from_slice(&words[1].to_le_bytes());
        Self::read_from_bytes(&bytes[..]).expect("16 bytes")
    }
}

/// The update's answer on the attestation port (little-endian, 16 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct UpdateReply {
    /// The status (one of the constants above, as i32).
    pub status: i32,
    pub detail: [u32; 3],
}

/// What an update came to, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    Accepted {
        counter: u32,
        previous: u32,
    },
    Rollback {
        found: u32,
        stored: u32,
    },
    NotSigned {
        code: u32,
    },
    Malformed {
        code: u32,
    },
    Images {
        kind: u32,
        reason: u32,
    },
    Flash {
        code: u32,
        offset: u32,
    },
    CounterFull,
    RewriteLimit {
        version: u32,
        limit: u32,
    },
    Unavailable,
    Denied,
    /// A status this side does not know (a newer monitor).
    Unknown {
        status: i64,
    },
}

impl UpdateOutcome {
    /// Decodes the monitor's x0..x3.
    pub fn from_registers(x: [u64; 4]) -> Self {
        Self::decode(x[0] as i64, [x[1] as u32, x[2] as u32, x[3] as u32])
    }

    /// Decodes a reply.
    pub fn from_reply(reply: &UpdateReply) -> Self {
        Self::decode(i64::from(reply.status), reply.detail)
    }

    fn decode(status: i64, d: [u32; 3]) -> Self {
        match status {
            ACCEPTED => UpdateOutcome::Accepted { counter: d[0], previous: d[1] },
            REFUSED_MANIFEST => match d[0] {
                MANIFEST_ROLLBACK => UpdateOutcome::Rollback { found: d[1], stored: d[2] },
                MANIFEST_WRONG_KEY_ID | MANIFEST_BAD_SIGNATURE => UpdateOutcome::NotSigned { code: d[0] },
                code => UpdateOutcome::Malformed { code },
            },
            REFUSED_IMAGES => UpdateOutcome::Images { kind: d[0], reason: d[1] },
            FLASH_FAILED => UpdateOutcome::Flash { code: d[0], offset: d[1] },
            COUNTER_FULL => UpdateOutcome::CounterFull,
            REWRITE_LIMIT => UpdateOutcome::RewriteLimit { version: d[0], limit: d[1] },
            UNAVAILABLE => UpdateOutcome::Unavailable,
            DENIED => UpdateOutcome::Denied,
            status => UpdateOutcome::Unknown { status },
        }
    }

    /// The status and details, for the registers or a reply.
    pub fn encode(&self) -> (i64, [u32; 3]) {
        match *self {
            UpdateOutcome::Accepted { counter, previous } => (ACCEPTED, [counter, previous, 0]),
            UpdateOutcome::Rollback { found, stored } => (REFUSED_MANIFEST, [MANIFEST_ROLLBACK, found, stored]),
            UpdateOutcome::NotSigned { code } | UpdateOutcome::Malformed { code } => (REFUSED_MANIFEST, [code, 0, 0]),
            UpdateOutcome::Images { kind, reason } => (REFUSED_IMAGES, [kind, reason, 0]),
            UpdateOutcome::Flash { code, offset } => (FLASH_FAILED, [code, offset, 0]),
            UpdateOutcome::CounterFull => (COUNTER_FULL, [0; 3]),
            UpdateOutcome::RewriteLimit { version, limit } => (REWRITE_LIMIT, [version, limit, 0]),
            UpdateOutcome::Unavailable => (UNAVAILABLE, [0; 3]),
            UpdateOutcome::Denied => (DENIED, [0; 3]),
            UpdateOutcome::Unknown { status } => (status, [0; 3]),
        }
    }

    /// The reply on the attestation port.
    pub fn reply(&self) -> UpdateReply {
        let (status, detail) = self.encode();
        UpdateReply { status: status as i32, detail }
    }

    pub fn is_accepted(&self) -> bool {
        matches!(self, UpdateOutcome::Accepted { .. })
    }
}

fn kind_name(kind: u32) -> &'static str {
    match kind {
        1 => "secure image",
        2 => "Linux kernel",
        3 => "Linux DTB",
        4 => "Linux initramfs",
        _ => "image",
    }
}

/// `accepted: ...` or `refused: <reason>`, one line.
impl fmt::Display for UpdateOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UpdateOutcome::Accepted { counter, previous } => {
                write!(f, "accepted: security version {counter} stored (was {previous})")
            }
            UpdateOutcome::Rollback { found, stored } => {
                write!(f, "refused: security version {found} is below the stored {stored}")
            }
            UpdateOutcome::NotSigned { code: MANIFEST_WRONG_KEY_ID } => {
                write!(f, "refused: the manifest names another key than the platform key")
            }
            UpdateOutcome::NotSigned { .. } => {
                write!(f, "refused: the signature does not verify with the platform key")
            }
            UpdateOutcome::Malformed { code: MANIFEST_LENGTH } => {
                write!(f, "refused: the manifest has the wrong length")
            }
            UpdateOutcome::Malformed { code } => {
                write!(f, "refused: the manifest is malformed (manifest error {code})")
            }
            UpdateOutcome::Images { kind, reason } => {
                let why = match reason {
                    IMAGE_MISSING => "is missing",
                    IMAGE_WRONG_ADDRESS => "is not at the platform's load address",
                    IMAGE_OUTSIDE_WINDOW => "reaches past its window",
                    IMAGE_KINDS_DIFFER => "is named by one of the running and the new manifest only",
                    _ => "is refused",
                };
                write!(f, "refused: the {} {why}", kind_name(kind))
            }
            UpdateOutcome::Flash { code, offset } => {
                write!(f, "refused: secure flash failed (flash error {code} at {offset:#x}); nothing changed")
            }
            UpdateOutcome::CounterFull => write!(f, "refused: the security-version counter's log is full"),
            UpdateOutcome::RewriteLimit { version, limit } => write!(
                f,
                "refused: security version {version} was written {limit} times already; only a higher one is accepted"
            ),
            UpdateOutcome::Unavailable => write!(f, "refused: this boot has no updatable manifest"),
            UpdateOutcome::Denied => write!(f, "refused: only the secure world may call the monitor's update"),
            UpdateOutcome::Unknown { status } => write!(f, "refused: status {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_round_trips_and_says_why() {
        let outcomes = [
            (UpdateOutcome::Accepted { counter: 2, previous: 1 }, "accepted: security version 2 stored (was 1)"),
            (UpdateOutcome::Rollback { found: 1, stored: 2 }, "refused: security version 1 is below the stored 2"),
            (UpdateOutcome::NotSigned { code: 15 }, "refused: the signature does not verify with the platform key"),
            (UpdateOutcome::NotSigned { code: 13 }, "refused: the manifest names another key than the platform key"),
            (UpdateOutcome::Malformed { code: 2 }, "refused: the manifest is malformed (manifest error 2)"),
            (
                UpdateOutcome::Images { kind: 2, reason: 2 },
                "refused: the Linux kernel is not at the platform's load address",
            ),
            (
                UpdateOutcome::Flash { code: 3, offset: 0x14_0000 },
                "refused: secure flash failed (flash error 3 at 0x140000); nothing changed",
            ),
            (UpdateOutcome::CounterFull, "refused: the security-version counter's log is full"),
            (
                UpdateOutcome::RewriteLimit { version: 3, limit: 8 },
                "refused: security version 3 was written 8 times already; only a higher one is accepted",
            ),
            (UpdateOutcome::Unavailable, "refused: this boot has no updatable manifest"),
            (UpdateOutcome::Denied, "refused: only the secure world may call the monitor's update"),
        ];
        for (outcome, text) in outcomes {
            let (status, d) = outcome.encode();
            assert_eq!(UpdateOutcome::from_registers([status as u64, d[0].into(), d[1].into(), d[2].into()]), outcome);
            assert_eq!(UpdateOutcome::from_reply(&outcome.reply()), outcome);
            assert_eq!(UpdateOutcome::from_reply(&UpdateReply::from_words(outcome.reply().to_words())), outcome);
            extern crate std;
            assert_eq!(std::format!("{outcome}"), text);
        }
        assert_eq!(
            UpdateOutcome::from_registers([-0x1ff_i64 as u64, 0, 0, 0]),
            UpdateOutcome::Unknown { status: -0x1ff }
        );
    }
}
