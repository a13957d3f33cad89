//! OP_UPDATE (docs/trusted-boot.md, "Signed updates"): a signed manifest from the normal world,
//! relayed to the monitor, which alone decides against the platform key and the counter and
//! alone writes secure flash.
//!
//! Before the monitor is called, the [`Gate`] answers what it can here, in this PD (S-EL0,
//! priority 150: rt-task, at 250, preempts it at any instruction), so that a storm of bad
//! candidates never reaches EL3, where the secure core runs with interrupts masked: a candidate
//! identical to the last one refused gets the same answer at once, and one that does not parse or
//! does not verify with the platform key is refused here. Only candidates that verify go on, and
//! the monitor verifies them again (it trusts no PD with secure flash).
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

/// What attestation-pd answers itself (see the module comment).
#[derive(Debug)]
pub struct Gate {
    platform_key: [u8; 32],
    /// The last candidate refused (here or by the monitor) and the answer it got.
    last_refused: Option<([u8; MANIFEST_SIZE], UpdateOutcome)>,
    /// Signature verifications done here (the figures and the tests).
    verifications: u32,
    /// Candidates answered here, without the monitor.
    answered_here: u32,
}

impl Gate {
    /// A gate for manifests signed by `platform_key` (the provisioning block's, from the handoff).
    pub const fn new(platform_key: [u8; 32]) -> Self {
        Self { platform_key, last_refused: None, verifications: 0, answered_here: 0 }
    }

    /// Signature verifications done so far.
    pub fn verifications(&self) -> u32 {
        self.verifications
    }

    /// Candidates answered here so far, without the monitor.
    pub fn answered_here(&self) -> u32 {
        self.answered_here
    }

    /// `Err(answer)` when the candidate is answered here; `Ok` when the monitor must decide.
    pub fn check(&mut self, candidate: &[u8; MANIFEST_SIZE]) -> Result<(), UpdateOutcome> {
        let answer = self.decide(candidate);
        if answer.is_err() {
            self.answered_here += 1;
        }
        answer
    }

    fn decide(&mut self, candidate: &[u8; MANIFEST_SIZE]) -> Result<(), UpdateOutcome> {
        if let Some((refused, outcome)) = &self.last_refused {
            if refused == candidate {
                return Err(*outcome);
            }
        }
        let manifest = Manifest::parse(candidate).map_err(|e| self.refused(candidate, e.into()))?;
        self.verifications += 1;
        manifest.verify(&self.platform_key).map_err(|e| self.refused(candidate, e.into()))
    }

    /// Remembers the monitor's answer: a refusal that stays true (everything but a flash failure
    /// or an unreachable monitor) is given again to the same bytes without asking.
    pub fn answered(&mut self, candidate: &[u8; MANIFEST_SIZE], outcome: UpdateOutcome) {
        let transient =
            matches!(outcome, UpdateOutcome::Flash { .. } | UpdateOutcome::Unavailable | UpdateOutcome::Unknown { .. });
        if !outcome.is_accepted() && !transient {
            self.refused(candidate, outcome);
        }
    }

    fn refused(&mut self, candidate: &[u8; MANIFEST_SIZE], outcome: UpdateOutcome) -> UpdateOutcome {
        self.last_refused = Some((*candidate, outcome));
        outcome
    }
}

const _: () = assert!(MANIFEST_SIZE == tzmk_interface::update::MANIFEST_BYTES);

/// Relays the candidate of `length` bytes (an allegation) from `from` to `to` and asks `monitor`.
/// Returns the outcome and, when accepted, the manifest the monitor wrote.
pub fn relay(
    gate: &mut Gate,
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
    if from.read_bytes(0, &mut candidate).is_err() {
        return (UpdateOutcome::Malformed { code: MANIFEST_LENGTH }, None);
    }
    if let Err(outcome) = gate.check(&candidate) {
        return (outcome, None);
    }
    if to.write_bytes(0, &candidate).is_err() {
        return (UpdateOutcome::Malformed { code: MANIFEST_LENGTH }, None);
    }
    let outcome = monitor(length);
    gate.answered(&candidate, outcome);
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
            let (outcome, accepted) =
                relay(&mut Gate::new([0; 32]), length, &from, &to, |_| panic!("the monitor was called"));
            assert_eq!(outcome, UpdateOutcome::Malformed { code: MANIFEST_LENGTH });
            assert!(accepted.is_none());
        }
        assert!(b.iter().all(|&x| x == 0), "nothing copied to the monitor's region");
    }

    fn key() -> tzmk_trust::SigningKey {
        tzmk_trust::SigningKey::from_bytes(&[0x42; 32])
    }

    fn signed(version: u32) -> [u8; MANIFEST_SIZE] {
        let mut builder = tzmk_trust::manifest::ManifestBuilder::new(version);
        builder.image(tzmk_trust::manifest::ImageKind::LinuxKernel, "image", version, 0xc020_0000, b"kernel").unwrap();
        let mut out = [0u8; MANIFEST_SIZE];
        out.copy_from_slice(zerocopy::IntoBytes::as_bytes(&builder.sign(&key()).unwrap()));
        out
    }

    #[test]
    fn the_monitor_sees_one_copy_and_its_refusal_comes_back() {
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        a[..MANIFEST_SIZE].copy_from_slice(&signed(1));
        let (from, to) = (region(&mut a), region(&mut b));
        let mut gate = Gate::new(key().verifying_key().to_bytes());
        let (outcome, accepted) = relay(&mut gate, MANIFEST_SIZE as u64, &from, &to, |length| {
            assert_eq!(length, MANIFEST_SIZE as u64);
            UpdateOutcome::Rollback { found: 1, stored: 2 }
        });
        assert_eq!(outcome, UpdateOutcome::Rollback { found: 1, stored: 2 });
        assert!(accepted.is_none());
        assert_eq!(b[..MANIFEST_SIZE], signed(1), "the monitor's copy");
        assert!(b[MANIFEST_SIZE..].iter().all(|&x| x == 0));
        assert_eq!(UpdateOutcome::from_reply(&UpdateReply::from_words(reply_words(&outcome))), outcome);
        // The same bytes again: the monitor's refusal, without asking it or verifying again.
        let (again, _) = relay(&mut gate, MANIFEST_SIZE as u64, &from, &to, |_| panic!("the monitor was asked again"));
        assert_eq!(again, outcome);
        assert_eq!(gate.verifications(), 1);
    }

    /// An update storm: the bad candidates never reach the monitor (EL3), and one resubmitted
    /// costs no second verification; a good one still does, and the monitor decides it.
    #[test]
    fn bad_candidates_are_answered_here_and_repeats_cost_nothing() {
        let mut gate = Gate::new(key().verifying_key().to_bytes());
        let mut flipped = signed(2);
        flipped[MANIFEST_SIZE - 1] ^= 1;
        let mut garbled = signed(2);
        garbled[0] ^= 1;
        let other = {
            let mut builder = tzmk_trust::manifest::ManifestBuilder::new(2);
            builder.image(tzmk_trust::manifest::ImageKind::LinuxKernel, "image", 2, 0xc020_0000, b"k").unwrap();
            let mut out = [0u8; MANIFEST_SIZE];
            out.copy_from_slice(zerocopy::IntoBytes::as_bytes(
                &builder.sign(&tzmk_trust::SigningKey::from_bytes(&[0x43; 32])).unwrap(),
            ));
            out
        };
        for round in 0..3 {
            assert_eq!(gate.check(&flipped), Err(UpdateOutcome::NotSigned { code: 15 }), "round {round}");
            assert_eq!(gate.check(&garbled), Err(UpdateOutcome::Malformed { code: 2 }), "round {round}");
            assert_eq!(gate.check(&other), Err(UpdateOutcome::NotSigned { code: 13 }), "round {round}");
        }
        // garbled never parses (no verification); flipped and other verified once a round: only
        // the last refused is remembered.
        assert_eq!(gate.verifications(), 6);
        for _ in 0..100 {
            assert_eq!(gate.check(&flipped), Err(UpdateOutcome::NotSigned { code: 15 }));
        }
        assert_eq!(gate.verifications(), 7, "the last refused again and again: verified once");
        assert_eq!(gate.check(&signed(2)), Ok(()), "a good one goes on to the monitor");
        // A monitor's transient failure is not remembered: the same bytes are asked again.
        gate.answered(&signed(2), UpdateOutcome::Flash { code: 2, offset: 0 });
        assert_eq!(gate.check(&signed(2)), Ok(()));
    }
}
