//! The man pages and shell completions in docs/ are generated from the CLI
//! definition. This test fails when they are out of date; regenerate with
//! `BOWCTL_REGEN_DOCS=1 cargo test -p bowctl --test docs`.

use bowctl::cli::Cli;
use clap::CommandFactory;
use std::path::{Path, PathBuf};

fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let cmd = Cli::command();
    let mut page = |c: &clap::Command, name: &str| {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c.clone())
            .title(name.to_uppercase())
            .render(&mut buf)
            .expect("render man page");
        out.push((PathBuf::from(format!("man/{name}.1")), buf));
    };
    page(&cmd, "bowctl");
    for sub in cmd.get_subcommands() {
        let name: &'static str = Box::leak(format!("bowctl-{}", sub.get_name()).into_boxed_str());
        page(&sub.clone().name(name), name);
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "bowctl.bash"),
        (clap_complete::Shell::Zsh, "_bowctl"),
        (clap_complete::Shell::Fish, "bowctl.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "bowctl", &mut buf);
        out.push((PathBuf::from(format!("completions/{file}")), buf));
    }
    out
}

#[test]
fn man_pages_and_completions_are_up_to_date() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let regen = std::env::var_os("BOWCTL_REGEN_DOCS").is_some();
    let mut stale = Vec::new();
    for (rel, content) in generated() {
        let p = docs.join(&rel);
        if regen {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &content).unwrap();
        } else if std::fs::read(&p).ok().as_deref() != Some(&content[..]) {
            stale.push(rel.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date in docs/: {stale:?}; run BOWCTL_REGEN_DOCS=1 cargo test -p bowctl --test docs"
    );
}

/// Every subcommand is in docs/bowctl.md's command table (`bowctl <name>`)
/// and in the architecture overview's list of bowctl's commands.
#[test]
fn every_subcommand_is_documented() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let read = |f: &str| std::fs::read_to_string(docs.join(f)).unwrap();
    let (guide, arch) = (read("bowctl.md"), read("architecture.md"));
    // The overview's bowctl box lists the commands in cli.rs's parentheses.
    let start = arch
        .find("cli.rs (")
        .expect("architecture.md names cli.rs and its commands");
    let listed: String = arch[start..]
        .split(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut missing = Vec::new();
    for sub in Cli::command().get_subcommands() {
        let name = sub.get_name();
        if !guide.contains(&format!("`bowctl {name}")) {
            missing.push(format!("docs/bowctl.md: `bowctl {name}`"));
        }
        let word = |w: &str| w.trim_matches(|c: char| !c.is_ascii_alphanumeric()) == name;
        if !listed.split([' ', ',', ';', '(']).any(word) {
            missing.push(format!("docs/architecture.md (cli.rs's commands): {name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "subcommands not documented: {missing:?}"
    );
}
