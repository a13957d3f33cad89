//! The attestation port's request path against an arbitrary normal world: any bytes as a port
//! message go through comm-pd's parser (`parse_attestation_request`), and every measurement it
//! lets through, plus any raw name and digest (what a lying comm-pd could put in the message
//! registers), through attestation-pd's runtime log. Nothing may panic; a refused request must
//! leave the log, PCR 1 and the list unchanged; the log must always parse and replay to PCR 1.
#![no_main]

use arbitrary::Arbitrary;
use attestation_pd::runtime::RuntimeLog;
use libfuzzer_sys::fuzz_target;
use tzmk_interface::attestation::{MAX_NONCE, MEASURE_NAME_SIZE};
use tzmk_interface::port::{parse_attestation_request, AttestationCall};
use tzmk_trust::eventlog::{EventLog, EventLogWriter, PCR_RUNTIME};

#[derive(Debug, Arbitrary)]
enum Input {
    /// A port message, as the normal world wrote it.
    Message(Vec<u8>),
    /// Message registers as attestation-pd reads them.
    Registers { name: [u8; MEASURE_NAME_SIZE], sha256: [u8; 32] },
}

fuzz_target!(|inputs: Vec<Input>| {
    let mut boot = [0u8; 512];
    let mut writer = EventLogWriter::new(&mut boot).expect("room for the header");
    writer.measure_image("loader.img", &[1; 32]).expect("room");
    let length = writer.len();
    let mut runtime = RuntimeLog::new(&boot[..length]).expect("a boot log");
    for input in inputs {
        let (name, sha256) = match input {
            Input::Message(bytes) => match parse_attestation_request(&bytes) {
                Ok(AttestationCall::Measure { name, sha256 }) => {
                    assert!(!name.is_empty() && name.len() <= MEASURE_NAME_SIZE);
                    let mut raw = [0u8; MEASURE_NAME_SIZE];
                    raw[..name.len()].copy_from_slice(name.as_bytes());
                    (raw, sha256)
                }
                Ok(AttestationCall::Evidence { nonce }) => {
                    assert!(matches!(nonce.len(), 32 | 48 | 64) && nonce.len() <= MAX_NONCE);
                    continue;
                }
                Ok(AttestationCall::Update { manifest }) => {
                    // What the monitor parses first: never a panic, whatever the bytes.
                    assert!(manifest.len() <= tzmk_interface::update::MANIFEST_BYTES);
                    let _ = tzmk_trust::manifest::Manifest::parse(manifest);
                    continue;
                }
                Ok(AttestationCall::Query { .. }) | Err(_) => continue,
            },
            Input::Registers { name, sha256 } => (name, sha256),
        };
        let before = (runtime.log().to_vec(), *runtime.register(), runtime.measurements().len());
        match runtime.measure(&name, &sha256) {
            Ok(index) => assert_eq!(index, before.2),
            Err(_) => assert_eq!((runtime.log().to_vec(), *runtime.register(), runtime.measurements().len()), before),
        }
        let log = EventLog::parse(runtime.log()).expect("the log stays a log");
        assert_eq!(log.replay()[PCR_RUNTIME as usize], *runtime.register());
    }
});
