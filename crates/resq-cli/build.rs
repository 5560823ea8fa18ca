//! Release builds of the `resq` binary on GNU/Linux place the functions a
//! worker runs together at the head of the binary's code, in the order of
//! `hot-code.ld` (a linker script that only adds one output section before
//! `.text`; `scripts/hot-code` regenerates it and says why). The kernel maps a
//! binary's pages 64 KB at a time around each one a process touches, so a
//! worker whose code lies together keeps megabytes fewer of them resident.
//! Debug builds link as usual; `RESQ_HOT_CODE=0` turns it off for a release
//! build (to compare, or for a linker that does not read such scripts).
//!
//! The linkers that link Rust on GNU/Linux by default read it: rust-lld
//! (rustc's default there since 1.90) and GNU ld. mold and gold do not
//! (mold refuses `SECTIONS`, gold `INSERT`): a build whose rustflags choose
//! one of them links without the script.

fn main() {
    println!("cargo:rerun-if-changed=hot-code.ld");
    println!("cargo:rerun-if-env-changed=RESQ_HOT_CODE");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    let off = std::env::var("RESQ_HOT_CODE").is_ok_and(|v| v == "0");
    // Cargo gives a build script the rustflags it builds with (changing
    // them reruns it).
    let unsupported_linker = std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|flags| {
        ["fuse-ld=mold", "fuse-ld=gold", "ld.mold", "ld.gold", "/mold", "/gold"]
            .iter()
            .any(|linker| flags.contains(linker))
    });
    if release && gnu_linux && !off && !unsupported_linker {
        // `-T` and its file as two arguments: a path may hold a comma.
        println!("cargo:rustc-link-arg-bin=resq=-T");
        println!(
            "cargo:rustc-link-arg-bin=resq={}/hot-code.ld",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}
