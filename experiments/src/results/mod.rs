//! Results: the JSON Lines records every evaluation appends to `results.jsonl` (one per model,
//! substrate, protocol, attack or corruption, strength and seed, with every parameter, the
//! accuracy, counts, wall time and the git commit), written here ([`records`]) and read back
//! here ([`read`]) by reports and resumed sweeps.

pub mod read;
pub mod records;

pub use read::{
    AttackRow, CleanRow, CorruptionRow, Record, attack_row, parse_record, read_results,
};
pub use records::{AttackRecord, CleanRecord, CorruptionRecord, RecordContext, git_commit};
