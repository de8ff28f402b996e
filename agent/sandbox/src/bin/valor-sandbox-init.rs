//! The first program of every sandbox (see `valor_sandbox::init`), and with `--launch` the step
//! before bubblewrap (see `valor_sandbox::launcher`).

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let failure = match args.split_first() {
        // `--launch -- BWRAP ARGS...`: outside, before bubblewrap (see valor_sandbox::launcher).
        Some((first, rest)) if first == valor_sandbox::launcher::LAUNCH_ARG => {
            let program = rest
                .strip_prefix(&[std::ffi::OsString::from("--")][..])
                .unwrap_or(rest);
            valor_sandbox::launcher::run(program)
        }
        _ => match valor_sandbox::init::InitArgs::parse(args) {
            Ok(args) => valor_sandbox::init::run(args),
            Err(e) => format!("valor-sandbox-init: {e}"),
        },
    };
    if failure.is_empty() {
        return;
    }
    // A sandbox's init has no logger: stderr is the sandbox's, and Valor keeps its tail.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{failure}");
    }
    std::process::exit(127);
}
