use std::process::ExitCode;

use d_ready_list::{cli, run_program};

const NAME: &str = env!("CARGO_PKG_NAME");

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{NAME}: {error} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run_program(&options, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            ExitCode::FAILURE
        }
    }
}
