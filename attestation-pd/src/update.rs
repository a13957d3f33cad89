//! OP_UPDATE (docs/trusted-boot.md, "Signed updates"): a signed manifest from the normal world,
//! relayed to the monitor, which alone checks it against the platform key and the counter and
//! alone writes secure flash.
//!
//! comm-pd leaves the candidate in `attestation_update` (comm-pd writes, this PD reads) and its
//! length in MR0. This PD copies it once into `manifest_update` (secure RAM the monitor maps), calls
//! `UPDATE_MANIFEST` and answers the monitor's outcome (`UpdateReply` in MR0..MR1). When the
//! monitor accepted it, the manifest it wrote is reported as the pending update in every later
//! token; the boot's components keep the measurements and versions they booted with (nothing
//! was re-measured, and the running images are the booted manifest's).

use microkit::MemoryRegion;
use tzmk_interface::update::{UpdateOutcome, MANIFEST_LENGTH};
use tzmk_trust::manifest::{Manifest, MANIFEST_SIZE};

const _: () = assert!(MANIFEST_SIZE == tzmk_interface::update::MANIFEST_BYTES);

/// Relays the candidate of `length` bytes (an allegation) from `from` to `to` and asks `monitor`.
/// Returns the outcome and, when accepted, the manifest the monitor wrote.
pub fn relay(
    length: u64,
    from: &MemoryRegion,
    to: &MemoryRegion,
    monitor: impl FnOnce(u64) -> UpdateOutcome,
) -> (UpdateOutcome, Option<[u8; MANIFEST_SIZE]>) {
    // Only a manifest's size can be one: anything else is refused here, the monitor untouched.
    if length != MANIFEST_SIZE as u64 || to.size() < MANIFEST_SIZE {
        return (UpdateOutcome::Malformed { code: MANIFEST_LENGTH }, None);
    }
    let mut candidate = [0u8; MANIFEST_SIZE];
    if from.read_bytes(0, &mut candidate).is_err() || to.write_bytes(0, &candidate).is_err() {
        return (UpdateOutcome::Malformed { code: MANIFEST_LENGTH }, None);
    }
    let outcome = monitor(length);
    // The monitor copied the bytes before checking them; what it accepted is this copy.
    let accepted = (outcome.is_accepted() && Manifest::parse(&candidate).is_ok()).then_some(candidate);
    (outcome, accepted)
}

/// The reply's message registers (MR0, MR1: the `UpdateReply`'s 16 bytes, little-endian).
pub fn reply_words(outcome: &UpdateOutcome) -> [u64; 2] {
    outcome.reply().to_words()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr::NonNull;
    use tzmk_interface::update::UpdateReply;

    fn region(buffer: &mut [u8]) -> MemoryRegion {
        // SAFETY: the buffer outlives the region in each test.
        unsafe { MemoryRegion::new(NonNull::new(buffer.as_mut_ptr()).unwrap(), buffer.len()) }
    }

    #[test]
    fn a_wrong_length_never_reaches_the_monitor() {
        let (mut a, mut b) = (vec![7u8; 4096], vec![0u8; 4096]);
        let (from, to) = (region(&mut a), region(&mut b));
        for length in [0, 671, 673, 4096, u64::MAX] {
            let (outcome, accepted) = relay(length, &from, &to, |_| panic!("the monitor was called"));
            assert_eq!(outcome, UpdateOutcome::Malformed { code: MANIFEST_LENGTH });
            assert!(accepted.is_none());
        }
        assert!(b.iter().all(|&x| x == 0), "nothing copied to the monitor's region");
    }

    #[test]
    fn the_monitor_sees_one_copy_and_its_refusal_comes_back() {
        let (mut a, mut b) = (vec![7u8; 4096], vec![0u8; 4096]);
        let (from, to) = (region(&mut a), region(&mut b));
        let (outcome, accepted) = relay(MANIFEST_SIZE as u64, &from, &to, |length| {
            assert_eq!(length, MANIFEST_SIZE as u64);
            UpdateOutcome::Rollback { found: 1, stored: 2 }
        });
        assert_eq!(outcome, UpdateOutcome::Rollback { found: 1, stored: 2 });
        assert!(accepted.is_none());
        assert!(b[..MANIFEST_SIZE].iter().all(|&x| x == 7) && b[MANIFEST_SIZE..].iter().all(|&x| x == 0));
        assert_eq!(UpdateOutcome::from_reply(&UpdateReply::from_words(reply_words(&outcome))), outcome);
    }
}
