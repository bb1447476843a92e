//! Writes a synthetic log of at least N lines (default 1,000,000) to standard output: the
//! message bodies the simulator's services log across randomly generated systems and faults
//! (`nightshift_sim::generate`), for template-mining throughput and memory benchmarks.
//!
//! usage: synthetic_log [LINES] > synthetic.log

use nightshift_sim::{Scenario, Simulation};
use std::io::Write;

fn main() {
    let want: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut written = 0u64;
    let mut seed = 1u64;
    while written < want {
        let yaml = nightshift_sim::generate::random_scenario(seed);
        seed += 1;
        let Ok(scenario) = Scenario::parse(&yaml, "generated") else {
            continue;
        };
        for tick in Simulation::new(&scenario) {
            for l in &tick.logs {
                if writeln!(out, "{}", l.body).is_err() {
                    return;
                }
                written += 1;
            }
            if written >= want {
                break;
            }
        }
    }
    let _ = out.flush();
    eprintln!("{written} lines from {} generated systems", seed - 1);
}
