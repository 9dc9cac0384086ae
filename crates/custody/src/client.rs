//! `custody client …`: owned by the client work (issue 2).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ClientArgs {}

pub fn run(_args: ClientArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("custody client is not built yet")
}
