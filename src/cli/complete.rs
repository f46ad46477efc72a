//! Shell completions, generated from the clap definitions: without the hidden commands (for
//! packagers), and completing `--target` with the names of the configured targets, which the
//! script asks `notion-inbox targets --names` for at completion time (clap_complete's static
//! scripts cannot know them; its dynamic mode is unstable).

use clap::CommandFactory;

/// The command whose completions the scripts offer: the visible subcommands only.
pub fn visible_command() -> clap::Command {
    let full = super::Cli::command();
    let mut cmd = clap::Command::new(full.get_name().to_owned())
        .version(full.get_version().unwrap_or_default().to_owned())
        .about(full.get_about().cloned().unwrap_or_default());
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// The shell code that lists the target names.
const NAMES: &str = "notion-inbox targets --names 2>/dev/null";

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut visible_command(), "notion-inbox", &mut script);
    let script = String::from_utf8_lossy(&script);
    let patched = match shell {
        clap_complete::Shell::Bash => {
            // clap_complete 4.6 names the branch of each subcommand `notion__subcmd__inbox__…`
            // where its loop sets `notion__inbox__…` (the hyphen of the binary's name), so no
            // subcommand's options completed.
            let script = script.replace("notion__subcmd__inbox__", "notion__inbox__");
            let files = "COMPREPLY=($(compgen -f \"${cur}\"))";
            let names = format!("COMPREPLY=($(compgen -W \"$({NAMES})\" -- \"${{cur}}\"))");
            // Only in the branches of --target and -t.
            let mut lines: Vec<String> = script.lines().map(str::to_owned).collect();
            for i in 1..lines.len() {
                let option = lines[i - 1].trim();
                if (option == "--target)" || option == "-t)") && lines[i].trim() == files {
                    lines[i] = lines[i].replace(files, &names);
                }
            }
            lines.join("\n") + "\n"
        }
        clap_complete::Shell::Zsh => script.replace(
            ":TARGET:_default'",
            &format!(":TARGET:{{compadd -- $({NAMES})}}'"),
        ),
        clap_complete::Shell::Fish => {
            script
                .lines()
                .map(|l| {
                    if l.contains(" -l target ") {
                        format!(
                            "{} -f -a \"({NAMES})\"",
                            l.trim_end_matches(" -r").trim_end()
                        )
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
        _ => script.into_owned(),
    };
    let _ = out.write_all(patched.as_bytes());
}
