//! The `bitmask-root` binary: see `bitmask-root --help`.
fn main() -> std::process::ExitCode {
    bitmask_root::cli::main()
}
