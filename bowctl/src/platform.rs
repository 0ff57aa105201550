//! Rebooting through the platform's own mechanism.
//!
//! `bowctl health --reboot` restarts the machine into the rollback. It asks
//! the init system for the reboot, so services stop and filesystems unmount
//! in order; it never calls reboot(2) itself, which would skip all that:
//!
//! - Android: the `sys.powerctl` property (`setprop sys.powerctl
//!   reboot,<reason>`), which init turns into its shutdown sequence, as vold
//!   does when it aborts a checkpoint;
//! - systemd (`/run/systemd/system` exists): `systemctl reboot`;
//! - any other init: `reboot`, which asks init (sysvinit, busybox init) for
//!   an orderly reboot.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The reason Android's init logs for a reboot bowctl asked for.
pub const ANDROID_REASON: &str = "bow-rollback";

/// The init system that owns the reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// Android's init, through `setprop` at this path.
    Android(PathBuf),
    /// systemd as PID 1.
    Systemd,
    /// Another init, reached through `reboot`.
    Other,
}

/// Finds the platform of the system mounted at `root` (`/` on a running
/// system): Android when its `setprop` exists, systemd when it runs, else
/// another init.
pub fn detect(root: &Path) -> Platform {
    for setprop in ["system/bin/setprop", "system/bin/toolbox"] {
        let p = root.join(setprop);
        if p.exists() && root.join("system/build.prop").exists() {
            return Platform::Android(Path::new("/").join(setprop));
        }
    }
    if root.join("run/systemd/system").is_dir() {
        Platform::Systemd
    } else {
        Platform::Other
    }
}

/// The command that asks `platform` for an orderly reboot.
pub fn reboot_command(platform: &Platform) -> Command {
    match platform {
        Platform::Android(setprop) => {
            let mut c = Command::new(setprop);
            if setprop.ends_with("toolbox") {
                c.arg("setprop");
            }
            c.args(["sys.powerctl", &format!("reboot,{ANDROID_REASON}")]);
            c
        }
        Platform::Systemd => {
            let mut c = Command::new("systemctl");
            c.arg("reboot");
            c
        }
        Platform::Other => Command::new("reboot"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(c: &Command) -> Vec<String> {
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn android_sets_sys_powerctl() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("system/bin")).unwrap();
        std::fs::write(root.path().join("system/bin/setprop"), "").unwrap();
        std::fs::write(root.path().join("system/build.prop"), "").unwrap();
        // systemd's directory does not make an Android system a systemd one.
        std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        let p = detect(root.path());
        assert_eq!(p, Platform::Android(PathBuf::from("/system/bin/setprop")));
        assert_eq!(
            args(&reboot_command(&p)),
            ["/system/bin/setprop", "sys.powerctl", "reboot,bow-rollback"]
        );
    }

    #[test]
    fn systemd_reboots_through_systemctl() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        let p = detect(root.path());
        assert_eq!(p, Platform::Systemd);
        assert_eq!(args(&reboot_command(&p)), ["systemctl", "reboot"]);
    }

    #[test]
    fn another_init_gets_reboot() {
        let root = tempfile::tempdir().unwrap();
        // A stray setprop without Android's build.prop is not Android.
        std::fs::create_dir_all(root.path().join("system/bin")).unwrap();
        std::fs::write(root.path().join("system/bin/setprop"), "").unwrap();
        let p = detect(root.path());
        assert_eq!(p, Platform::Other);
        assert_eq!(args(&reboot_command(&p)), ["reboot"]);
    }
}
