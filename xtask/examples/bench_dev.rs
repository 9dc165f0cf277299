//! Development runner for the bench module until `cargo xtask bench` is wired (temporary).
#[path = "../src"]
mod src_dir {
    pub mod bench;
}
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match src_dir::bench::run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
