//! One module per command group.

pub mod attach;
pub mod container;
pub mod context;
pub mod exec;
pub mod image;
pub mod login;
pub mod network;
pub mod run;
pub mod system;
pub mod util;
pub mod volume;

use clap::{Args, CommandFactory as _};

use crate::{CmdResult, Command, Ctx};

/// `completion SHELL`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Runs a command.
pub async fn run(ctx: &Ctx, command: Command) -> CmdResult {
    match command {
        Command::Version(a) => system::version(ctx, a).await,
        Command::Info(a) => system::info(ctx, a).await,
        Command::Events(a) => system::events(ctx, a).await,
        Command::System(c) => system::run(ctx, c).await,
        Command::Pull(a) => image::pull(ctx, a).await,
        Command::Push(a) => image::push(ctx, a).await,
        Command::Images(a) => image::list(ctx, a).await,
        Command::Image(c) => image::run(ctx, c).await,
        Command::Inspect(a) => container::inspect_any(ctx, a).await,
        Command::History(a) => image::history(ctx, a).await,
        Command::Tag(a) => image::tag(ctx, a).await,
        Command::Rmi(a) => image::remove(ctx, a).await,
        Command::Save(a) => image::save(ctx, a).await,
        Command::Load(a) => image::load(ctx, a).await,
        Command::Import(a) => image::import(ctx, a).await,
        Command::Login(a) => login::login(ctx, a).await,
        Command::Logout(a) => login::logout(ctx, a),
        Command::Context(c) => context::run(ctx, c).await,
        Command::Run(a) => run::run(ctx, a).await,
        Command::Create(a) => run::create(ctx, a).await,
        Command::Start(a) => container::start(ctx, a).await,
        Command::Stop(a) => container::stop(ctx, a, "stop").await,
        Command::Restart(a) => container::stop(ctx, a, "restart").await,
        Command::Kill(a) => container::kill(ctx, a).await,
        Command::Rm(a) => container::rm(ctx, a).await,
        Command::Ps(a) => container::ps(ctx, a).await,
        Command::Logs(a) => container::logs(ctx, a).await,
        Command::Exec(a) => exec::exec(ctx, a).await,
        Command::Attach(a) => attach::attach(ctx, a).await,
        Command::Top(a) => container::top(ctx, a).await,
        Command::Stats(a) => container::stats(ctx, a).await,
        Command::Wait(a) => container::wait(ctx, a).await,
        Command::Cp(a) => container::cp(ctx, a).await,
        Command::Rename(a) => container::rename(ctx, a).await,
        Command::Pause(a) => container::pause(ctx, a, "pause").await,
        Command::Unpause(a) => container::pause(ctx, a, "unpause").await,
        Command::Update(a) => container::update(ctx, a).await,
        Command::Export(a) => container::export(ctx, a).await,
        Command::Diff(a) => container::diff(ctx, a).await,
        Command::Container(c) => container::run(ctx, c).await,
        Command::Volume(c) => volume::run(ctx, c).await,
        Command::Network(c) => network::run(ctx, c).await,
        Command::Port(a) => container::port(ctx, a).await,
        Command::Completion(a) => {
            clap_complete::generate(
                a.shell,
                &mut crate::Cli::command(),
                "berth",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

/// `--filter k=v` pairs → the API's JSON.
pub fn filters_json(filters: &[String]) -> Result<String, crate::Failure> {
    let mut m: std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>> =
        Default::default();
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| crate::Failure {
            message: format!("bad format of filter (expected name=value): {f}"),
            code: 125,
        })?;
        m.entry(k.trim().to_lowercase())
            .or_default()
            .insert(v.to_string(), true);
    }
    if m.is_empty() {
        return Ok(String::new());
    }
    Ok(serde_json::to_string(&m).unwrap_or_default())
}

/// Pretty JSON with docker's four-space indent.
pub fn pretty(v: &serde_json::Value) -> String {
    use serde::Serialize as _;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(buf).unwrap_or_default()
}
