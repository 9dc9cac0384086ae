//! `custody repo …`: author and publish a TUF repository.
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct RepoArgs {}

pub fn run(_args: RepoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("custody repo is not built yet")
}
