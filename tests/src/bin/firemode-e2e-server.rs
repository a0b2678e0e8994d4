//! The `firemode` binary, built inside the test package so tests can run it as a subprocess.
fn main() -> std::process::ExitCode {
    firemode_server::cli::main()
}
