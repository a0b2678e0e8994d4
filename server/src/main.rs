fn main() -> std::process::ExitCode {
    firemode_server::cli::main()
}
