//! A stand-in for the Notion API on loopback (being built on the `emulator` branch).

/// Options of `notion-inbox emulator` (being built).
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {}

/// Runs the emulator until interrupted (being built).
pub async fn run_command(_args: EmulatorArgs) -> anyhow::Result<()> {
    anyhow::bail!("the emulator is not implemented yet in this version")
}
