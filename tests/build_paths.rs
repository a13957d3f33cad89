//! build.mk takes every path to a cargo product from cargo (`cargo metadata`'s
//! `target_directory`), never from a guessed `target/`: with CARGO_TARGET_DIR set, a guessed path
//! fails, and with an old `./target` present it silently takes stale binaries.

#[test]
fn build_mk_never_guesses_cargos_target_directory() {
    let root = tzmk_tests::workspace_root();
    let text = std::fs::read_to_string(root.join("build.mk")).expect("build.mk");
    let guesses: Vec<String> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with('#'))
        .filter(|(_, line)| {
            line.match_indices("target/").any(|(at, _)| {
                // `$(TARGET_DIR)/` and `--target aarch64-...` are fine; a bare `target/` is a guess.
                let before = line[..at].chars().next_back();
                !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        })
        .map(|(number, line)| format!("build.mk:{}: {}", number + 1, line.trim()))
        .collect();
    assert!(guesses.is_empty(), "paths into a guessed target directory:\n{}", guesses.join("\n"));
}
