//! `kafka-events`: operate on what the runtime leaves in Kafka, kcat-style.
//!
//! ```text
//! kafka-events dlq stats  <topic> [--scan]
//! kafka-events dlq peek   <topic> [--limit N]
//! kafka-events dlq replay <topic> [--limit N] [--dry-run] [--to <topic>]
//! ```
//! Brokers and service name come from `--brokers`/`KAFKA_BROKERS` and `--service`/`SERVICE_NAME`
//! (replay commits through the `${SERVICE_NAME}-admin` group); the other `KAFKA_*` variables of
//! `Config::from_env` apply too.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use kafka_events::dlq::{DeadLetters, DlqError, ReplayOptions};
use kafka_events::Config;

#[derive(Parser)]
#[command(name = "kafka-events", version, about = "Operate on the topics kafka-events services use")]
struct Cli {
    /// Bootstrap brokers, comma-separated `host:port`.
    #[arg(short, long, env = "KAFKA_BROKERS", global = true)]
    brokers: Option<String>,
    /// Service name: replay commits through `${SERVICE_NAME}-admin`.
    #[arg(short, long, env = "SERVICE_NAME", global = true)]
    service: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dead-letter topics.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Counts per partition (from watermarks), oldest and newest timestamps.
    Stats {
        /// The dead-letter topic (full name).
        topic: String,
        /// Read every record and count them by `x-dlq-error-kind`.
        #[arg(long)]
        scan: bool,
    },
    /// Shows dead letters: key, reason, headers, value.
    Peek {
        /// The dead-letter topic (full name).
        topic: String,
        /// How many to show.
        #[arg(short = 'n', long, default_value_t = 10)]
        limit: usize,
    },
    /// Republishes dead letters to their original topic, committing each after it is acknowledged.
    Replay {
        /// The dead-letter topic (full name).
        topic: String,
        /// Replay at most this many.
        #[arg(short = 'n', long)]
        limit: Option<usize>,
        /// Show what would be replayed; publish and commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Republish here instead of each record's `x-original-topic`.
        #[arg(long)]
        to: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), DlqError> {
    let mut config = Config::from_vars(std::env::vars());
    if let Some(brokers) = cli.brokers {
        config = config.with_brokers(brokers);
    }
    if let Some(service) = cli.service {
        config = config.with_service_name(service);
    }
    let dlq = DeadLetters::connect(&config).await?;
    let Command::Dlq { command } = cli.command;
    match command {
        DlqCommand::Stats { topic, scan } => {
            let stats = dlq.stats(&topic, scan).await?;
            println!("% {}: {} dead letters in {} partitions", stats.topic, stats.total(), stats.partitions.len());
            println!(
                "{:>9} {:>10} {:>10} {:>8}  {:<24}  {:<24}",
                "partition", "low", "high", "count", "oldest", "newest"
            );
            for p in &stats.partitions {
                println!(
                    "{:>9} {:>10} {:>10} {:>8}  {:<24}  {:<24}",
                    p.partition,
                    p.low,
                    p.high,
                    p.count(),
                    time(p.oldest),
                    time(p.newest)
                );
            }
            if let Some(kinds) = &stats.by_kind {
                println!("% by x-dlq-error-kind:");
                for (kind, count) in kinds {
                    println!("{count:>9}  {kind}");
                }
            }
        }
        DlqCommand::Peek { topic, limit } => {
            for letter in dlq.peek(&topic, limit).await? {
                println!("% {topic} [{}] @{} {}", letter.partition, letter.offset, time(letter.timestamp));
                println!("key:    {}", text(letter.key.as_deref()));
                println!("reason: {} ({})", letter.reason().unwrap_or("-"), letter.kind().unwrap_or("-"));
                for (name, value) in &letter.headers {
                    println!("  {name}: {}", text(value.as_deref()));
                }
                println!("value:  {}\n", text(letter.value.as_deref()));
            }
        }
        DlqCommand::Replay { topic, limit, dry_run, to } => {
            let report = dlq.replay(&topic, ReplayOptions { limit, dry_run, to }).await?;
            for item in &report.items {
                println!(
                    "{} [{}] @{} -> {}",
                    if dry_run { "would replay" } else { "replayed" },
                    item.partition,
                    item.offset,
                    item.target
                );
            }
            println!(
                "% {}{} dead letters from {topic}; {} left",
                if dry_run { "dry run: would replay " } else { "replayed " },
                report.items.len(),
                report.remaining
            );
        }
    }
    Ok(())
}

fn time(at: Option<SystemTime>) -> String {
    at.map_or_else(|| "-".into(), |t| humantime::format_rfc3339_millis(t).to_string())
}

fn text(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "(null)".into(),
        Some(b) => String::from_utf8_lossy(b).into_owned(),
    }
}
