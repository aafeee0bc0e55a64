//! Issue 33, item 3: `pookie-ns completions bash|zsh|fish` and `pookie-ns man`, from the
//! command line's own definition. The bash script is checked by bash itself (`bash -n`), then
//! sourced and its completion function driven the way bash drives it on TAB (`COMP_WORDS`,
//! `COMP_CWORD`, `COMP_LINE`, `COMP_POINT`, the function's three arguments); the man pages are
//! rendered by man(1). No store, no sandbox: a second or two.

mod common;

use std::path::Path;
use std::process::Command;

fn pookie_ns(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pookie-ns"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pookie-ns {}: {}",
        args.join(" "),
        common::stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What bash completes for the words `line` (the last one being completed), with the script
/// sourced as a user's shell would: each candidate a line.
fn complete(script: &Path, words: &[&str]) -> Vec<String> {
    let words_q: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = words.join(" ");
    let shell = format!(
        "source '{script}' || exit 3
         spec=$(complete -p pookie-ns) || exit 4
         echo \"SPEC $spec\"
         fn=$(printf '%s\\n' \"$spec\" | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')
         [ -n \"$fn\" ] || exit 5
         COMP_WORDS=({words})
         COMP_CWORD={cword}
         COMP_LINE='{line}'
         COMP_POINT=${{#COMP_LINE}}
         COMP_TYPE=9
         COMPREPLY=()
         \"$fn\" pookie-ns '{cur}' '{prev}'
         for c in \"${{COMPREPLY[@]}}\"; do echo \"REPLY $c\"; done",
        script = script.display(),
        words = words_q.join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &shell])
        .output()
        .unwrap();
    let text = common::stdout(&out);
    assert!(
        out.status.success(),
        "bash ({:?}): {text}{}",
        out.status.code(),
        common::stderr(&out)
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("SPEC complete ") && l.ends_with(" pookie-ns")),
        "complete -p pookie-ns: {text}"
    );
    text.lines()
        .filter_map(|l| l.strip_prefix("REPLY "))
        .map(|s| s.trim_end().to_string())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("pookie-ns.bash");
    std::fs::write(&script, pookie_ns(&["completions", "bash"])).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        common::stderr(&syntax)
    );
    assert_eq!(complete(&script, &["pookie-ns", "bu"]), ["build"]);
    // The hidden worker command is never offered.
    let all = complete(&script, &["pookie-ns", ""]);
    assert!(all.contains(&"completions".to_string()), "{all:?}");
    assert!(!all.iter().any(|c| c.starts_with("__")), "{all:?}");
    assert_eq!(
        complete(&script, &["pookie-ns", "build", "--skip-ex"]),
        ["--skip-existing-on"]
    );
    assert_eq!(
        complete(&script, &["pookie-ns", "completions", "fi"]),
        ["fish"]
    );
}

#[test]
fn zsh_and_fish_scripts_and_the_man_pages() {
    let zsh = pookie_ns(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef pookie-ns"), "{zsh}");
    assert!(
        zsh.contains("'build:") && zsh.contains("--skip-existing-on"),
        "{zsh}"
    );
    let fish = pookie_ns(&["completions", "fish"]);
    assert!(
        fish.contains("complete -c pookie-ns") && fish.contains("-a \"build\""),
        "{fish}"
    );

    let page = pookie_ns(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH pookie-ns 1"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    pookie_ns(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    for name in [
        "pookie-ns.1",
        "pookie-ns-build.1",
        "pookie-ns-completions.1",
    ] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
    // man(1) renders them (wide, no hyphenation, overstrikes taken out by col -b): the build
    // page documents --branch's default.
    let render = |page: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg("MANWIDTH=200 man --nh --nj -P cat -l \"$1\" | col -b")
            .arg("sh")
            .arg(dir.path().join(page))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "man -l {page}: {}",
            common::stderr(&out)
        );
        common::stdout(&out)
    };
    let text = render("pookie-ns-build.1");
    assert!(text.contains("--skip-existing-on <URL>"), "{text}");
    assert!(
        text.contains("--branch <BRANCH> [default: stable]"),
        "{text}"
    );
    let text = render("pookie-ns.1");
    assert!(
        text.contains("pookie-ns-completions(1)") && text.contains("pookie-ns-build(1)"),
        "{text}"
    );
    assert!(!text.contains("__build-target"), "{text}");
}
