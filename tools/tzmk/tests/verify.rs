//! `tzmk verify` as a verifier runs it: a token attestation-pd's code wrote, accepted; each way a
//! token can be wrong, rejected with exit code 1 and the claim named; unusable inputs, exit code
//! 2. And the same token checked by a verifier outside this project (tools/verify-psa-token.py,
//! pycose), when python3 has pycose.

use attestation_pd::token::{self, AttestationKey, Claims, SoftwareComponent};
use ciborium::Value;
use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::Signature;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NONCE: [u8; 32] = [0x4e; 32];
const CDI: [u8; 32] = [0x21; 32];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A scratch directory with the inputs of one test.
struct Fixture {
    dir: PathBuf,
    key: AttestationKey,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tzmk-verify-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = token::derive_attestation_key(&CDI).unwrap();
        let fixture = Self { dir, key };
        std::fs::write(fixture.path("key.bin"), fixture.key.public_key_sec1()).unwrap();
        std::fs::write(fixture.path("refs.json"), refs_json(None)).unwrap();
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    /// `tzmk verify TOKEN --nonce NONCE --refs refs.json --key key.bin`, plus `extra`.
    fn verify(&self, token: &str, extra: &[&str]) -> Output {
        let refs = self.path("refs.json").display().to_string();
        let key = self.path("key.bin").display().to_string();
        let nonce = hex(&NONCE);
        let mut args = vec!["verify", token, "--nonce", &nonce, "--refs", &refs, "--key", &key];
        args.extend_from_slice(extra);
        tzmk(&args)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tzmk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tzmk")).args(args).current_dir(root()).output().expect("tzmk runs")
}

fn components() -> [SoftwareComponent<'static>; 3] {
    [
        SoftwareComponent {
            measurement_type: "BL",
            measurement_value: [0x10; 32],
            version: "0.1.0",
            signer_id: [0xee; 32],
        },
        SoftwareComponent {
            measurement_type: "PRoT",
            measurement_value: [0x20; 32],
            version: "0.1.0",
            signer_id: [0xee; 32],
        },
        SoftwareComponent {
            measurement_type: "App",
            measurement_value: [0x30; 32],
            version: "6.12",
            signer_id: [0xdd; 32],
        },
    ]
}

fn refs_json(attestation_key: Option<&[u8]>) -> String {
    let components: Vec<String> = components()
        .iter()
        .map(|c| {
            format!(
                r#"    {{"measurement_type": "{}", "measurement_value": "{}", "signer_id": "{}", "version": "{}"}}"#,
                c.measurement_type,
                hex(&c.measurement_value),
                hex(&c.signer_id),
                c.version
            )
        })
        .collect();
    let key = attestation_key.map(|k| format!(",\n  \"attestation_key\": \"{}\"", hex(k))).unwrap_or_default();
    format!(
        "{{\n  \"implementation_id\": \"{}\",\n  \"components\": [\n{}\n  ]{key}\n}}\n",
        hex(&[0xab; 32]),
        components.join(",\n")
    )
}

fn good_token(key: &AttestationKey, components: &[SoftwareComponent<'_>]) -> Vec<u8> {
    let claims = Claims {
        nonce: &NONCE,
        implementation_id: [0xab; 32],
        client_id: -1,
        security_lifecycle: token::LIFECYCLE_SECURED,
        components,
    };
    let mut buf = [0u8; 2048];
    let len = token::encode_token(&claims, key, &mut buf).unwrap();
    buf[..len].to_vec()
}

/// A token whose envelope or claims attestation-pd would never write, signed with the same key.
fn resigned(key_scalar: &[u8; 32], payload: Vec<u8>, alg_protected: bool) -> Vec<u8> {
    let signer = p256::ecdsa::SigningKey::from_slice(key_scalar).unwrap();
    let (protected, unprotected) = if alg_protected {
        (HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build(), HeaderBuilder::new().build())
    } else {
        (HeaderBuilder::new().build(), HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build())
    };
    CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload)
        .create_signature(b"", |data| {
            let signature: Signature = signer.sign(data);
            signature.to_bytes().to_vec()
        })
        .build()
        .to_tagged_vec()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_rejected(out: &Output, needle: &str) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(needle), "expected {needle:?} in {text}");
}

#[test]
fn accepts_a_token_attestation_pd_wrote() {
    let f = Fixture::new("accept");
    let token = f.write("token.cbor", &good_token(&f.key, &components()));
    let out = f.verify(&token, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout.contains("accepted: profile tag:psacertified.org,2023:psa#tfm, client id -1, components BL, PRoT, App"),
        "{stdout}"
    );

    // The key from refs.json instead of --key, and --key as hex text.
    std::fs::write(f.path("refs-with-key.json"), refs_json(Some(&f.key.public_key_sec1()))).unwrap();
    let refs = f.path("refs-with-key.json").display().to_string();
    let out = tzmk(&["verify", &token, "--nonce", &hex(&NONCE), "--refs", &refs]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(f.path("key.bin"), format!("{}\n", hex(&f.key.public_key_sec1()))).unwrap();
    assert_eq!(f.verify(&token, &[]).status.code(), Some(0));
}

#[test]
fn rejects_the_wrong_nonce() {
    let f = Fixture::new("nonce");
    let token = f.write("token.cbor", &good_token(&f.key, &components()));
    let refs = f.path("refs.json").display().to_string();
    let key = f.path("key.bin").display().to_string();
    let out = tzmk(&["verify", &token, "--nonce", &hex(&[0x4f; 32]), "--refs", &refs, "--key", &key]);
    assert_rejected(&out, "rejected: eat_nonce (10): does not match the challenge (--nonce)");
}

#[test]
fn rejects_a_modified_claim() {
    let f = Fixture::new("modified");
    let mut bytes = good_token(&f.key, &components());
    // Flip one bit of the profile text inside the payload: still CBOR, no longer signed.
    let at = bytes.windows(7).position(|w| w == b"tag:psa").expect("profile in the payload");
    bytes[at + 4] ^= 0x01;
    let token = f.write("token.cbor", &bytes);
    assert_rejected(&f.verify(&token, &[]), "rejected: signature: does not verify with the attestation key");
}

#[test]
fn rejects_another_key() {
    let f = Fixture::new("other-key");
    let token = f.write("token.cbor", &good_token(&f.key, &components()));
    let other = token::derive_attestation_key(&[0x22; 32]).unwrap();
    std::fs::write(f.path("key.bin"), other.public_key_sec1()).unwrap();
    assert_rejected(&f.verify(&token, &[]), "rejected: signature: does not verify with the attestation key");
}

#[test]
fn rejects_a_truncated_token() {
    let f = Fixture::new("truncated");
    let bytes = good_token(&f.key, &components());
    let token = f.write("token.cbor", &bytes[..bytes.len() - 10]);
    assert_rejected(&f.verify(&token, &[]), "rejected: token: not a tagged COSE_Sign1");
    let token = f.write("empty.cbor", &[]);
    assert_rejected(&f.verify(&token, &[]), "rejected: token: not a tagged COSE_Sign1");
}

#[test]
fn rejects_alg_only_in_the_unprotected_header() {
    let f = Fixture::new("alg");
    // The same claims, signed with a key whose scalar the test knows.
    let scalar = [0x31u8; 32];
    let key = AttestationKey::from_scalar_bytes(&scalar).unwrap();
    std::fs::write(f.path("key.bin"), key.public_key_sec1()).unwrap();
    let payload = CoseSign1::from_tagged_slice(&good_token(&key, &components())).unwrap().payload.unwrap();
    let token = f.write("token.cbor", &resigned(&scalar, payload.clone(), false));
    assert_rejected(&f.verify(&token, &[]), "rejected: alg: only in the unprotected header");
    // The control: the same payload with alg protected is accepted.
    let token = f.write("control.cbor", &resigned(&scalar, payload, true));
    assert_eq!(f.verify(&token, &[]).status.code(), Some(0), "{}", stderr(&f.verify(&token, &[])));
}

#[test]
fn rejects_a_missing_mandatory_claim() {
    let f = Fixture::new("missing");
    let scalar = [0x32u8; 32];
    let key = AttestationKey::from_scalar_bytes(&scalar).unwrap();
    std::fs::write(f.path("key.bin"), key.public_key_sec1()).unwrap();
    let payload = CoseSign1::from_tagged_slice(&good_token(&key, &components())).unwrap().payload.unwrap();
    let claims: Value = ciborium::from_reader(payload.as_slice()).unwrap();
    let without_lifecycle: Vec<_> =
        claims.into_map().unwrap().into_iter().filter(|(k, _)| k.as_integer() != Some(2395.into())).collect();
    let mut payload = Vec::new();
    ciborium::into_writer(&Value::Map(without_lifecycle), &mut payload).unwrap();
    let token = f.write("token.cbor", &resigned(&scalar, payload, true));
    assert_rejected(&f.verify(&token, &[]), "rejected: psa-security-lifecycle (2395): missing (mandatory in RFC 9783)");
}

#[test]
fn rejects_a_component_not_in_the_references() {
    let f = Fixture::new("component");
    let mut components = components();
    components[2].version = "6.13";
    let token = f.write("token.cbor", &good_token(&f.key, &components));
    assert_rejected(
        &f.verify(&token, &[]),
        "rejected: psa-software-components (2399): [2]: component \"App\" (version \"6.13\") is not in the references",
    );
}

#[test]
fn unusable_inputs_exit_two() {
    let f = Fixture::new("inputs");
    let token = f.write("token.cbor", &good_token(&f.key, &components()));
    let refs = f.path("refs.json").display().to_string();
    let key = f.path("key.bin").display().to_string();

    let out = f.verify("no/such/token.cbor", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: token no/such/token.cbor: cannot read"), "{}", stderr(&out));

    let out = tzmk(&["verify", &token, "--nonce", "abc", "--refs", &refs, "--key", &key]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--nonce: odd number of hex digits"), "{}", stderr(&out));
    let out = tzmk(&["verify", &token, "--nonce", &hex(&[0; 16]), "--refs", &refs, "--key", &key]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--nonce: 16 bytes, expected 32, 48 or 64"), "{}", stderr(&out));

    let bad_refs = f.write("bad-refs.json", b"{\"implementation_id\": \"zz\"}");
    let out = tzmk(&["verify", &token, "--nonce", &hex(&NONCE), "--refs", &bad_refs, "--key", &key]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad-refs.json: not valid"), "{}", stderr(&out));

    let bad_key = f.write("bad-key.bin", &[0x04; 10]);
    let out = tzmk(&["verify", &token, "--nonce", &hex(&NONCE), "--refs", &refs, "--key", &bad_key]);
    assert_eq!(out.status.code(), Some(2));

    let out = tzmk(&["verify", &token, "--nonce", &hex(&NONCE), "--refs", &refs]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no attestation key"), "{}", stderr(&out));

    let huge = f.write("huge.cbor", &vec![0u8; 64 * 1024 + 1]);
    let out = f.verify(&huge, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("huge.cbor: larger than 65536 bytes"), "{}", stderr(&out));

    let out = tzmk(&["verify", &token]);
    assert_eq!(out.status.code(), Some(2), "a missing argument is a bad argument");
}

/// Whether `python3` can import every module named.
fn python_has(modules: &[&str]) -> Result<(), String> {
    let import = format!("import {}", modules.join(", "));
    match Command::new("python3").args(["-c", &import]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_owned()),
        Err(e) => Err(format!("no python3: {e}")),
    }
}

fn run_python(f: &Fixture, token: &Path, nonce: &[u8]) -> Output {
    Command::new("python3")
        .arg(root().join("tools/verify-psa-token.py"))
        .args(["--token", &token.display().to_string()])
        .args(["--key", &f.path("key.bin").display().to_string()])
        .args(["--nonce", &hex(nonce)])
        .args(["--refs", &f.path("refs.json").display().to_string()])
        .output()
        .expect("python3 runs")
}

#[test]
fn an_outside_verifier_accepts_the_token() {
    if let Err(why) = python_has(&["pycose", "cbor2"]) {
        // Written to the process's stderr, not through `println!`, which the test harness
        // captures: CI's log must show what was skipped.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: tools/verify-psa-token.py needs python3 with pycose and cbor2 ({why}): pip install pycose cbor2"
        );
        return;
    }
    let f = Fixture::new("python");
    let token = f.path("token.cbor");
    std::fs::write(&token, good_token(&f.key, &components())).unwrap();
    let out = run_python(&f, &token, &NONCE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", stderr(&out));
    assert!(stdout.contains("accepted"), "{stdout}");

    // It is a verifier, not a rubber stamp: the wrong nonce, a flipped bit and an unknown
    // component are refused.
    let out = run_python(&f, &token, &[0; 32]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nonce"), "{}", stderr(&out));
    let mut bytes = good_token(&f.key, &components());
    let at = bytes.windows(7).position(|w| w == b"tag:psa").unwrap();
    bytes[at + 4] ^= 0x01;
    std::fs::write(&token, &bytes).unwrap();
    let out = run_python(&f, &token, &NONCE);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));
    let mut other = components();
    other[0].measurement_value = [0x11; 32];
    std::fs::write(&token, good_token(&f.key, &other)).unwrap();
    let out = run_python(&f, &token, &NONCE);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("component"), "{}", stderr(&out));
}
