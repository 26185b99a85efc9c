//! Writes the machine-readable contract to `openapi/` at the workspace root:
//! `cargo run -p chat-tower --example gen-openapi`. The `contract_is_up_to_date` test fails
//! until the checked-in files match what this writes.

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi");
    std::fs::create_dir_all(&dir)?;
    for (name, contents) in chat_tower::openapi::contract_files() {
        std::fs::write(dir.join(name), contents)?;
        println!("wrote openapi/{name}");
    }
    Ok(())
}
