//! The program callgrind runs: `hotpaths PATH N` runs one hot path's setup
//! and then `N` operations (see `paging_benches::hotpaths`).
//! `hotpaths list` prints every path with its default `N`.

use std::process::ExitCode;

use paging_benches::hotpaths::{self, HOT_PATHS};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [list] if list == "list" => {
            for p in HOT_PATHS {
                println!("{} {}", p.name, p.n);
            }
            ExitCode::SUCCESS
        }
        [name, n] => match n.parse::<usize>() {
            Ok(n) => match hotpaths::run(name, n) {
                Ok(sum) => {
                    println!("{name} x{n}: checksum {sum}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hotpaths: {name}: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(_) => {
                eprintln!("hotpaths: N must be a number, got `{n}`");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: hotpaths list | hotpaths PATH N");
            ExitCode::FAILURE
        }
    }
}
