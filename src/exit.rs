//! Exit statuses, as README's command table and the man page's EXIT STATUS document them: a leaf
//! that the command line, the commands and `main` all name.

/// Something failed (the message says what and how to fix it); for `check`, a problem was
/// found; for `status`, the daemon runs but a target needs attention.
pub const FAILURE: u8 = 1;
/// The command line is wrong: an unknown option, or a target the configuration does not have
/// (clap's code for usage errors).
pub const USAGE: u8 = 2;
/// `status`: the daemon is not running (as `systemctl status` and LSB init scripts say it).
pub const NOT_RUNNING: u8 = 3;
/// The configuration is unusable (`EX_CONFIG` of sysexits.h): the unit does not restart on it
/// (`RestartPreventExitStatus=78`), as restarting cannot help until a person fixes the file.
pub const CONFIG: u8 = 78;
