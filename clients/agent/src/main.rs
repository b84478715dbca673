//! `tucdesk-agent`: see [`tucdesk_agent::cli`].

fn main() -> std::process::ExitCode {
    tucdesk_agent::cli::main()
}
