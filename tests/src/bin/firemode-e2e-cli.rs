//! `firemode-cli`'s commands for people, built inside the test package so tests can run the
//! tool as a subprocess (Cargo gives a test the path of its own package's binaries only).
fn main() -> std::process::ExitCode {
    firemode_client::cli::main()
}
