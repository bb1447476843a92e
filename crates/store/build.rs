// `sqlx::migrate!` embeds the migration files at compile time; without this, adding or editing
// a migration would not trigger a rebuild.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
