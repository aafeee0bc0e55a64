//! Several pookie-ns processes on one store at once, as root, as a user with a subuid range and as
//! one without: eight runs on one instance, two commits into it, a cleanup during a run.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Output, Stdio};

use common::{stderr, stdout, Held, Runner};

fn spawn(r: &Runner, args: &[&str]) -> Child {
    r.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn eight_runs_at_once_each_see_only_their_own_files() {
    const RUNS: usize = 8;
    let mut held = 0;
    for r in common::everyone_with_busybox() {
        let who = r.who;
        // A committed layer that every run must see.
        r.commit("bb", "echo shared > /etc/shared");
        // Each run writes its marker and says it is ready; once all eight are (so that they
        // overlap), each lists what it sees.
        let runs: Vec<Held> = (0..RUNS)
            .map(|i| {
                r.hold(
                    &["--baseos", "bb"],
                    &format!("echo {i} > /root/mine-{i}; echo {i} > /tmp/tmp-{i}; cat /etc/shared"),
                    &format!("ls /root /tmp; cat /root/mine-{i}"),
                )
            })
            .collect();
        let live = std::fs::read_dir(r.store.join("workspaces"))
            .unwrap()
            .count();
        assert_eq!(live, RUNS, "{who:?}: all runs at once");
        for (i, run) in runs.into_iter().enumerate() {
            let out = run.release();
            assert!(out.status.success(), "{who:?} run {i}: {}", stderr(&out));
            let text = stdout(&out);
            assert!(text.starts_with("shared\n"), "{who:?} run {i}: {text}");
            for j in 0..RUNS {
                let mine =
                    text.contains(&format!("mine-{j}\n")) || text.contains(&format!("tmp-{j}\n"));
                assert_eq!(mine, i == j, "{who:?} run {i} sees run {j}'s files: {text}");
            }
            assert!(text.ends_with(&format!("{i}\n")), "{who:?} run {i}: {text}");
        }
        held += RUNS;
        // Nothing of them is left; the instance still has its one layer.
        let list: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
        assert!(list["workspaces"].as_array().unwrap().is_empty(), "{list}");
        assert_eq!(list["instances"][0]["layers"], 1, "{list}");
    }
    eprintln!("concurrent runs held: {held}");
}

#[test]
fn two_commits_serialize_and_the_second_says_it_waits() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        let first = r.hold(
            &["--baseos", "bb", "--commit"],
            "echo first > /etc/first",
            "",
        );
        // The second starts while the first holds the instance: it must wait, say so, and then
        // see the first one's layer.
        let mut second = spawn(
            &r,
            &common::commit_args("bb", "cat /etc/first && echo second > /etc/second"),
        );
        let mut said = String::new();
        let mut err = BufReader::new(second.stderr.take().unwrap());
        while !said.contains("waiting for instance stable/bb/amd64") {
            assert!(
                err.read_line(&mut said).unwrap() > 0,
                "{who:?}: the second commit ended without saying it waits: {said}"
            );
        }
        assert!(
            second.try_wait().unwrap().is_none(),
            "{who:?}: the second commit did not wait for the first"
        );
        let first = first.release();
        err.read_to_string(&mut said).unwrap();
        let second = finish(second);
        assert!(first.status.success(), "{who:?}: {}", stderr(&first));
        assert!(second.status.success(), "{who:?}: {said}");
        assert_eq!(stdout(&second), "first\n", "{who:?}");
        let out = r.sh_ok("bb", "cat /etc/first /etc/second");
        assert_eq!(out, "first\nsecond\n", "{who:?}");
        let list: serde_json::Value = serde_json::from_str(&r.ok(&["--json", "list"])).unwrap();
        assert_eq!(list["instances"][0]["layers"], 2, "{who:?}: {list}");
    }
}

#[test]
fn cleanup_refuses_the_layers_of_a_running_instance() {
    for r in common::everyone_with_busybox() {
        let who = r.who;
        r.commit("bb", "echo layer > /etc/layer");
        let layers = r.store.join("instances/stable/bb/amd64/layers");
        let before = common::hash_tree(&layers);
        let base = common::hash_tree(&r.store.join("baseos"));
        let running = r.hold(&["--baseos", "bb"], "", "cat /etc/layer /etc/motd");
        for target in ["stable/bb/amd64", "baseos", "all"] {
            let out = r.run(&["cleanup", target]);
            assert_eq!(
                out.status.code(),
                Some(75),
                "{who:?} cleanup {target}: busy"
            );
            assert!(
                stderr(&out).contains("in use"),
                "{who:?} cleanup {target}: {}",
                stderr(&out)
            );
        }
        let out = r.run(&["cleanup", "workspaces"]);
        assert!(out.status.success(), "{who:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("(in use)"),
            "{who:?}: {}",
            stderr(&out)
        );
        let out = running.release();
        assert!(out.status.success(), "{who:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "layer\nhello from the base\n", "{who:?}");
        assert_eq!(
            common::hash_tree(&layers),
            before,
            "{who:?}: layers changed"
        );
        assert_eq!(common::hash_tree(&r.store.join("baseos")), base, "{who:?}");
        // Once the run is over, cleanup goes through.
        r.ok(&["cleanup", "stable/bb/amd64"]);
        assert!(!layers.exists(), "{who:?}");
    }
}
