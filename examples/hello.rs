//! The first cspnet program: a producer and a consumer joined by one channel.
//!
//! `cargo run --example hello -- --backend threads`

mod common;

use clap::Parser;
use cspnet::{Backend, with_backend};

/// A producer sends words over a channel; a consumer joins them into a sentence.
#[derive(Parser)]
struct Args {
    /// threads, processes or coroutines
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// Print the backends this build includes, one per line, and exit
    #[arg(long)]
    list_backends: bool,
}

fn main() {
    let args = Args::parse();
    if args.list_backends {
        for b in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            println!("{b}");
        }
        return;
    }
    let out = common::finish(with_backend!(args.backend, csp => {
        let words = csp::Channel::<String>::named("words");
        let (w, r) = (words.writer(), words.reader());
        csp::parallel([
            csp::process(move || {
                for word in ["Hello", "from", "a", "CSP", "network"] {
                    w.write(word.to_string())?;
                }
                Ok(String::new()) // w leaves here, which retires the channel
            })
            .named("producer"),
            csp::process(move || {
                let mut sentence = Vec::new();
                for word in r {
                    sentence.push(word?);
                }
                Ok(sentence.join(" "))
            })
            .named("consumer"),
        ])
    }));
    let sentence = out[1]
        .clone()
        .unwrap_or_else(|e| common::usage_error(&e.to_string()));
    println!("{sentence} (on {})", args.backend);
}
