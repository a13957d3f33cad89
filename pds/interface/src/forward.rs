//! The protocol between comm-pd and the owner of a forwarded port (ports.toml's
//! `service = "forward"`, docs/adding-a-pd.md).
//!
//! Data: two secure rings (tzmk-ring) in regions system.xml maps into comm-pd and the owner only.
//! comm-pd copies each of the normal world's messages, validated, into the *requests* ring and
//! notifies the owner; the owner answers on the *replies* ring and notifies comm-pd, which copies
//! each reply to the port's tx ring. Whoever produces into a ring resets it at start (zeroed
//! memory is an empty ring, so the order the PDs start in does not matter); each checks what the
//! other writes, so an owner that breaks a ring is cut off (its port faulted with
//! `PortFault::OWNER`) and every other port goes on.
//!
//! Control calls (the normal world's `Call` on the port) are asynchronous, so that an owner that
//! never answers cannot stop comm-pd (a protected procedure call cannot time out in seL4): the
//! last [`CALL_SLOT_SIZE`] bytes of each region are a *call slot*, the rest is the ring
//! ([`ring_bytes`]). comm-pd writes a call into the requests region's slot and notifies the owner
//! on their channel; the owner writes its answer into the replies region's slot and notifies
//! back. comm-pd keeps serving everything else meanwhile, and an owner that has not answered by a
//! deadline loses its port (faulted, [`OWNER_SILENT`](crate::port::PortFault::OWNER_SILENT)).
//!
//! A slot: [`CallHeader`] (16 bytes) then the payload (at most [`MAX_CONTROL_PAYLOAD`] bytes).
//! The header's first word (`sequence | length << 32`) is stored last, atomically with release
//! ordering, so a reader that sees the sequence sees the whole body; the reader loads it with
//! acquire ordering, copies, and loads it again (a sequence lock) before it believes the copy.
//! A call's `sequence` is comm-pd's (never 0, which a fresh slot holds), its `word` the command;
//! an answer echoes the call's sequence, its `word` 0 or a [`ControlError`] code, and carries
//! the output. Everything read from the other side's slot is checked: lengths, codes, sequence.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::port::{ControlError, MAX_CONTROL_PAYLOAD};

/// Bytes at the end of each forwarded-port region that carry control calls (the requests
/// region's: comm-pd's calls; the replies region's: the owner's answers).
pub const CALL_SLOT_SIZE: usize = 512;

/// The bytes of a region of `region_size` bytes that hold its ring: all but the call slot.
pub const fn ring_bytes(region_size: usize) -> usize {
    region_size.saturating_sub(CALL_SLOT_SIZE)
}

/// Where the call slot of a region of `region_size` bytes starts (`None`: too small for one).
pub const fn slot_offset(region_size: usize) -> Option<usize> {
    region_size.checked_sub(CALL_SLOT_SIZE)
}

/// The head of a call slot; the payload follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CallHeader {
    /// The call's number (comm-pd counts from 1); an answer echoes it. Stored last (with
    /// `length`, as one u64).
    pub sequence: u32,
    /// Bytes of payload after the header.
    pub length: u32,
    /// A call: the command. An answer: 0, or a [`ControlError`] code.
    pub word: u32,
    pub reserved: u32,
}

/// The header's size: the payload's offset in the slot.
pub const CALL_HEADER_SIZE: usize = core::mem::size_of::<CallHeader>();

const _: () = assert!(CALL_HEADER_SIZE + MAX_CONTROL_PAYLOAD <= CALL_SLOT_SIZE);

/// Why an answer (owner -> comm-pd) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// The word is no [`ControlError`] code.
    UnknownError(u32),
    /// The length is more than a control reply carries.
    BadLength(u32),
}

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReplyError::UnknownError(word) => write!(f, "{word} is no control error code"),
            ReplyError::BadLength(length) => {
                write!(f, "a call output of {length} bytes (at most {MAX_CONTROL_PAYLOAD})")
            }
        }
    }
}

/// The outcome an answer's header gives: the output's length, or the owner's [`ControlError`];
/// or why the answer is not believed.
pub fn answer(header: &CallHeader) -> Result<Result<usize, ControlError>, ReplyError> {
    if header.word != 0 {
        return ControlError::from_u32(header.word).map(Err).ok_or(ReplyError::UnknownError(header.word));
    }
    if header.length as usize > MAX_CONTROL_PAYLOAD {
        return Err(ReplyError::BadLength(header.length));
    }
    Ok(Ok(header.length as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_fits_a_whole_call_and_the_ring_the_rest() {
        assert_eq!(CALL_HEADER_SIZE, 16);
        assert_eq!(ring_bytes(0x2000), 0x1e00);
        assert_eq!(slot_offset(0x2000), Some(0x1e00));
        assert_eq!(slot_offset(0x100), None);
        assert_eq!(ring_bytes(0x100), 0);
    }

    #[test]
    fn lying_answers_are_refused() {
        let header = |word, length| CallHeader { sequence: 1, length, word, reserved: 0 };
        assert_eq!(answer(&header(0, 16)), Ok(Ok(16)));
        assert_eq!(answer(&header(0, MAX_CONTROL_PAYLOAD as u32)), Ok(Ok(MAX_CONTROL_PAYLOAD)));
        assert_eq!(answer(&header(0, MAX_CONTROL_PAYLOAD as u32 + 1)), Err(ReplyError::BadLength(489)));
        assert_eq!(answer(&header(4, 0)), Ok(Err(ControlError::UnknownCommand)));
        assert_eq!(answer(&header(99, 0)), Err(ReplyError::UnknownError(99)));
    }
}
