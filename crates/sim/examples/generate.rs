//! Prints the random scenario for a seed: `cargo run -p nightshift-sim --example generate -- 42`.

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    print!("{}", nightshift_sim::generate::random_scenario(seed));
}
