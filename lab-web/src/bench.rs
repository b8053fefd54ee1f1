//! `lab-web bench` (filled in below).
use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 1000)]
    pub hours: u32,
}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
