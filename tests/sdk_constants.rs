//! The runtime's configuration-dependent seL4 numbers (`microkit::sel4_abi`) agree with the SDK
//! that builds the image: its `invocations_all.json` and `address_space_constants.json` for each
//! configuration of the board. Ignored without an SDK; `make -f build.mk image` runs it.

use std::path::PathBuf;

fn board_dir(config: &str) -> PathBuf {
    let sdk = std::env::var("MICROKIT_SDK").expect("MICROKIT_SDK names the SDK");
    let board = std::env::var("MICROKIT_BOARD").unwrap_or_else(|_| "qemu_virt_aarch64_el1".into());
    PathBuf::from(sdk).join("board").join(board).join(config)
}

fn json(config: &str, file: &str) -> serde_json::Value {
    let path = board_dir(config).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
#[ignore = "needs the Microkit SDK: run `make -f build.mk image`"]
fn runtime_numbers_match_the_sdk() {
    for (config, labels) in [("release", microkit::sel4_abi::RELEASE), ("debug", microkit::sel4_abi::DEBUG)] {
        let invocations = json(config, "invocations_all.json");
        assert_eq!(invocations["IRQAckIRQ"].as_u64(), Some(labels.irq_ack_irq), "IRQAckIRQ in {config}");
        assert_eq!(invocations["ARMSMCCall"].as_u64(), Some(labels.arm_smc_call), "ARMSMCCall in {config}");
        let space = json(config, "address_space_constants.json");
        assert_eq!(space["vspace_user_top"].as_u64(), Some(microkit::sel4_abi::USER_TOP), "user top in {config}");
    }
}
