//! `hot-code.ld` (the functions a worker runs, which the release build places
//! together: see `build.rs` and `scripts/hot-code`) is a well-formed linker
//! script that names the worker's own path. A regeneration from a run that
//! went wrong (the worker failed to start, or valgrind could not name the
//! binary's functions) writes a short list and costs megabytes of every
//! worker's resident memory without any error; this catches it.

const SCRIPT: &str = include_str!("../hot-code.ld");

/// The pattern lines: `*(<section> <section> ...)`.
fn patterns() -> Vec<&'static str> {
    SCRIPT
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("*("))
        .collect()
}

#[test]
fn the_script_only_adds_one_output_section_before_text() {
    let body: Vec<&str> = SCRIPT
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("*("))
        .skip_while(|line| *line != "SECTIONS")
        .collect();
    assert_eq!(
        body,
        [
            "SECTIONS",
            "{",
            ".text.resq_hot :",
            "{",
            "}",
            "}",
            "INSERT BEFORE .text;"
        ],
        "the script's frame changed: anything but one added section before .text replaces the default layout"
    );
    for line in patterns() {
        assert!(line.ends_with(')'), "an unclosed pattern line: {line}");
        let sections = &line[2..line.len() - 1];
        for section in sections.split(' ') {
            assert!(
                section.starts_with(".text.") && !section.contains(['(', ')', ';', '{', '}', '"']),
                "not a code section pattern: {section}"
            );
        }
    }
}

#[test]
fn the_list_names_the_path_every_signed_job_takes() {
    let patterns = patterns();
    assert!(
        patterns.len() >= 500,
        "only {} functions listed: a worker runs over a thousand (regenerate with scripts/hot-code)",
        patterns.len()
    );
    // Fetch, run, claim and ack, the signature check, and the runtime under them.
    for must in [
        "_ZN4resq6worker7process7process",
        "_ZN4resq6worker6manage",
        "_ZN4resq6worker5claim",
        "_ZN4resq8envelope",
        "_ZN10resq_redis5store",
        "_ZN5tokio7runtime",
        "_ZN4sha26sha25611compress256",
    ] {
        assert!(
            patterns.iter().any(|p| p.contains(must)),
            "no function of {must} in the list"
        );
    }
}
