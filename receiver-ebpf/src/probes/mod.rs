//! One probe per file.

pub mod exec_args;
pub mod exec_commit;
pub mod mark_victim;
pub mod oom_kill_process;
pub mod process_exit;
