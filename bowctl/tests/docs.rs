//! The man pages (section 8) and shell completions in docs/ are generated
//! from the CLI definition. This test fails when they are out of date, or
//! when one lacks a section; regenerate with
//! `BOWCTL_REGEN_DOCS=1 cargo test -p bowctl --test docs`.

use bowctl::cli::Cli;
use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// Examples for each page (the command line, then what it does).
fn examples(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "bowctl" => &[
            ("bowctl status", "the state of every bow device"),
            (
                "bowctl --json inspect /dev/vda",
                "the checkpoint log of /dev/vda, as JSON",
            ),
        ],
        "bowctl-inspect" => &[(
            "bowctl inspect /dev/vda",
            "validate the log and list its entries; writes nothing",
        )],
        "bowctl-restore" => &[
            (
                "bowctl restore --dry-run /dev/vda",
                "print the plan; writes nothing",
            ),
            (
                "bowctl restore /dev/vda",
                "roll /dev/vda back to its checkpoint (unmounted, no target above it)",
            ),
        ],
        "bowctl-status" => &[("bowctl status /data", "the bow device mounted at /data")],
        "bowctl-checkpoint" => &[(
            "bowctl checkpoint /data",
            "trim /data, then start the checkpoint",
        )],
        "bowctl-commit" => &[(
            "bowctl commit",
            "keep the update: commit the device of the pending update",
        )],
        "bowctl-start" => &[(
            "bowctl start --retries 3",
            "an update is installed: the next 3 boots run under a checkpoint",
        )],
        "bowctl-boot" => &[(
            "bowctl boot /dev/vda /data",
            "at every boot, before /data is used",
        )],
        "bowctl-abort" => &[(
            "bowctl abort",
            "the update failed: roll back at the next boot",
        )],
        "bowctl-health" => &[(
            "bowctl health --min-free 200M --on-low commit",
            "commit when less than 200 MiB is left for backups",
        )],
        "bowctl-create" => &[(
            "bowctl create userdata /dev/vda",
            "/dev/mapper/userdata over /dev/vda, in state 0",
        )],
        "bowctl-remove" => &[(
            "bowctl remove userdata",
            "remove it; in state 1 its log stays on disk",
        )],
        _ => &[],
    }
}

/// roff text: backslashes and hyphens escaped.
fn roff(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// The man page of `cmd` in section 8: clap_mangen's NAME, SYNOPSIS,
/// DESCRIPTION, OPTIONS (and COMMANDS), then EXIT STATUS, EXAMPLES and
/// SEE ALSO of our own.
fn man_page(cmd: &clap::Command, name: &str, all: &[String]) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("8");
    let mut buf = Vec::new();
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_synopsis_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    man.render_options_section(&mut buf).unwrap();
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut buf).unwrap();
    }
    let mut own = String::from(".SH \"EXIT STATUS\"\n");
    for (code, what) in bowctl::error::exit::ALL {
        own += &format!(".TP\n{code}\n{}\n", roff(what));
    }
    own += ".SH EXAMPLES\n";
    for (line, what) in examples(name) {
        own += &format!(".TP\n.B {}\n{}\n", roff(line), roff(what));
    }
    own += ".SH \"SEE ALSO\"\n";
    let mut see: Vec<String> = all
        .iter()
        .filter(|n| *n != name)
        .map(|n| format!(".BR {} (8),", roff(n)))
        .collect();
    see.push(".BR dmsetup (8),".into());
    see.push(".BR fstrim (8)".into());
    own += &see.join("\n");
    own += "\n.PP\nThe target, its table, states and on-disk log: docs/dm\\-bow.rst in the dm\\-bow source tree.\n";
    buf.extend_from_slice(own.as_bytes());
    buf
}

fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let cmd = Cli::command();
    let mut names = vec!["bowctl".to_string()];
    names.extend(
        cmd.get_subcommands()
            .map(|s| format!("bowctl-{}", s.get_name())),
    );
    out.push((
        PathBuf::from("man/bowctl.8"),
        man_page(&cmd, "bowctl", &names),
    ));
    for sub in cmd.get_subcommands() {
        let name: &'static str = Box::leak(format!("bowctl-{}", sub.get_name()).into_boxed_str());
        let page = man_page(&sub.clone().name(name), name, &names);
        out.push((PathBuf::from(format!("man/{name}.8")), page));
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
    // No page left over from an older layout (section 1, a removed command).
    let want: Vec<PathBuf> = generated().into_iter().map(|(p, _)| docs.join(p)).collect();
    for e in std::fs::read_dir(docs.join("man")).unwrap() {
        let p = e.unwrap().path();
        if !want.contains(&p) {
            if regen {
                std::fs::remove_file(&p).unwrap();
            } else {
                stale.push(format!("{} (not generated any more)", p.display()));
            }
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

/// Every man page has the sections a section-8 page is expected to have.
#[test]
fn man_pages_have_their_sections() {
    for (path, page) in generated()
        .into_iter()
        .filter(|(p, _)| p.starts_with("man"))
    {
        let text = String::from_utf8(page).unwrap();
        let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
        assert_eq!(
            th.split_whitespace().nth(2),
            Some("8"),
            "{path:?}: not section 8: {th}"
        );
        for s in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "\"EXIT STATUS\"",
            "EXAMPLES",
            "\"SEE ALSO\"",
        ] {
            assert!(
                text.contains(&format!(".SH {s}\n")),
                "{path:?} has no {s} section"
            );
        }
    }
}
