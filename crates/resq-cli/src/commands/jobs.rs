//! `resq jobs list|schema`: the job types this binary runs.

use clap::Subcommand;
use resq::Registry;

use crate::Failure;

#[derive(Subcommand)]
pub enum JobsAction {
    /// The job classes this binary registers.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A class's argument schema (JSON Schema), derived from its Rust type.
    Schema { class: String },
}

pub fn jobs(registry: &Registry, action: JobsAction) -> Result<(), Failure> {
    match action {
        JobsAction::List { json } => {
            let infos: Vec<resq::ClassInfo> = registry.classes().iter().filter_map(|c| registry.info(c)).collect();
            if json {
                let rows: Vec<serde_json::Value> = infos
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "class": i.class,
                            "queue": i.queue,
                            "encrypted": i.encrypt,
                            "max_attempts": i.max_attempts,
                            "timeout_ms": i.timeout.map(|t| t.as_millis() as u64),
                            "ttl_s": i.ttl.map(|t| t.as_secs()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
                return Ok(());
            }
            for i in infos {
                println!(
                    "{:<10} queue={} encrypted={} attempts={} timeout={}",
                    i.class,
                    i.queue,
                    i.encrypt,
                    i.max_attempts,
                    i.timeout
                        .map_or("none".to_string(), |t| format!("{} ms", t.as_millis()))
                );
            }
        }
        JobsAction::Schema { class } => {
            let schema = registry.schema(&class).ok_or_else(|| {
                Failure::usage(format!(
                    "class {:?} is not registered here (see `resq jobs list`)",
                    crate::output::clip(&class, 64)
                ))
            })?;
            println!("{}", serde_json::to_string_pretty(schema).map_err(Failure::runtime)?);
        }
    }
    Ok(())
}
