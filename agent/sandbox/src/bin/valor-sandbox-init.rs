//! The first program of every sandbox: see `valor_sandbox::init`.

fn main() {
    let args = std::env::args_os().skip(1);
    let failure = match valor_sandbox::init::InitArgs::parse(args) {
        Ok(args) => valor_sandbox::init::run(args),
        Err(e) => format!("valor-sandbox-init: {e}"),
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
