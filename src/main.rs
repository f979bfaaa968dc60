//! The `shardmq` broker binary.
use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    println!("shardmq {}", env!("CARGO_PKG_VERSION"));
}
