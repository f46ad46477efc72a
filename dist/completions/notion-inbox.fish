# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_notion_inbox_global_optspecs
    string join \n config= log-format= h/help V/version
end

function __fish_notion_inbox_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_notion_inbox_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_notion_inbox_using_subcommand
    set -l cmd (__fish_notion_inbox_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -s V -l version -d 'Print version'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "run" -d 'Run the daemon: deliver every inbox record to Notion until stopped'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "authorize" -d 'Authorize the integration for a target through Notion\'s OAuth consent screen'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "databases" -d 'List the databases and data sources a target\'s token can see, with their properties'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "check" -d 'Check the configuration, tokens, database access and property mapping'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "status" -d 'Show each target\'s progress, backlog and health'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "connect" -d 'Connect a workspace as a target of its own (consent, then inbox, database, token)'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "targets" -d 'List every target, configured or connected: workspace, database, state, backlog'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "disconnect" -d 'End a connected workspace\'s target: revoke its token, stop it, keep its inbox'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "push" -d 'Append records to a target\'s inbox safely (validated, one locked O_APPEND write)'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "requeue" -d 'Move a target\'s dead letters back into its inbox, exactly once (after fixing their cause)'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "emulator" -d 'Start a Notion API emulator on loopback'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "demo" -d 'Run a self-contained demonstration against the emulator'
complete -c notion-inbox -n "__fish_notion_inbox_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand run" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand run" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -s t -l target -d 'The target\'s name, as in its [[target]] table' -f -a "(notion-inbox targets --names 2>/dev/null)"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -l timeout -d 'How long to wait for the redirect' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -l database -d 'For a target configured without database_id: the shared database (or data source) to write to, by id, URL or title, when several fit its mapping' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -l no-browser -d 'Do not try to open a browser; just print the URL'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -l paste -d 'Read the redirected URL from stdin instead of listening for it'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -l force -d 'Replace the target\'s token file even if it holds the authorization of another workspace (without it, a grant for another workspace is refused and the file kept as it was)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand authorize" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand databases" -s t -l target -d 'The target\'s name, as in its [[target]] table' -f -a "(notion-inbox targets --names 2>/dev/null)"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand databases" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand databases" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand databases" -l json -d 'Print JSON instead of text'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand databases" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand check" -s t -l target -d 'Only this target' -f -a "(notion-inbox targets --names 2>/dev/null)"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand check" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand check" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand check" -l json -d 'Print JSON instead of text'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand check" -l offline -d 'Check the configuration, files and permissions only, without a request to Notion (tokens are read, not tried; the databases and mappings are not looked at)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand status" -s t -l target -d 'Only this target' -f -a "(notion-inbox targets --names 2>/dev/null)"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand status" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand status" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand status" -l json -d 'Print JSON instead of text'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand connect" -l timeout -d 'How long to wait for the redirect' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand connect" -l database -d 'The shared database (or data source) to write to, by id, URL or title, when several fit' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand connect" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand connect" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand connect" -l no-browser -d 'Do not try to open a browser; just print the URL'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand connect" -l paste -d 'Read the redirected URL from stdin instead of listening for it'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand targets" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand targets" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand targets" -l json -d 'Print JSON instead of text'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand targets" -l names -d 'Print the names only, one per line (what shell completions offer after --target)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand targets" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand disconnect" -s t -l target -d 'The target\'s name, as in its [[target]] table' -f -a "(notion-inbox targets --names 2>/dev/null)"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand disconnect" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand disconnect" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand disconnect" -l json -d 'Print JSON instead of text'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand disconnect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand push" -s t -l target -d 'The target whose inbox receives the records' -f -a "(notion-inbox targets --names 2>/dev/null)"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand push" -l handle -d 'The record\'s handle (with --tweet: push one record instead of reading stdin)' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand push" -l tweet -d 'The record\'s tweet' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand push" -l id -d 'The record\'s key (optional; used for deduplication)' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand push" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand push" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand push" -l json -d 'Print what was appended as JSON (`{"target", "inbox", "appended"}`)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand push" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -s t -l target -d 'The target\'s name, as in its [[target]] table' -f -a "(notion-inbox targets --names 2>/dev/null)"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l reason -d 'Only the entries whose reason contains TEXT' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l line -d 'Only entry N of `--list` (repeatable)' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l config -d 'The configuration file' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l json -d 'Print JSON instead of text'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l list -d 'List the dead letters, numbered, and change nothing'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l dry-run -d 'Say what would be requeued (or purged) and into which file, and change nothing'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l purge -d 'Remove the selected entries instead of requeueing them (for records that can never succeed); they are kept in `<state_dir>/purged/<target>.jsonl`'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -l allow-root -d 'Run even as root. `requeue` appends to a path that producers control; run it as the daemon\'s user instead (`sudo -u notion-inbox notion-inbox requeue …`)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand requeue" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l config -d 'Shadows the global `--config`, which the emulator does not read, so that its help does not offer it (accepted and ignored)' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l listen -d 'Where to listen (loopback; port 0 picks a free one)' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l seed -d 'Seed of the workspace\'s ids and secrets, and of the faults' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l rps -d 'Requests per second per token' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l burst -d 'Burst per token' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l workspace-rps -d 'Requests per second per workspace (0: no workspace limit)' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l latency -d 'Latency of every request' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l latency-jitter -d 'Random extra latency, uniform up to this' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l error-before-write -d 'Probability of a 5xx before a page is stored' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l timeout-after-write -d 'Probability of a 504 after a page is stored' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l drop-after-write -d 'Probability of a dropped connection after a page is stored' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l storm-429 -d 'Probability of a 429 on any request' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l storm-529 -d 'Probability of a 529 on any request' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l query-lag -d 'How long new pages stay invisible to queries' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l redirect-uri -d 'A registered OAuth redirect URI (repeatable; default http://localhost:8765/callback)' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l access-token-ttl -d 'OAuth access tokens stop working after this long' -r
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -l template -d 'The integration has a template the consent page offers to duplicate'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand emulator" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand demo" -l config -d 'Shadows the global `--config`, which the demo does not read, so that its help does not offer it (accepted and ignored)' -r -F
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand demo" -l log-format -d 'How log lines are written: text for people, json for log pipelines; auto drops timestamps and colours under journald' -r -f -a "auto\t'Text; without timestamps or colours when `JOURNAL_STREAM` says stderr is the journal'
text\t'Text with timestamps'
json\t'One JSON object per line'"
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "run" -d 'Run the daemon: deliver every inbox record to Notion until stopped'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "authorize" -d 'Authorize the integration for a target through Notion\'s OAuth consent screen'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "databases" -d 'List the databases and data sources a target\'s token can see, with their properties'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "check" -d 'Check the configuration, tokens, database access and property mapping'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "status" -d 'Show each target\'s progress, backlog and health'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "connect" -d 'Connect a workspace as a target of its own (consent, then inbox, database, token)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "targets" -d 'List every target, configured or connected: workspace, database, state, backlog'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "disconnect" -d 'End a connected workspace\'s target: revoke its token, stop it, keep its inbox'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "push" -d 'Append records to a target\'s inbox safely (validated, one locked O_APPEND write)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "requeue" -d 'Move a target\'s dead letters back into its inbox, exactly once (after fixing their cause)'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "emulator" -d 'Start a Notion API emulator on loopback'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "demo" -d 'Run a self-contained demonstration against the emulator'
complete -c notion-inbox -n "__fish_notion_inbox_using_subcommand help; and not __fish_seen_subcommand_from run authorize databases check status connect targets disconnect push requeue emulator demo help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
