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
//! Control calls (the normal world's `Call` on the port): a protected procedure call from comm-pd
//! on the channel the two PDs share. Request: label = the command, MR0 = the input's length,
//! MR1.. = the input, packed little-endian. Reply: label = 0 and MR0 = the output's length, MR1..
//! = the output; or label = a [`ControlError`] code and nothing else. comm-pd checks the reply
//! (lengths, codes) as it checks everything a PD other than itself writes.

use crate::port::{ControlError, MAX_CONTROL_PAYLOAD};

/// Message registers a call's input or output takes at most: its length word and the bytes.
pub const CALL_WORDS: usize = 1 + MAX_CONTROL_PAYLOAD.div_ceil(8);

/// Why a call's reply (owner -> comm-pd) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// The label is no [`ControlError`] code.
    UnknownError(u64),
    /// MR0 claims more than a control reply carries, or than the message registers sent hold.
    BadLength(u64),
}

impl core::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReplyError::UnknownError(label) => write!(f, "label {label} is no control error code"),
            ReplyError::BadLength(length) => {
                write!(f, "a call output of {length} bytes (at most {MAX_CONTROL_PAYLOAD}, within the words sent)")
            }
        }
    }
}

/// Packs `bytes` (at most [`MAX_CONTROL_PAYLOAD`]) as MR0 = length, MR1.. = bytes; returns the
/// words used.
pub fn pack_call(bytes: &[u8], registers: &mut [u64]) -> usize {
    let bytes = &bytes[..bytes.len().min(MAX_CONTROL_PAYLOAD)];
    let words = 1 + bytes.len().div_ceil(8);
    registers[0] = bytes.len() as u64;
    crate::rt::pack(bytes, &mut registers[1..words]);
    words
}

/// Unpacks what [`pack_call`] packed from the `count` words sent into `out` (at least
/// [`MAX_CONTROL_PAYLOAD`] bytes); the length, or the reason it is not believed.
pub fn unpack_call(registers: &[u64], count: usize, out: &mut [u8]) -> Result<usize, ReplyError> {
    let count = count.min(registers.len());
    let length = *registers.first().filter(|_| count > 0).ok_or(ReplyError::BadLength(0))?;
    if length > MAX_CONTROL_PAYLOAD as u64 || length > out.len() as u64 || 1 + (length as usize).div_ceil(8) > count {
        return Err(ReplyError::BadLength(length));
    }
    let length = length as usize;
    crate::rt::unpack(&registers[1..count], &mut out[..length]);
    Ok(length)
}

/// The outcome a reply's label gives: `Ok(())` for 0, else the owner's [`ControlError`].
pub fn reply_label(label: u64) -> Result<Result<(), ControlError>, ReplyError> {
    if label == 0 {
        return Ok(Ok(()));
    }
    let code = u32::try_from(label).map_err(|_| ReplyError::UnknownError(label))?;
    ControlError::from_u32(code).map(Err).ok_or(ReplyError::UnknownError(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_round_trips_through_the_registers() {
        let mut registers = [0u64; 120];
        for length in [0, 1, 7, 8, 9, MAX_CONTROL_PAYLOAD] {
            let mut input = [0u8; MAX_CONTROL_PAYLOAD];
            input.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8 ^ 0x5a);
            let input = &input[..length];
            let words = pack_call(input, &mut registers);
            assert_eq!(words, 1 + length.div_ceil(8));
            assert!(words <= CALL_WORDS);
            let mut out = [0u8; MAX_CONTROL_PAYLOAD];
            assert_eq!(unpack_call(&registers, words, &mut out), Ok(length));
            assert_eq!(&out[..length], input);
        }
    }

    #[test]
    fn lying_replies_are_refused() {
        let mut out = [0u8; MAX_CONTROL_PAYLOAD];
        let mut registers = [0u64; 120];
        registers[0] = MAX_CONTROL_PAYLOAD as u64 + 1;
        assert!(matches!(unpack_call(&registers, 120, &mut out), Err(ReplyError::BadLength(_))));
        // 16 bytes claimed, one word sent after the length.
        registers[0] = 16;
        assert_eq!(unpack_call(&registers, 2, &mut out), Err(ReplyError::BadLength(16)));
        assert_eq!(unpack_call(&registers, 3, &mut out), Ok(16));
        assert_eq!(unpack_call(&registers, 0, &mut out), Err(ReplyError::BadLength(0)));
        assert_eq!(reply_label(0), Ok(Ok(())));
        assert_eq!(reply_label(4), Ok(Err(ControlError::UnknownCommand)));
        assert_eq!(reply_label(99), Err(ReplyError::UnknownError(99)));
        assert_eq!(reply_label(1 << 40), Err(ReplyError::UnknownError(1 << 40)));
    }
}
