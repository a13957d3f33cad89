//! attestation-pd: holds the device secret and the monitor's boot handoff, and answers comm-pd's
//! protected procedure calls about them.
//!
//! It is passive (it runs on its caller's budget) and maps only secure-only memory; `tzmk audit`
//! checks that no other PD maps the secrets and that it maps nothing the normal world can reach.
#![cfg_attr(not(test), no_std)]

pub mod boot;
pub mod evidence;
pub mod runtime;
pub mod token;
pub mod update;

use microkit::{memory_region, smc_call, with_msg_regs_mut, Channel, Handler, MemoryRegion, MessageInfo};
use tzmk_interface::attestation::{
    BootHandoff, ERR_BAD_ARGUMENT, ERR_LOG_FULL, ERR_NO_HANDOFF, ERR_UNKNOWN_OPERATION, HANDOFF_MAGIC, HANDOFF_VERSION,
    INTERFACE_VERSION, MAX_EVIDENCE, MAX_NONCE, MEASURE_NAME_SIZE, OK, OP_EVIDENCE, OP_MEASURE, OP_SECURE_MEASUREMENT,
    OP_UPDATE, OP_VERSION,
};
use tzmk_interface::smc;
use tzmk_interface::update::UpdateOutcome;
use zerocopy::{FromBytes, FromZeros, IntoBytes};
use zeroize::Zeroize;

/// The handoff as read once at boot: `None` when the monitor left none, or a corrupt one.
pub fn read_handoff(bytes: &[u8]) -> Option<BootHandoff> {
    let (handoff, _) = BootHandoff::read_from_prefix(bytes).ok()?;
    valid_handoff_header(&handoff).then_some(handoff)
}

/// Whether the EL3 monitor that answers SMCs is tzmk's (its SiP UID), judged from the registers
/// it returned for `SIP_CALL_UID`. Only tzmk's monitor leaves a boot handoff; without it the
/// secure-only RAM where the handoff lives may not even be readable (on QEMU without
/// `secure=on`, a read is a synchronous external abort).
pub fn is_tzmk_monitor(answer: &microkit::SmcContext) -> bool {
    answer[..4].iter().zip(smc::TZMK_UID).all(|(&register, word)| register == u64::from(word))
}

/// An answer: the reply label and its message registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub label: u64,
    pub words: [u64; 4],
    pub count: usize,
}

impl Answer {
    const fn error(label: u64) -> Self {
        Self { label, words: [0; 4], count: 0 }
    }
}

/// Answers operation `op` (the call's label).
pub fn answer(op: u64, handoff: Option<&Measurements>) -> Answer {
    match op {
        OP_VERSION => Answer { label: OK, words: [INTERFACE_VERSION, 0, 0, 0], count: 1 },
        OP_SECURE_MEASUREMENT => match handoff {
            Some(h) => {
                let mut words = [0; 4];
                for (word, chunk) in words.iter_mut().zip(h.secure_image_sha256.chunks_exact(8)) {
                    *word = u64::from_be_bytes(chunk.try_into().expect("chunks of 8"));
                }
                Answer { label: OK, words, count: 4 }
            }
            None => Answer::error(ERR_NO_HANDOFF),
        },
        _ => Answer::error(ERR_UNKNOWN_OPERATION),
    }
}

#[derive(Debug)]
pub struct AttestationPd {
    /// Mapped for the signing service; not read yet by any operation.
    _secrets: MemoryRegion,
    /// What operations answer from the handoff (read once at start).
    handoff: Option<Measurements>,
    /// Evidence for OP_EVIDENCE, when the handoff gave the attestation key.
    attester: Option<evidence::Attester>,
    /// Where the evidence goes for comm-pd to copy.
    evidence_region: MemoryRegion,
    /// PCR 1 and the event log the runtime measurements extend (with a valid handoff).
    runtime: Option<runtime::RuntimeLog>,
    /// Where comm-pd leaves an OP_UPDATE's manifest (read-only here).
    update_region: MemoryRegion,
    /// Where this PD leaves it for the monitor (secure RAM the monitor maps).
    manifest_update: MemoryRegion,
    /// What OP_UPDATE answers without the monitor (with a valid handoff: its platform key).
    update_gate: Option<update::Gate>,
    /// The OP_UPDATE answers logged since the last accepted update, and how many answers were
    /// given since the last line that are among them.
    updates_logged: heapless::Vec<UpdateOutcome, 8>,
    quiet_updates: u32,
}

/// The handoff's facts that outlive start-up (its CDIs do not: they are wiped from the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurements {
    pub secure_image_sha256: [u8; 32],
}

pub fn init() -> AttestationPd {
    microkit::logger::init(log::LevelFilter::Info);
    let secrets = memory_region!(secrets_vaddr, secrets_size);
    let handoff_region = memory_region!(handoff_vaddr, handoff_size);
    // Bound so the symbol exists for the tool; every call arrives on it.
    let _comm = microkit::channel!(comm_channel);
    let uid = smc_call(&[u64::from(smc::SIP_CALL_UID), 0, 0, 0, 0, 0, 0, 0]);
    let monitor = matches!(&uid, Ok(answer) if is_tzmk_monitor(answer));
    let evidence_region = memory_region!(evidence_vaddr, evidence_size);
    let update_region = memory_region!(update_vaddr, update_size);
    let manifest_update = memory_region!(manifest_update_vaddr, manifest_update_size);
    let mut verdict = Err(boot::Refusal::NoHandoff);
    let mut measurements = None;
    let mut attester = None;
    let mut runtime = None;
    let mut update_gate = None;
    match uid {
        Ok(answer) if is_tzmk_monitor(&answer) => {
            // The one copy of the handoff (CDIs included), wiped below whatever happens.
            let mut handoff = BootHandoff::new_zeroed();
            if take_handoff(&handoff_region, &mut handoff) {
                log::info!("ready: boot handoff from the monitor is valid");
                verdict = boot::check_linux(&handoff);
                attester = match evidence::Attester::new(&handoff) {
                    Ok(attester) => Some(attester),
                    Err(e) => {
                        log::warn!("no attestation key from the handoff ({e:?}): evidence unavailable");
                        None
                    }
                };
                measurements = Some(Measurements { secure_image_sha256: handoff.secure_image_sha256 });
                update_gate = Some(update::Gate::new(handoff.platform_public_key));
                runtime = handoff.event_log.get(..handoff.event_log_length as usize).and_then(runtime::RuntimeLog::new);
                if runtime.is_none() {
                    log::warn!("the handoff's event log does not parse: runtime measurements unavailable");
                }
            } else {
                log::info!("ready: the monitor left no valid boot handoff (measurements unavailable)");
            }
            wipe_handoff(&mut handoff);
        }
        Ok(answer) => {
            log::info!("ready: no tzmk monitor (SiP UID call answered {:#x}): measurements unavailable", answer[0]);
        }
        Err(e) => {
            log::info!("ready: cannot reach the monitor ({e}): measurements unavailable");
        }
    }
    if monitor {
        match verdict {
            Ok(()) => {
                log::info!("Linux's kernel, DTB and initramfs are the signed ones");
                release_normal_world();
            }
            // tzmk's monitor leaves a handoff on every boot with a secure world: none (or a broken
            // one) means nothing of Linux was measured, and it does not run.
            Err(refusal) => log::error!("Linux may not run: {refusal}; its cores stay parked"),
        }
    }
    AttestationPd {
        _secrets: secrets,
        handoff: measurements,
        attester,
        evidence_region,
        runtime,
        update_region,
        manifest_update,
        update_gate,
        updates_logged: heapless::Vec::new(),
        quiet_updates: 0,
    }
}

/// Reads the handoff page once into `copy` and zeroes the CDIs in the page, so that after
/// start-up only `copy` (which the caller wipes with [`wipe_handoff`] once it has derived what it
/// needs) and what this PD derived from it hold anything of them. Whether `copy` is a valid
/// handoff; the page's CDIs are wiped either way.
pub fn take_handoff(region: &MemoryRegion, copy: &mut BootHandoff) -> bool {
    let read = region.read_bytes(0, copy.as_mut_bytes()).is_ok();
    let zeros = [0u8; 32];
    for offset in [core::mem::offset_of!(BootHandoff, cdi_attest), core::mem::offset_of!(BootHandoff, cdi_seal)] {
        if let Err(e) = region.write_bytes(offset, &zeros) {
            log::warn!("boot_handoff: the CDIs could not be wiped: {e}");
        }
    }
    read && valid_handoff_header(copy)
}

/// Wipes the handoff's copy: its CDIs and everything else of it (`zeroize`: the writes are not
/// optimised away). CDI_Seal has no use in this PD yet; it is wiped all the same.
pub fn wipe_handoff(copy: &mut BootHandoff) {
    copy.as_mut_bytes().zeroize();
}

fn valid_handoff_header(handoff: &BootHandoff) -> bool {
    handoff.magic == HANDOFF_MAGIC && handoff.version == HANDOFF_VERSION
}

/// Sends the monitor `go`: seL4 has initialised the GIC and stage 2 found Linux's images to be
/// the signed ones, so the monitor may hand Linux its interrupts and start it.
fn release_normal_world() {
    match smc_call(&[u64::from(smc::GO), 0, 0, 0, 0, 0, 0, 0]) {
        Ok(answer) => log::info!("go: {}", go_outcome(answer[0] as i64)),
        Err(e) => log::warn!("go: cannot reach the monitor: {e}"),
    }
}

impl AttestationPd {
    /// OP_UPDATE: the manifest comm-pd left in the update region (MR0 its length) to the monitor;
    /// the outcome in MR0..MR1 (an `UpdateReply`). Every outcome is an OK reply: the refusal is
    /// the monitor's answer, not a failed call.
    fn update(&mut self, registers: usize) -> Answer {
        let length = if registers >= 1 { microkit::get_mr(0) } else { 0 };
        let monitor = |length: u64| match smc_call(&[u64::from(smc::UPDATE_MANIFEST), length, 0, 0, 0, 0, 0, 0]) {
            Ok(answer) => UpdateOutcome::from_registers([answer[0], answer[1], answer[2], answer[3]]),
            Err(_) => UpdateOutcome::Unavailable,
        };
        // Without a valid handoff there is no platform key to check against, and no tzmk monitor.
        let (outcome, accepted) = match self.update_gate.as_mut() {
            Some(gate) => update::relay(gate, length, &self.update_region, &self.manifest_update, monitor),
            None => (UpdateOutcome::Unavailable, None),
        };
        if let (Some(bytes), Some(attester)) = (accepted, self.attester.as_mut()) {
            attester.take_pending_update(&bytes);
        }
        // An answer already logged since the last accepted update is counted, not logged again:
        // a storm would flood seL4's console (a system call per character) on comm-pd's budget.
        if accepted.is_some() {
            self.updates_logged.clear();
        }
        if self.updates_logged.contains(&outcome) {
            self.quiet_updates += 1;
        } else {
            if self.quiet_updates > 0 {
                log::info!("update: {} answers given before, not logged again", self.quiet_updates);
                self.quiet_updates = 0;
            }
            log::info!("update: {outcome}");
            // Full: every later answer is logged (no state is lost, only lines are saved).
            let _ = self.updates_logged.push(outcome);
        }
        let words = update::reply_words(&outcome);
        Answer { label: OK, words: [words[0], words[1], 0, 0], count: 2 }
    }

    /// OP_EVIDENCE: the nonce from the message registers (MR0 its length, MR1.. its bytes), the
    /// evidence into the evidence region, its length in MR0.
    fn evidence(&self, registers: usize) -> Answer {
        let Some(attester) = &self.attester else { return Answer::error(ERR_NO_HANDOFF) };
        let mut nonce = [0u8; MAX_NONCE];
        let length = microkit::get_mr(0) as usize;
        if length > MAX_NONCE || registers < 1 + length.div_ceil(8) {
            return Answer::error(ERR_BAD_ARGUMENT);
        }
        for (index, chunk) in nonce.chunks_mut(8).enumerate().take(length.div_ceil(8)) {
            chunk.copy_from_slice(&microkit::get_mr(1 + index).to_le_bytes());
        }
        let mut out = [0u8; MAX_EVIDENCE];
        let runtime = self.runtime.as_ref().map(|r| r.measurements()).unwrap_or_default();
        match attester.evidence(&nonce[..length], runtime, &mut out) {
            Ok(n) if self.evidence_region.write_bytes(0, &out[..n]).is_ok() => {
                Answer { label: OK, words: [n as u64, 0, 0, 0], count: 1 }
            }
            Ok(_) => Answer::error(ERR_BAD_ARGUMENT),
            Err(evidence::EvidenceError::Token(token::TokenError::BadNonceLength)) => Answer::error(ERR_BAD_ARGUMENT),
            Err(e) => {
                log::warn!("evidence: {e:?}");
                Answer::error(ERR_BAD_ARGUMENT)
            }
        }
    }
}

impl AttestationPd {
    /// OP_MEASURE: the name in MR0..MR1, the digest in MR2..MR5 (little-endian words), exactly six
    /// registers; the measurement's index in MR0.
    fn measure(&mut self, registers: usize) -> Answer {
        let Some(runtime) = &mut self.runtime else { return Answer::error(ERR_NO_HANDOFF) };
        if registers != (MEASURE_NAME_SIZE + 32) / 8 {
            return Answer::error(ERR_BAD_ARGUMENT);
        }
        let mut bytes = [0u8; MEASURE_NAME_SIZE + 32];
        for (index, chunk) in bytes.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&microkit::get_mr(index).to_le_bytes());
        }
        let (name, digest) = bytes.split_at(MEASURE_NAME_SIZE);
        let (name, digest) = (name.try_into().expect("16 bytes"), digest.try_into().expect("32 bytes"));
        match runtime.measure(name, digest) {
            Ok(index) => {
                let reported = &runtime.measurements()[index];
                log::info!("runtime measurement #{index}: '{}' {}", reported.name, Short(&reported.sha256));
                Answer { label: OK, words: [index as u64, 0, 0, 0], count: 1 }
            }
            Err(runtime::MeasureError::BadName) => Answer::error(ERR_BAD_ARGUMENT),
            Err(runtime::MeasureError::Full) => Answer::error(ERR_LOG_FULL),
        }
    }
}

/// The first 8 bytes of a digest in hex, for a log line.
struct Short<'a>(&'a [u8; 32]);

impl core::fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0[..8].iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        f.write_str("..")
    }
}

/// What the monitor's answer to `go` means.
pub fn go_outcome(x0: i64) -> &'static str {
    match x0 {
        smc::SUCCESS => "the monitor starts the normal world",
        smc::DENIED => "refused: the normal world was already released",
        smc::GIC_NOT_INITIALISED => "refused: the monitor sees no initialised GIC distributor",
        _ => "unexpected answer from the monitor",
    }
}

impl Handler for AttestationPd {
    type Error = core::convert::Infallible;

    fn protected(&mut self, _channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        if msg_info.label() == OP_UPDATE {
            let answer = self.update(msg_info.count());
            with_msg_regs_mut(|mrs| mrs[..4].copy_from_slice(&answer.words));
            return Ok(MessageInfo::new(answer.label, answer.count));
        }
        if matches!(msg_info.label(), OP_EVIDENCE | OP_MEASURE) {
            let answer = match msg_info.label() {
                OP_EVIDENCE => self.evidence(msg_info.count()),
                _ => self.measure(msg_info.count()),
            };
            with_msg_regs_mut(|mrs| mrs[..4].copy_from_slice(&answer.words));
            return Ok(MessageInfo::new(answer.label, answer.count));
        }
        let answer = answer(msg_info.label(), self.handoff.as_ref());
        with_msg_regs_mut(|mrs| mrs[..4].copy_from_slice(&answer.words));
        Ok(MessageInfo::new(answer.label, answer.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::{FromZeros, IntoBytes};

    fn handoff() -> BootHandoff {
        let mut digest = [0u8; 32];
        digest.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        let mut handoff = BootHandoff::new_zeroed();
        (handoff.magic, handoff.version, handoff.secure_image_sha256) = (HANDOFF_MAGIC, HANDOFF_VERSION, digest);
        handoff
    }

    #[test]
    fn handoff_is_validated() {
        let good = handoff();
        assert_eq!(read_handoff(good.as_bytes()), Some(good));
        assert_eq!(read_handoff(&[0; 40]), None, "zeroed memory is no handoff");
        let mut bad = good;
        bad.version = 7;
        assert_eq!(read_handoff(bad.as_bytes()), None);
        assert_eq!(read_handoff(&good.as_bytes()[..10]), None, "short input");
    }

    #[test]
    fn the_handoff_is_read_once_and_its_cdis_leave_no_copy() {
        let mut page = handoff();
        (page.cdi_attest, page.cdi_seal) = ([0xa5; 32], [0x5a; 32]);
        let mut buffer = page.as_bytes().to_vec();
        // SAFETY: `buffer` outlives the region, and nothing else touches it meanwhile.
        let region = unsafe { MemoryRegion::new(core::ptr::NonNull::new(buffer.as_mut_ptr()).unwrap(), buffer.len()) };
        let mut copy = BootHandoff::new_zeroed();
        assert!(take_handoff(&region, &mut copy));
        assert_eq!((copy.cdi_attest, copy.cdi_seal), ([0xa5; 32], [0x5a; 32]), "the copy has what the page had");
        let in_page = BootHandoff::read_from_bytes(&buffer).unwrap();
        assert_eq!((in_page.cdi_attest, in_page.cdi_seal), ([0; 32], [0; 32]), "the page's CDIs are wiped");
        assert_eq!(in_page.secure_image_sha256, page.secure_image_sha256, "the rest of the page stays");
        wipe_handoff(&mut copy);
        assert!(copy.as_bytes().iter().all(|&b| b == 0), "nothing of the copy is left");
        // A page that is no handoff: refused, and its CDI bytes are wiped all the same.
        let mut junk = vec![0x33u8; core::mem::size_of::<BootHandoff>()];
        // SAFETY: as above.
        let region = unsafe { MemoryRegion::new(core::ptr::NonNull::new(junk.as_mut_ptr()).unwrap(), junk.len()) };
        assert!(!take_handoff(&region, &mut copy));
        assert_eq!(junk[core::mem::offset_of!(BootHandoff, cdi_attest)..][..32], [0; 32]);
    }

    /// HKDF's state (HMAC's two hash states, keyed with a CDI) and every hash state wipe
    /// themselves on drop: sha2's `zeroize` feature, which this does not compile without.
    #[test]
    fn hash_states_wipe_themselves() {
        fn wipes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wipes_on_drop::<sha2::Sha256>();
        wipes_on_drop::<sha2::Sha512>();
    }

    #[test]
    fn only_tzmk_uid_counts_as_the_monitor() {
        let [a, b, c, d] = smc::TZMK_UID;
        assert!(is_tzmk_monitor(&[a.into(), b.into(), c.into(), d.into(), 0, 0, 0, 0]));
        // What QEMU's built-in PSCI answers to an unknown SMC: NOT_SUPPORTED.
        assert!(!is_tzmk_monitor(&[u64::MAX, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_tzmk_monitor(&[a.into(), b.into(), c.into(), 0, 0, 0, 0, 0]));
    }

    #[test]
    fn go_answers_are_named() {
        assert_eq!(go_outcome(0), "the monitor starts the normal world");
        assert_eq!(go_outcome(smc::DENIED), "refused: the normal world was already released");
        assert_eq!(go_outcome(-1), "unexpected answer from the monitor");
    }

    #[test]
    fn operations_answer() {
        assert_eq!(answer(OP_VERSION, None).words[0], INTERFACE_VERSION);
        assert_eq!(answer(OP_SECURE_MEASUREMENT, None).label, ERR_NO_HANDOFF);
        let h = Measurements { secure_image_sha256: handoff().secure_image_sha256 };
        let a = answer(OP_SECURE_MEASUREMENT, Some(&h));
        assert_eq!((a.label, a.count, a.words[0]), (OK, 4, 0x0001_0203_0405_0607));
        assert_eq!(answer(99, Some(&h)).label, ERR_UNKNOWN_OPERATION);
    }
}
