//! The agent binary for the end-to-end tests (a package's tests can only find its own binaries).

fn main() -> std::process::ExitCode {
    tucdesk_agent::cli::main()
}
