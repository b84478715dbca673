//! `tucdesk`: see [`tucdesk_viewer::cli`].

fn main() -> std::process::ExitCode {
    tucdesk_viewer::cli::main()
}
